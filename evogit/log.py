"""The append-only event log: one file per writer, length-prefixed and checksummed records.

    record = <u32 length> <u32 crc32(payload)> <payload: msgpack event>

Appends from several processes are serialised by an exclusive `flock`; each record is written by one
`write()` on an O_APPEND descriptor, so once `append` returns the event survives the process being killed.
Durability against power loss is group commit: a background thread fsyncs at most every `FSYNC_INTERVAL`,
and `append` itself fsyncs every `FSYNC_EVERY` events. A torn tail (a crash mid-write, or a power loss
before fsync) is detected on open, cut under the lock and reported (a warning on the `evogit` logger);
readers stop before it and never see half an event.

Damage is not a torn tail, and nothing is ever cut for it: a bad record among bytes that an earlier open
verified and fsynced (`<writer>.ok` holds that offset), or one that whole records follow, makes every
reader and writer of the file raise `LogCorrupted` with the file and byte offset, until `evogit replay
--repair` (share.repair_logs) sets the file aside and rewrites it from what can still be read. A record of
length 0 is damage too: zeroed bytes would otherwise parse as empty records (crc32 of b"" is 0).

A projection keeps, with the position it reflects, a `mark` per writer (the crc32 of the bytes just before
it), so a log that was cut short, deleted or replaced under it is noticed with one stat and one small read.
`MemoryLog` is the same interface in memory, for tests and throwaway runtimes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Protocol

import msgspec

from .atomic import write_atomic
from .errors import EvogitError
from .events import AnyEvent, decode, encode

HEADER = struct.Struct("<II")
FSYNC_EVERY = 100
FSYNC_INTERVAL = 0.010
MAX_RECORD = 64 << 20
MARK_BYTES = 4096  # a position's mark covers this many bytes before it
VERIFY_EVERY = 256 << 10  # the verified mark advances (one fsync, ~4 ms here) once this much is newer than it
_NONZERO = re.compile(rb"[^\x00]")
warn = logging.getLogger("evogit").warning  # the CLI prints these on stderr, once each

#: A log position: for each writer, how far (bytes, or events in memory) has been read.
Position = dict[str, int]


class LogCorrupted(EvogitError):
    """A log file has a bad record that is not a torn tail; nothing of it was cut."""

    def __init__(self, path: Path, offset: int, why: str):
        super().__init__(
            f"{path}: bad record at byte {offset} ({why}); the events after it cannot be read. "
            f"`evogit replay --repair` keeps every event that can still be read (published ones from git), "
            f"sets the damaged file aside as {path.name}.damaged and rebuilds the projections")
        self.path, self.offset, self.why = path, offset, why


class EventLog(Protocol):
    writer: str

    def append(self, events: Iterable[AnyEvent]) -> list[AnyEvent]: ...

    def read(self, since: Position | None = None) -> Iterator[tuple[str, int, AnyEvent]]: ...

    def chunks(self, since: Position | None = None) -> Iterator[tuple[str, int, list[AnyEvent]]]: ...

    def end(self) -> Position: ...

    def marks(self, position: Position) -> dict[str, int]: ...

    def mismatched(self, position: Position, marks: dict[str, int]) -> dict[str, str]: ...


def default_writer() -> str:
    """This machine's writer id (override with $EVOGIT_WRITER)."""
    return os.environ.get("EVOGIT_WRITER") or socket.gethostname().split(".")[0] or "local"


def _stamp(event: AnyEvent, writer: str, seq: int) -> None:
    event.writer, event.seq = writer, seq
    if not event.at:
        event.at = time.time_ns()
    if not event.id:
        event.id = f"{writer}:{seq}"


class MemoryLog:
    """The log interface over a list, for tests and runtimes that need no persistence."""

    def __init__(self, writer: str = "memory"):
        self.writer = writer
        self._events: list[AnyEvent] = []
        self._lock = threading.Lock()

    def append(self, events: Iterable[AnyEvent]) -> list[AnyEvent]:
        with self._lock:
            out = []
            for event in events:
                _stamp(event, self.writer, len(self._events))
                self._events.append(decode(encode(event)))  # stored as a copy, like a file would
                out.append(event)
            return out

    def read(self, since: Position | None = None) -> Iterator[tuple[str, int, AnyEvent]]:
        start = (since or {}).get(self.writer, 0)
        with self._lock:
            snapshot = self._events[start:]
        for i, event in enumerate(snapshot, start + 1):
            yield self.writer, i, event

    def chunks(self, since: Position | None = None) -> Iterator[tuple[str, int, list[AnyEvent]]]:
        start = (since or {}).get(self.writer, 0)
        with self._lock:
            snapshot = self._events[start:]
        if snapshot:
            yield self.writer, start + len(snapshot), snapshot

    def end(self) -> Position:
        return {self.writer: len(self._events)} if self._events else {}

    def marks(self, position: Position) -> dict[str, int]:
        return {}

    def mismatched(self, position: Position, marks: dict[str, int]) -> dict[str, str]:
        n = len(self._events)
        return {w: f"has {n} events, not {p}" for w, p in position.items() if w != self.writer or p > n}


OWN = "own-writers"  # in a log directory: the writer ids this repository appended under, one per line


def own_writers(directory: Path) -> frozenset[str]:
    """The writer ids that appended to the log in `directory` (a FileLog records its writer on opening): its
    own events, under the id of today and of before (`evogit.writer` changed), never another machine's."""
    try:
        return frozenset((directory / OWN).read_text("utf-8", "replace").split())
    except OSError:
        return frozenset()


class FileLog:
    """The log in `directory`, appending to `<writer>.log` and reading every `*.log` there.

    Opening it cuts a torn tail (reported) and raises `LogCorrupted` if the file is damaged."""

    def __init__(self, directory: Path, writer: str | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = writer or default_writer()
        self.path = self.dir / f"{self.writer}.log"
        self._mark = self.dir / f"{self.writer}.ok"
        if self.writer not in own_writers(self.dir):
            own = sorted(own_writers(self.dir) | {self.writer})
            write_atomic(self.dir / OWN, ("\n".join(own) + "\n").encode())
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self._unsynced = 0
        self._dirty = threading.Event()
        self.damage: LogCorrupted | None = None  # found by a reader in this process: appends are refused
        try:
            self.repaired = self._repair()
        except BaseException:
            os.close(self._fd)
            raise
        threading.Thread(target=self._syncer, name="evogit-log-fsync", daemon=True).start()

    # -- writing -----------------------------------------------------------------------------------------------
    def append(self, events: Iterable[AnyEvent]) -> list[AnyEvent]:
        """Append events (stamping writer, seq, id, at); they are readable, and survive a kill, on return.
        Refused (LogCorrupted) once the file is known to be damaged: nothing is added after the damage."""
        events = list(events)
        if not events:
            return events
        if self.damage is not None:
            raise LogCorrupted(self.damage.path, self.damage.offset, self.damage.why)
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                offset = os.lseek(self._fd, 0, os.SEEK_END)
                chunks = []
                for event in events:
                    _stamp(event, self.writer, offset)
                    payload = encode(event)
                    record = HEADER.pack(len(payload), zlib.crc32(payload)) + payload
                    chunks.append(record)
                    offset += len(record)
                data = b"".join(chunks)
                written = os.write(self._fd, data)
                while written < len(data):  # only on exotic filesystems; keep the record whole
                    written += os.write(self._fd, data[written:])
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._unsynced += len(events)
            if self._unsynced >= FSYNC_EVERY:
                os.fsync(self._fd)
                self._unsynced = 0
            else:
                self._dirty.set()
        return events

    def sync(self) -> None:
        with self._lock:
            os.fsync(self._fd)
            self._unsynced = 0

    def _syncer(self) -> None:
        while True:
            self._dirty.wait()
            time.sleep(FSYNC_INTERVAL)
            self._dirty.clear()
            try:
                self.sync()
            except (OSError, ValueError):
                return  # closed

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            self._fd = -1

    # -- the verified mark -------------------------------------------------------------------------------------
    def _read_mark(self) -> tuple[int, int | None] | None:
        """(bytes verified and fsynced by an earlier open, offset of known damage or None) from `<writer>.ok`;
        None if there is none. An unreadable mark counts as none (the whole file is checked again) and is
        reported."""
        try:
            text = self._mark.read_bytes().decode("ascii")
            parts = [int(p) for p in text.split()]
            if len(parts) in (1, 2) and min(parts) >= 0:
                return parts[0], parts[1] if len(parts) == 2 else None
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            pass
        warn(f"{self._mark} was unreadable: treated as missing (the whole log is checked again)")
        return None

    def _repair(self) -> int:
        """Cut a torn tail off this writer's file (under the lock); returns the number of bytes cut.

        Only the part after the last verified offset (kept in `<writer>.ok`) is scanned, so opening a big
        log stays cheap; the mark advances, after an fsync, once VERIFY_EVERY bytes are newer than it (so
        the newest events of a short command are scanned again by the next one, instead of paying a 4 ms
        fsync each time). A bad record in verified bytes, or one that whole records follow, is damage:
        LogCorrupted, and nothing is cut.
        """
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            mark = self._read_mark()
            verified, damaged = mark or (0, None)
            marked, size = verified, os.fstat(self._fd).st_size
            if damaged is not None and damaged < size:
                why = _problem(os.pread(self._fd, HEADER.size + MAX_RECORD, damaged), 0)
                if why is not None:
                    raise LogCorrupted(self.path, damaged, why)
            if verified > size:
                warn(f"{self.path} has {size} bytes, fewer than the {verified} verified before: "
                     f"it was cut short or replaced")
                start = 0
                verified = size  # every byte left was verified once: none of it is a torn tail
            else:
                start = verified
            data = os.pread(self._fd, size - start, start)
            good = start + _scan(data)
            if good < size:
                why = _problem(data, good - start) or "bad record"
                if good < verified or _next_record(data, good - start) is not None:
                    write_atomic(self._mark, f"{verified} {good}".encode())
                    raise LogCorrupted(self.path, good, why)
                os.ftruncate(self._fd, good)
                warn(f"{self.path}: cut a torn tail of {size - good} bytes at byte {good} ({why}); "
                     f"the events before it are intact")
            if good < marked or damaged is not None or (good > 0 and mark is None) or good - marked >= VERIFY_EVERY:
                os.fsync(self._fd)  # the mark never claims bytes a power loss could still take
                write_atomic(self._mark, str(good).encode())
            return size - good
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _verified(self, writer: str) -> int:
        mark = self.dir / f"{writer}.ok"
        try:
            return int(mark.read_bytes().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def _remember(self, damage: LogCorrupted) -> None:
        """Damage a reader found in this writer's file: refuse appends here, and at every later open."""
        self.damage = damage
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                write_atomic(self._mark, f"{self._verified(self.writer)} {damage.offset}".encode())
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    # -- reading -----------------------------------------------------------------------------------------------
    def read(self, since: Position | None = None) -> Iterator[tuple[str, int, AnyEvent]]:
        """Every complete event after `since`, writer by writer: (writer, position, event). The position is
        the end of the event's chunk: resume from it only once every event up to it has been consumed."""
        for writer, end, events in self.chunks(since):
            for event in events:
                yield writer, end, event

    def chunks(self, since: Position | None = None) -> Iterator[tuple[str, int, list[AnyEvent]]]:
        """The same events in lists (the fast path for replay): (writer, position after the list, events)."""
        since = since or {}
        for path in sorted(self.dir.glob("*.log")):
            start = since.get(path.stem, 0)
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read()
            try:
                for end, events in _decode_chunks(data, path, start, verified=partial(self._verified, path.stem)):
                    yield path.stem, end, events
            except LogCorrupted as e:
                if path == self.path and self._fd >= 0:
                    self._remember(e)
                raise

    def end(self) -> Position:
        out = {}
        for path in sorted(self.dir.glob("*.log")):
            data = path.read_bytes()
            if data:
                out[path.stem] = _scan(data)
        return out

    # -- what a projection reflects ----------------------------------------------------------------------------
    def marks(self, position: Position) -> dict[str, int]:
        """For each writer in `position`, the crc32 of the MARK_BYTES before its offset (kept with a snapshot)."""
        out = {}
        for writer, offset in position.items():
            tail = self._tail(writer, offset)
            if tail is not None:
                out[writer] = zlib.crc32(tail)
        return out

    def mismatched(self, position: Position, marks: dict[str, int]) -> dict[str, str]:
        """The writers whose log no longer holds what `position` and `marks` say was read, and why: the
        file is gone, shorter, or its bytes before the position differ. One stat and one small read each."""
        out = {}
        for writer, offset in position.items():
            tail = self._tail(writer, offset)
            if tail is None:
                path = self.dir / f"{writer}.log"
                size = path.stat().st_size if "/" not in writer and path.exists() else None
                out[writer] = "is gone" if size is None else f"has {size} bytes, fewer than the {offset} read"
            elif writer in marks and zlib.crc32(tail) != marks[writer]:
                out[writer] = f"differs in the bytes before {offset} from the ones read"
        return out

    def _tail(self, writer: str, offset: int) -> bytes | None:
        if "/" in writer or offset < 0:
            return None
        n = min(offset, MARK_BYTES)
        try:
            fd = os.open(self.dir / f"{writer}.log", os.O_RDONLY)
        except OSError:
            return None
        try:
            tail = os.pread(fd, n, offset - n)
        finally:
            os.close(fd)
        return tail if len(tail) == n else None


def _problem(data: bytes, pos: int) -> str | None:
    """Why the record at `pos` of `data` is not whole and checksummed (None if it is)."""
    n = len(data)
    if pos + HEADER.size > n:
        return f"{n - pos} bytes, less than a record header"
    size, crc = HEADER.unpack_from(data, pos)
    end = pos + HEADER.size + size
    if size == 0:
        return "length 0: zeroed bytes"
    if size > MAX_RECORD:
        return f"length {size} is more than a record can be"
    if end > n:
        return f"length {size} runs past the end of the file"
    if zlib.crc32(memoryview(data)[pos + HEADER.size:end]) != crc:
        return "checksum mismatch"
    return None


def _scan(data: bytes, start: int = 0) -> int:
    """End of the longest run of whole, checksummed records from `start`."""
    pos, n = start, len(data)
    view = memoryview(data)
    while pos + HEADER.size <= n:
        size, crc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + size
        if not 0 < size <= MAX_RECORD or end > n or zlib.crc32(view[pos + HEADER.size:end]) != crc:
            return pos
        pos = end
    return pos


def _next_record(data: bytes, pos: int) -> int | None:
    """The first offset after `pos` where a whole, checksummed record starts, if any: a bad record with one
    after it is damage, not a torn tail (which is only ever the end of the last write)."""
    n, q = len(data), pos + 1
    view = memoryview(data)
    while q + HEADER.size <= n:
        size, crc = HEADER.unpack_from(data, q)
        if size == 0:  # skip zeroed bytes fast: a record's length has a non-zero byte among its four
            m = _NONZERO.search(data, q)
            if m is None:
                return None
            q = max(q + 1, m.start() - 3)
            continue
        end = q + HEADER.size + size
        if size <= MAX_RECORD and end <= n and zlib.crc32(view[q + HEADER.size:end]) == crc:
            return q
        q += 1
    return None


def readable(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """What a damaged log still holds: the byte ranges of whole, checksummed records that decode as events,
    and the ranges in between that do not (for `evogit replay --repair`)."""
    kept: list[tuple[int, int]] = []
    lost: list[tuple[int, int]] = []
    pos, n = 0, len(data)
    while pos < n:
        if _problem(data, pos) is None:
            size, _ = HEADER.unpack_from(data, pos)
            end = pos + HEADER.size + size
            try:
                decode(memoryview(data)[pos + HEADER.size:end])
                kept.append((pos, end))
            except (msgspec.DecodeError, msgspec.ValidationError):
                lost.append((pos, end))
            pos = end
            continue
        nxt = _next_record(data, pos)
        lost.append((pos, n if nxt is None else nxt))
        pos = n if nxt is None else nxt
    return kept, lost


def _decode_chunks(data: bytes, path: Path, start: int, size: int = 4096,
                   verified: Callable[[], int] = lambda: 0) -> Iterator[tuple[int, list[AnyEvent]]]:
    """Decode the whole records of `data` (which begins at byte `start` of `path`) in lists of `size`,
    each with the offset after it; stop before a torn tail. A bad record before the `verified()` offset, or
    with a whole record after it, or a checksummed record that is not an event, raises LogCorrupted."""
    view = memoryview(data)
    pos, n, unpack, crc32 = 0, len(data), HEADER.unpack_from, zlib.crc32
    out: list[AnyEvent] = []
    while pos < n:
        if pos + 8 > n:
            length = end = 0
        else:
            length, crc = unpack(data, pos)
            end = pos + 8 + length
        if not 0 < length <= MAX_RECORD or end > n or crc32(view[pos + 8:end]) != crc:
            if start + pos < verified() or _next_record(data, pos) is not None:
                raise LogCorrupted(path, start + pos, _problem(data, pos) or "bad record")
            break  # a torn tail: the end of a write that did not finish (or is still under way)
        try:
            out.append(decode(view[pos + 8:end]))
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise LogCorrupted(path, start + pos, f"a checksummed record that is not an event: {e}") from None
        pos = end
        if len(out) == size:
            yield start + pos, out
            out = []
    if out:
        yield start + pos, out
