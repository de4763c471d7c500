"""Events: forward compatibility (types and versions this code does not know), per-type versions, round trips."""

from __future__ import annotations

import zlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from evogit import events
from evogit.events import Feedback, ModelCalled, ToolRun, UnknownEvent, decode, encode
from evogit.log import HEADER, FileLog, MemoryLog
from evogit.projections import EmbeddingProjector, Projector


def _append_raw(path, *payloads: bytes) -> None:
    """Append records framed as the log does, as a newer writer's evogit would."""
    with open(path, "ab") as f:
        for payload in payloads:
            f.write(HEADER.pack(len(payload), zlib.crc32(payload)) + payload)


NEWER = {"type": "tool_mutated", "v": 3, "id": "newer:0", "at": 1_700_000_000_000_000_000, "writer": "newer",
         "seq": 0, "tool": "slugify", "parent": "slugify@abc", "supersedes": [{"case": "x", "reason": "y"}]}


def test_an_event_type_from_a_newer_writer_is_kept_and_skipped(tmp_path):
    log = FileLog(tmp_path, "here")
    log.append([ToolRun(tool="t", fingerprint="f", input_sha256="x", ok=True)])
    foreign = msgspec.msgpack.encode(NEWER)
    _append_raw(tmp_path / "newer.log", foreign,
                encode(Feedback(tool="t", fingerprint="f", task="after it", solved=True, writer="newer", seq=1)))

    got = {(writer, type(e).__name__) for writer, _, e in log.read()}
    assert got == {("here", "ToolRun"), ("newer", "UnknownEvent"), ("newer", "Feedback")}
    unknown = next(e for _, _, e in log.read() if isinstance(e, UnknownEvent))
    assert (unknown.type, unknown.v, unknown.id, unknown.writer, unknown.seq, unknown.at) == \
        ("tool_mutated", 3, "newer:0", "newer", 0, NEWER["at"])
    assert encode(unknown) == foreign  # passed on unchanged (a copy, a re-encode)
    assert next(e for _, _, e in log.read() if isinstance(e, Feedback)).task == "after it"
    log.close()


def test_an_unknown_event_in_a_memory_log_survives_the_copy():
    log = MemoryLog()
    unknown = decode(msgspec.msgpack.encode(NEWER))
    log.append([unknown])
    (_, _, stored), = log.read()
    assert isinstance(stored, UnknownEvent) and stored.raw == unknown.raw


def test_a_newer_version_that_no_longer_decodes_is_kept_as_unknown():
    changed = msgspec.msgpack.encode({"type": "tool_run", "v": 2, "id": "n:1", "tool": {"name": "t"}, "ok": "yes"})
    event = decode(changed)
    assert isinstance(event, UnknownEvent) and (event.type, event.v, event.id) == ("tool_run", 2, "n:1")


def test_a_newer_version_that_still_decodes_keeps_its_version():
    added = msgspec.msgpack.encode({"type": "tool_run", "v": 2, "tool": "t", "fingerprint": "f", "input_sha256": "x",
                                    "ok": True, "a_new_field": [1, 2]})
    event = decode(added)
    assert isinstance(event, ToolRun) and event.v == 2 and event.tool == "t"


def test_a_record_that_is_no_event_is_still_refused():
    with pytest.raises(msgspec.ValidationError):
        decode(msgspec.msgpack.encode([1, 2, 3]))
    with pytest.raises(msgspec.ValidationError):
        decode(msgspec.msgpack.encode({"no": "type"}))


def test_each_type_has_its_own_version_and_upcasters(monkeypatch):
    """ToolRun moves to version 2 (say version 1 called `wall_ms` `ms`); Feedback stays at 1, untouched."""
    monkeypatch.setattr(ToolRun, "VERSION", 2)
    monkeypatch.setitem(events.UPCASTERS, ("tool_run", 1),
                        lambda raw: {**{k: v for k, v in raw.items() if k != "ms"}, "wall_ms": raw.get("ms", 0.0), "v": 2})
    old = msgspec.msgpack.encode({"type": "tool_run", "tool": "t", "fingerprint": "f", "input_sha256": "x", "ok": True,
                                  "ms": 1.5})  # version 1: no `v`
    upcast = decode(old)
    assert isinstance(upcast, ToolRun) and upcast.v == 2 and upcast.wall_ms == 1.5

    fresh = ToolRun(tool="t", fingerprint="f", input_sha256="x", ok=True)
    data = encode(fresh)
    assert msgspec.msgpack.decode(data)["v"] == 2  # a new event carries its type's current version
    assert decode(data) == fresh

    feedback = Feedback(tool="t", fingerprint="f", task="x", solved=True)
    assert "v" not in msgspec.msgpack.decode(encode(feedback)) and decode(encode(feedback)) == feedback


def test_an_old_version_without_its_upcaster_is_refused(monkeypatch):
    monkeypatch.setattr(ToolRun, "VERSION", 2)
    old = msgspec.msgpack.encode({"type": "tool_run", "tool": "t", "fingerprint": "f", "input_sha256": "x", "ok": True})
    with pytest.raises(msgspec.ValidationError, match="no upcaster for tool_run version 1"):
        decode(old)


def test_model_called_round_trips_and_holds_no_prompt():
    event = ModelCalled(purpose="create", model="qwen2.5-coder", outcome="ok", prompt_tokens=812, completion_tokens=407,
                        latency_ms=13250.5, attempts=2, mode="json_object", tool="word-count", round=1)
    assert decode(encode(event)) == event
    assert set(msgspec.structs.asdict(event)) == {"purpose", "model", "outcome", "prompt_tokens", "completion_tokens",
                                                  "latency_ms", "attempts", "mode", "tool", "round",
                                                  "id", "at", "writer", "seq", "v"}


@given(tag=st.text(min_size=1, max_size=20).filter(lambda t: t not in events.VERSIONS),
       fields=st.dictionaries(st.text(max_size=8).filter(lambda k: k != "type"),
                              st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=8)
                              | st.lists(st.integers(0, 9), max_size=3), max_size=6))
def test_any_unknown_type_decodes_to_an_unknown_event(tag, fields):
    data = msgspec.msgpack.encode({"type": tag, **fields})
    event = decode(data)
    assert isinstance(event, UnknownEvent) and event.type == tag and encode(event) == data


def test_projections_pass_over_event_types_they_do_not_apply(tmp_path):
    log = FileLog(tmp_path, "here")
    log.append([ToolRun(tool="t", fingerprint="f", input_sha256="x", ok=True),
                ModelCalled(purpose="create", model="m", outcome="ok")])
    _append_raw(tmp_path / "newer.log", msgspec.msgpack.encode(NEWER))
    metrics, vectors = Projector(), EmbeddingProjector()
    metrics.catch_up(log)
    vectors.catch_up(log)
    assert metrics.state.versions["t@f"].runs == 1 and metrics.state.position.keys() == {"here", "newer"}
    log.close()
