"""The append-only event log: one file per writer, length-prefixed and checksummed records.

    record = <u32 length> <u32 crc32(payload)> <payload: msgpack event>

Appends from several processes are serialised by an exclusive `flock`; each record is written by one
`write()` on an O_APPEND descriptor, so once `append` returns the event survives the process being killed.
Durability against power loss is group commit: a background thread fsyncs at most every `FSYNC_INTERVAL`,
and `append` itself fsyncs every `FSYNC_EVERY` events. A torn tail (a crash mid-write, or a power loss
before fsync) is detected on open, cut under the lock and reported; readers stop before it and never
see half an event. `MemoryLog` is the same interface in memory, for tests and throwaway runtimes.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from .atomic import write_atomic
from .errors import EvogitError
from .events import AnyEvent, decode, encode

HEADER = struct.Struct("<II")
FSYNC_EVERY = 100
FSYNC_INTERVAL = 0.010
MAX_RECORD = 64 << 20

#: A log position: for each writer, how far (bytes, or events in memory) has been read.
Position = dict[str, int]


class LogCorrupted(EvogitError):
    """A log file has a bad record in its middle (not a torn tail); it was not modified."""


class EventLog(Protocol):
    writer: str

    def append(self, events: Iterable[AnyEvent]) -> list[AnyEvent]: ...

    def read(self, since: Position | None = None) -> Iterator[tuple[str, int, AnyEvent]]: ...

    def chunks(self, since: Position | None = None) -> Iterator[tuple[str, int, list[AnyEvent]]]: ...

    def end(self) -> Position: ...


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


class FileLog:
    """The log in `directory`, appending to `<writer>.log` and reading every `*.log` there."""

    def __init__(self, directory: Path, writer: str | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = writer or default_writer()
        self.path = self.dir / f"{self.writer}.log"
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self._unsynced = 0
        self._dirty = threading.Event()
        self.repaired = self._repair()
        threading.Thread(target=self._syncer, name="evogit-log-fsync", daemon=True).start()

    # -- writing -----------------------------------------------------------------------------------------------
    def append(self, events: Iterable[AnyEvent]) -> list[AnyEvent]:
        """Append events (stamping writer, seq, id, at); they are readable, and survive a kill, on return."""
        events = list(events)
        if not events:
            return events
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
            except OSError:
                return  # closed

    def close(self) -> None:
        try:
            self.sync()
        finally:
            os.close(self._fd)

    def _repair(self) -> int:
        """Cut a torn tail off this writer's file (under the lock); returns the number of bytes cut.

        Only the part after the last verified offset (kept in `<writer>.ok`) is scanned, so opening a big
        log stays cheap.
        """
        mark = self.dir / f"{self.writer}.ok"
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            try:
                verified = int(mark.read_text())
            except (OSError, ValueError):
                verified = 0
            size = os.fstat(self._fd).st_size
            verified = verified if verified <= size else 0
            with open(self.path, "rb") as f:
                f.seek(verified)
                data = f.read()
            good = verified + _valid_prefix(data, self.path, verified)
            if good < size:
                os.ftruncate(self._fd, good)
                os.fsync(self._fd)
            write_atomic(mark, str(good).encode())
            return size - good
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
            for end, events in _decode_chunks(data, path, start):
                yield path.stem, end, events

    def end(self) -> Position:
        out = {}
        for path in sorted(self.dir.glob("*.log")):
            data = path.read_bytes()
            if data:
                out[path.stem] = _scan(data)
        return out


def _scan(data: bytes, start: int = 0) -> int:
    """End of the longest run of whole, checksummed records from `start`."""
    pos, n = start, len(data)
    while pos + HEADER.size <= n:
        size, crc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + size
        if size > MAX_RECORD or end > n or zlib.crc32(data[pos + HEADER.size:end]) != crc:
            return pos
        pos = end
    return pos


def _valid_prefix(data: bytes, path: Path, base: int = 0) -> int:
    """Length of the valid prefix. A bad record followed by records that parse to the end is corruption in
    the middle, not a torn tail: it is refused rather than cut."""
    good = _scan(data)
    if good < len(data) and len(data) - good >= HEADER.size:
        size, _ = HEADER.unpack_from(data, good)
        after = good + HEADER.size + size
        if size <= MAX_RECORD and after < len(data) and _scan(data, after) == len(data):
            raise LogCorrupted(f"{path}: bad record at byte {base + good} in the middle of the log")
    return good


def _decode_chunks(data: bytes, path: Path, start: int, size: int = 4096) -> Iterator[tuple[int, list[AnyEvent]]]:
    """Decode the whole records of `data` (which begins at byte `start` of `path`) in lists of `size`,
    each with the offset after it; stop before a torn tail."""
    view = memoryview(data)
    pos, n, unpack, crc32 = 0, len(data), HEADER.unpack_from, zlib.crc32
    out: list[AnyEvent] = []
    while pos + 8 <= n:
        length, crc = unpack(data, pos)
        end = pos + 8 + length
        if end > n:
            break
        payload = view[pos + 8:end]
        if crc32(payload) != crc:
            _valid_prefix(data[pos:], path, start + pos)  # raises LogCorrupted if whole records follow
            break
        out.append(decode(payload))
        pos = end
        if len(out) == size:
            yield start + pos, out
            out = []
    if out:
        yield start + pos, out
