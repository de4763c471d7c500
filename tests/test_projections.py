"""Projections: replaying twice, catching up incrementally, or merging writers in any order give the same bytes."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evogit import events as ev
from evogit.log import FileLog, MemoryLog
from evogit.projections import EmbeddingProjector, Projector, replay, snapshot

TOOLS = ["a", "b", "c"]
event_strategy = st.one_of(
    st.builds(lambda t, ok, err, ms, fuel, task: ev.ToolRun(tool=t, fingerprint=t * 4, input_sha256="x", ok=ok,
                                                              error=None if ok else err, wall_ms=ms, fuel=fuel, task=task),
              st.sampled_from(TOOLS), st.booleans(), st.sampled_from(["trap", "timeout", "exit_code"]),
              st.floats(min_value=0, max_value=5000, allow_nan=False), st.integers(0, 10**9),
              st.none() | st.sampled_from(["count words", "parse csv"])),
    st.builds(lambda t, task, solved: ev.Feedback(tool=t, fingerprint=t * 4, task=task, solved=solved),
              st.sampled_from(TOOLS), st.sampled_from(["count words", "parse csv"]), st.booleans()),
    st.builds(lambda t, c: ev.BuildSucceeded(tool=t, commit=c, fingerprint=t * 4, unit_tests=3, cases=5,
                                             id=ev.fact_id("build", c, t * 4)),
              st.sampled_from(TOOLS), st.sampled_from(["c1", "c2"])),
    st.builds(lambda t, v: ev.Embedded(tool=t, fingerprint=t * 4, model="m", text=t, vector=[v, 1.0]),
              st.sampled_from(TOOLS), st.floats(-1, 1)),
    st.builds(lambda task, v: ev.Embedded(tool="", fingerprint="", model="m", text=task, vector=[v, 1.0]),
              st.sampled_from(["count words", "parse csv"]), st.floats(-1, 1, width=32)),
    # searches, choices made after a search, and both at once
    st.builds(lambda q, model, found, choice: ev.Retrieved(query=q, model=model, candidates=[t + "@" + t * 4 for t in found],
                                                        choice=choice and choice + "@" + choice * 4),
              st.sampled_from(["count words", "parse csv"]), st.sampled_from(["m", "n"]),
              st.lists(st.sampled_from(TOOLS), max_size=3, unique=True), st.none() | st.sampled_from(TOOLS)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(event_strategy, max_size=60), st.integers(0, 60), st.randoms(use_true_random=False))
def test_replay_incremental_and_merge_agree(tmp_path_factory, evs, split, rnd):
    d = tmp_path_factory.mktemp("proj")
    # Two writers, each with its own file; events dealt between them at random.
    logs = {"m1": FileLog(d, "m1"), "m2": FileLog(d, "m2")}
    incremental, incremental_vectors = Projector(), EmbeddingProjector()
    for i, event in enumerate(evs):
        logs[rnd.choice(["m1", "m2"])].append([event])
        if i == split:
            incremental.catch_up(logs["m1"])
            incremental_vectors.catch_up(logs["m1"])
    incremental.catch_up(logs["m1"])
    incremental_vectors.catch_up(logs["m1"])
    full, again = replay(logs["m1"]), replay(logs["m2"])
    assert snapshot(full.state) == snapshot(again.state) == snapshot(incremental.state)
    vectors, again_vectors = EmbeddingProjector(), EmbeddingProjector()
    vectors.catch_up(logs["m2"])
    again_vectors.catch_up(logs["m1"])
    assert snapshot(vectors.state) == snapshot(again_vectors.state) == snapshot(incremental_vectors.state)
    # The same events applied in another order (as a merge of another machine's log would) agree too.
    shuffled, shuffled_vectors = Projector(), EmbeddingProjector()
    items = list(logs["m1"].read())
    random.Random(1).shuffle(items)
    for _, _, event in items:
        shuffled._apply[type(event)](event)
        shuffled_vectors._apply[type(event)](event)
    shuffled.state.position = dict(full.state.position)
    shuffled_vectors.state.position = dict(full.state.position)
    assert snapshot(shuffled.state) == snapshot(full.state)
    assert snapshot(shuffled_vectors.state) == snapshot(vectors.state)


def test_builds_recorded_twice_count_once():
    log = MemoryLog()
    build = dict(tool="a", commit="c", fingerprint="f", unit_tests=3, cases=5, id=ev.fact_id("build", "c", "f"))
    log.append([ev.BuildSucceeded(**build), ev.BuildSucceeded(**build)])
    assert replay(log).state.versions["a@f"].builds_ok == 1


def test_metrics_summary():
    log = MemoryLog()
    log.append([ev.ToolRun(tool="a", fingerprint="f", input_sha256="x", ok=True, wall_ms=1.0, fuel=10)
                for _ in range(9)])
    log.append([ev.ToolRun(tool="a", fingerprint="f", input_sha256="x", ok=False, error="timeout", wall_ms=2000.0)])
    log.append([ev.ToolRun(tool="a", fingerprint="f", input_sha256="x", ok=False, error="invalid_input")])
    m = replay(log).state.versions["a@f"].summary()
    assert m["runs"] == 11 and m["ok"] == 9 and m["errors"] == {"timeout": 1, "invalid_input": 1}
    assert 1.0 <= m["p50_ms"] < 1.4 and m["p95_ms"] >= 2000


def test_choices_answer_the_newest_search():
    log = MemoryLog()
    search = ev.Retrieved(query="parse csv", model="m", candidates=["a@aaaa", "b@bbbb"])
    log.append([search])
    state = replay(log).state
    (open_search,) = state.searches.values()
    assert open_search.chosen < open_search.order
    log.append([ev.Retrieved(query="parse csv", model="", candidates=[], choice="b@bbbb")])
    state = replay(log).state
    (answered,) = state.searches.values()
    assert answered.chosen > answered.order
    assert (state.versions["b@bbbb"].chosen, state.versions["b@bbbb"].retrieved) == (1, 1)
    assert (state.versions["a@aaaa"].chosen, state.versions["a@aaaa"].retrieved_first) == (0, 1)
    assert state.retrievals == 1  # a choice is not another search


def test_a_snapshot_is_rewritten_for_events_that_concern_it(tmp_path):
    from evogit.projections import SKIPPED_BEFORE_SAVE, open_embeddings, open_projections

    log = FileLog(tmp_path / "log", "w")
    metrics, vectors = tmp_path / "projections.msgpack", tmp_path / "embeddings.msgpack"
    log.append([ev.Embedded(tool="a", fingerprint="aaaa", model="m", text="a", vector=[1.0, 0.0])])
    open_projections(log, metrics)
    open_embeddings(log, vectors)
    saved = vectors.read_bytes()

    def run(i: int) -> ev.ToolRun:
        return ev.ToolRun(tool="a", fingerprint="aaaa", input_sha256=str(i), ok=True, wall_ms=1.0)

    log.append([run(i) for i in range(10)])
    assert open_projections(log, metrics).state.versions["a@aaaa"].runs == 10
    assert open_embeddings(log, vectors).state.vectors["m"]["a@aaaa"].vector == [1.0, 0.0]
    assert vectors.read_bytes() == saved  # ten runs do not concern the vectors: not rewritten
    log.append([run(i) for i in range(SKIPPED_BEFORE_SAVE)])
    caught_up = open_embeddings(log, vectors).state
    assert vectors.read_bytes() != saved  # but the lag is bounded
    assert caught_up.position == open_projections(log, metrics).state.position


# -- a snapshot must match its log (issue 10) ------------------------------------------------------------------
def _runs(tool: str, n: int, start: int = 0) -> list[ev.ToolRun]:
    return [ev.ToolRun(tool=tool, fingerprint="ffff", input_sha256=str(i), ok=True, wall_ms=1.0)
            for i in range(start, start + n)]


def _projected(tmp_path, n: int = 50):
    from evogit.projections import open_projections

    d, snap = tmp_path / "log", tmp_path / "projections.msgpack"
    log = FileLog(d, "w")
    log.append(_runs("a", n))
    assert open_projections(log, snap).state.versions["a@ffff"].runs == n
    log.close()
    return d, snap


def test_a_log_cut_short_under_a_newer_snapshot_is_rebuilt_and_reported_once(tmp_path, caplog):
    from evogit.projections import open_projections

    d, snap = _projected(tmp_path)
    path = d / "w.log"
    data = path.read_bytes()
    pos, ends = 0, []
    while pos < len(data):
        pos += 8 + int.from_bytes(data[pos:pos + 4], "little")
        ends.append(pos)
    os.truncate(path, ends[9])  # ten runs left
    log = FileLog(d, "w")
    log.append(_runs("a", 5, 100))
    assert open_projections(log, snap).state.versions["a@ffff"].runs == 15  # not 50, and the new 5 are counted
    assert caplog.text.count("projections.msgpack reflected events the log no longer holds") == 1
    assert "w.log has" in caplog.text and "fewer than the" in caplog.text
    caplog.clear()
    assert open_projections(log, snap).state.versions["a@ffff"].runs == 15
    assert "rebuilt" not in caplog.text  # reported once


def test_a_log_deleted_under_a_newer_snapshot_is_rebuilt(tmp_path, caplog):
    from evogit.projections import open_projections

    d, snap = _projected(tmp_path)
    (d / "w.log").unlink()
    log = FileLog(d, "w")
    log.append(_runs("a", 3))
    assert open_projections(log, snap).state.versions["a@ffff"].runs == 3
    assert "rebuilt from the log" in caplog.text


def test_a_log_replaced_by_another_as_long_is_rebuilt(tmp_path, caplog):
    from evogit.projections import open_projections

    d, snap = _projected(tmp_path)
    other = FileLog(tmp_path / "other", "w")  # the same number of runs of another tool: the same length
    other.append(_runs("b", 50))
    other.close()
    (d / "w.log").write_bytes((tmp_path / "other" / "w.log").read_bytes())
    state = open_projections(FileLog(d, "w"), snap).state
    assert set(state.versions) == {"b@ffff"} and "differs in the bytes before" in caplog.text


def test_a_long_lived_projection_notices_its_log_cut_under_it(tmp_path, caplog):
    from evogit.projections import open_projections, refresh

    d, snap = _projected(tmp_path)
    log = FileLog(d, "w")
    projector = open_projections(log, snap)
    applied = projector.applied
    log.close()
    (d / "w.log").unlink()
    log = FileLog(d, "w")
    log.append(_runs("a", 2))
    refresh(projector, log, snap)
    assert projector.state.versions["a@ffff"].runs == 2 and projector.applied != applied


def test_catching_up_keeps_the_marks_true(tmp_path, caplog):
    """Positions move without a save (irrelevant events): the marks move with them, so nothing is rebuilt."""
    from evogit.projections import open_embeddings, open_projections, refresh

    d, snap = _projected(tmp_path, 5)
    log = FileLog(d, "w")
    vectors = tmp_path / "embeddings.msgpack"
    projector = open_embeddings(log, vectors)
    for i in range(3):
        log.append(_runs("a", 2, 10 * i))
        open_projections(log, snap)
        refresh(projector, log, vectors)
    assert open_embeddings(log, vectors).state.position == log.end()
    assert "rebuilt" not in caplog.text


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 64, b"\xde\xad\xbe\xef" * 9, b"\x81\xa6format\x08"])
def test_a_damaged_snapshot_is_rebuilt_and_reported_once(tmp_path, caplog, garbage):
    from evogit.projections import open_embeddings, open_projections

    d, snap = _projected(tmp_path)
    vectors = tmp_path / "embeddings.msgpack"
    snap.write_bytes(garbage + snap.read_bytes()[len(garbage):len(garbage) + 3])
    vectors.write_bytes(garbage + b"\xc1")  # 0xc1 is no msgpack at all
    log = FileLog(d, "w")
    assert open_projections(log, snap).state.versions["a@ffff"].runs == 50
    assert open_embeddings(log, vectors).state.position == log.end()
    assert caplog.text.count("was unreadable: rebuilt from the log") == 2
    caplog.clear()
    open_projections(log, snap)
    open_embeddings(log, vectors)
    assert "unreadable" not in caplog.text


def test_a_snapshot_of_another_format_is_rebuilt_silently(tmp_path, caplog):
    import msgspec

    from evogit.projections import open_projections

    d, snap = _projected(tmp_path)
    snap.write_bytes(msgspec.msgpack.encode({"format": 1, "position": {"w": "not a number"}}))
    assert open_projections(FileLog(d, "w"), snap).state.versions["a@ffff"].runs == 50
    assert caplog.text == ""
