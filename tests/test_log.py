"""The event log: one contract suite for both backends; crash safety, concurrency and upcasting for files."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evogit import events
from evogit.events import Feedback, ToolRun, decode, encode
from evogit.log import FileLog, LogCorrupted, MemoryLog


def run_event(i: int) -> ToolRun:
    return ToolRun(tool="t", fingerprint="f" * 64, input_sha256=f"{i:064x}", ok=i % 3 != 0, wall_ms=i / 10)


class LogContract:
    """Every backend must pass these."""

    def make(self, tmp_path: Path, writer: str = "w1"):
        raise NotImplementedError  # each backend's subclass says how to make one

    def test_append_then_read_in_order(self, tmp_path):
        log = self.make(tmp_path)
        appended = log.append(run_event(i) for i in range(10))
        got = [e for _, _, e in log.read()]
        assert [e.input_sha256 for e in got] == [e.input_sha256 for e in appended]
        assert len({e.id for e in got}) == 10 and all(e.writer == "w1" and e.at > 0 for e in got)

    def test_read_since_a_position_returns_only_newer(self, tmp_path):
        log = self.make(tmp_path)
        log.append([run_event(1), run_event(2)])
        position = log.end()
        log.append([run_event(3)])
        assert [e.input_sha256[-1] for _, _, e in log.read(position)] == ["3"]
        last_writer, last_pos, _ = list(log.read())[-1]
        assert log.end() == {last_writer: last_pos}

    def test_empty_log(self, tmp_path):
        log = self.make(tmp_path)
        assert list(log.read()) == [] and log.end() == {}
        assert log.append([]) == []

    def test_fact_ids_are_kept(self, tmp_path):
        log = self.make(tmp_path)
        e = Feedback(tool="t", fingerprint="f", task="x", solved=True, id=events.fact_id("a", "b"))
        log.append([e])
        assert next(iter(log.read()))[2].id == events.fact_id("a", "b")


class TestMemoryLog(LogContract):
    def make(self, tmp_path, writer="w1"):
        return MemoryLog(writer)


class TestFileLog(LogContract):
    def make(self, tmp_path, writer="w1"):
        return FileLog(tmp_path / "log", writer)

    def test_reopen_sees_everything_and_reads_other_writers(self, tmp_path):
        a = self.make(tmp_path, "a")
        a.append(run_event(i) for i in range(5))
        a.close()
        b = self.make(tmp_path, "b")
        b.append([run_event(9)])
        writers = [w for w, _, _ in b.read()]
        assert writers.count("a") == 5 and writers.count("b") == 1


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=1, max_value=2000), garbage=st.binary(max_size=40))
def test_a_torn_tail_is_cut_never_half_read(tmp_path_factory, cut, garbage):
    d = tmp_path_factory.mktemp("torn")
    log = FileLog(d, "w")
    log.append(run_event(i) for i in range(20))
    log.close()
    path = d / "w.log"
    data = path.read_bytes()
    cut = min(cut, len(data))
    path.write_bytes(data[: len(data) - cut] + garbage)
    reader_view = [e.input_sha256 for _, _, e in FileLog.__new__(FileLog).__class__.read(_reader(d))]
    reopened = FileLog(d, "w")
    kept = [e.input_sha256 for _, _, e in reopened.read()]
    assert kept == [run_event(i).input_sha256 for i in range(len(kept))]  # a prefix, all whole
    assert reader_view[: len(kept)] == kept
    reopened.append([run_event(99)])
    assert [e.input_sha256 for _, _, e in reopened.read()][-1] == run_event(99).input_sha256


def _reader(d: Path) -> FileLog:
    """A reader of the files in `d` that is not a writer (opens and repairs nothing)."""
    reader = FileLog.__new__(FileLog)
    reader.dir, reader.path, reader._fd = d, d / "none.log", -1
    return reader


def test_corruption_in_the_middle_is_refused_not_cut(tmp_path):
    log = FileLog(tmp_path, "w")
    log.append(run_event(i) for i in range(10))
    log.close()
    path = tmp_path / "w.log"
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside the first record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorrupted, match="bad record at byte 0 .checksum mismatch.*replay --repair"):
        FileLog(tmp_path, "w")
    assert path.read_bytes() == bytes(data)  # nothing was cut


APPENDER = """
import sys
from evogit.log import FileLog
from evogit.events import ToolRun
log = FileLog(sys.argv[1], sys.argv[2])
i = int(sys.argv[3])
while True:
    log.append([ToolRun(tool="t", fingerprint="f", input_sha256=str(i), ok=True)])
    sys.stdout.write(f"{i}\\n"); sys.stdout.flush()
    i += 1
"""


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_returned_append(tmp_path):
    rng = random.Random(7)
    confirmed: list[str] = []
    nxt = 0
    for _ in range(50):
        proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(tmp_path), "w", str(nxt)],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.15, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        confirmed += out.split()
        log = FileLog(tmp_path, "w")  # reopen: repairs a torn tail if any
        present = [e.input_sha256 for _, _, e in log.read()]
        log.close()
        assert set(confirmed) <= set(present)
        assert present == [str(i) for i in range(len(present))]  # whole events, in order, none half-read
        nxt = len(present)  # an append may have landed after its last confirmation: continue after it
    assert len(present) == len(set(present))


WRITER = """
import sys
from evogit.log import FileLog
from evogit.events import ToolRun
log = FileLog(sys.argv[1], "shared")
for i in range(5000):
    log.append([ToolRun(tool="t", fingerprint="f", input_sha256=f"{sys.argv[2]}-{i}", ok=True)])
log.close()
"""


@pytest.mark.slow
def test_four_processes_append_exactly_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(p)]) for p in range(4)]
    assert all(p.wait(120) == 0 for p in procs)
    got = [e.input_sha256 for _, _, e in FileLog(tmp_path, "shared").read()]
    assert len(got) == 20000 and len(set(got)) == 20000
    seqs = [e.seq for _, _, e in FileLog(tmp_path, "shared").read()]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20000


@given(st.builds(ToolRun, tool=st.text(max_size=10), fingerprint=st.text(max_size=10),
                 input_sha256=st.text(max_size=10), ok=st.booleans(), wall_ms=st.floats(allow_nan=False),
                 fuel=st.integers(min_value=0, max_value=2**62), task=st.none() | st.text(max_size=20)))
def test_encode_decode_round_trip(event):
    assert decode(encode(event)) == event


def test_old_versions_are_upcast(monkeypatch):
    old = msgspec.msgpack.encode({"type": "feedback", "v": 0, "tool": "t", "fingerprint": "f", "task": "x",
                                  "ok": True})
    monkeypatch.setitem(events.UPCASTERS, ("feedback", 0),
                        lambda raw: {**{k: v for k, v in raw.items() if k != "ok"}, "solved": raw["ok"], "v": 1})
    assert decode(old) == Feedback(tool="t", fingerprint="f", task="x", solved=True, v=1)


# -- damage is not a torn tail (issue 10) ----------------------------------------------------------------------
def _log_of(d: Path, n: int = 40, writer: str = "w") -> Path:
    log = FileLog(d, writer)
    log.append(run_event(i) for i in range(n))
    log.close()
    FileLog(d, writer).close()  # a second open verifies the records (the `.ok` mark)
    return d / f"{writer}.log"


def _boundaries(data: bytes) -> list[int]:
    out, pos = [0], 0
    while pos < len(data):
        pos += 8 + int.from_bytes(data[pos:pos + 4], "little")
        out.append(pos)
    return out


def test_zeroed_bytes_in_the_middle_are_damage_not_empty_records(tmp_path):
    path = _log_of(tmp_path)
    data = bytearray(path.read_bytes())
    data[400:900] = bytes(500)  # `dd conv=notrunc if=/dev/zero`: crc32(b"") == 0, so zeros once parsed as records
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorrupted, match=r"w.log: bad record at byte \d+ .*replay --repair"):
        list(_reader(tmp_path).read())
    log = FileLog(tmp_path, "w")  # opening it cuts nothing: the zeros are followed by whole records
    with pytest.raises(LogCorrupted) as err:
        list(log.read())
    assert 0 < err.value.offset <= 400 and path.read_bytes() == bytes(data)


def test_a_log_truncated_and_refilled_with_zeros_is_damage(tmp_path):
    path = _log_of(tmp_path)
    size = path.stat().st_size
    path.write_bytes(bytes(size))  # truncate, then write as many zeros
    with pytest.raises(LogCorrupted, match="byte 0 .length 0: zeroed bytes"):
        list(FileLog(tmp_path, "w").read())
    assert path.read_bytes() == bytes(size)


def test_appending_after_a_known_corrupt_region_is_refused(tmp_path):
    path = _log_of(tmp_path)
    data = bytearray(path.read_bytes())
    data[300] ^= 0xFF
    path.write_bytes(bytes(data))
    log = FileLog(tmp_path, "w")  # the damage is among verified bytes: found by the first reader, not on open
    with pytest.raises(LogCorrupted):
        list(log.read())
    with pytest.raises(LogCorrupted):
        log.append([run_event(99)])
    with pytest.raises(LogCorrupted, match="bad record"):  # and by every later open (another process)
        FileLog(tmp_path, "w")
    assert path.read_bytes() == bytes(data)  # nothing appended after the damage, nothing cut


def test_zeros_past_the_verified_end_are_a_torn_tail_cut_and_reported(tmp_path, caplog):
    path = _log_of(tmp_path, 10)
    size = path.stat().st_size
    os.truncate(path, size + 4096)  # a power loss after the size grew but before the data landed
    log = FileLog(tmp_path, "w")
    assert log.repaired == 4096 and path.stat().st_size == size and len(list(log.read())) == 10
    assert f"cut a torn tail of 4096 bytes at byte {size}" in caplog.text


def test_a_log_cut_short_under_its_verified_mark_is_reported(tmp_path, caplog):
    path = _log_of(tmp_path, 10)
    data = path.read_bytes()
    cut = next(p for p in _boundaries(data) if p >= len(data) // 2)  # at a record boundary: what is left is whole
    os.truncate(path, cut)
    log = FileLog(tmp_path, "w")
    assert "fewer than the" in caplog.text and "cut short" in caplog.text
    log.append([run_event(99)])
    assert [e.input_sha256 for _, _, e in log.read()][-1] == run_event(99).input_sha256


@settings(max_examples=40, deadline=None)
@given(where=st.floats(0.0, 0.8), length=st.integers(1, 600), zeros=st.booleans())
def test_damage_is_refused_never_cut_and_repair_keeps_every_untouched_event(tmp_path_factory, where, length, zeros):
    from evogit.log import readable

    d = tmp_path_factory.mktemp("damage")
    path = _log_of(d, 30)
    data = bytearray(path.read_bytes())
    at = int(len(data) * where)
    end = min(at + length, len(data) - 200)  # whole records stay after the damage
    if end <= at:
        return
    before = bytes(data[at:end])
    data[at:end] = bytes(end - at) if zeros else bytes(b ^ 0x5A for b in data[at:end])
    if bytes(data[at:end]) == before:
        return  # zeros written over zeros: nothing was damaged (CI drew a 1-byte range holding a 0)
    path.write_bytes(bytes(data))
    try:
        log = FileLog(d, "w")
        list(log.read())
        damaged = False
    except LogCorrupted:
        damaged = True
    assert damaged and path.read_bytes() == bytes(data)
    kept, lost = readable(bytes(data))
    assert lost and all(b <= at or a >= end for a, b in kept)  # no kept record overlaps the damage
    original = [run_event(i).input_sha256 for i in range(30)]
    got = [decode(bytes(data[a + 8:b])).input_sha256 for a, b in kept]
    assert got == [x for x in original if x in got] and len(got) >= 30 - (end - at) // 100 - 2
