"""Supervised worker processes for callers that run many tools (batch runs, the agent loop, a server).

Runs happen in child processes (`python -m evogit.worker REPO`, speaking length-prefixed msgpack frames on
stdin/stdout), so nothing a tool or the runtime does can take the caller down: if a worker dies, its
in-flight runs end with the error kind `worker_crash` and a fresh worker takes its place (with backoff if
it keeps dying). Requests are pipelined, several in flight per worker, and spread over the workers, so
CPU-heavy tools use every core.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import IO

import msgspec

from .contract import RunOutcome
from .sandbox import DEFAULT_LIMITS, Limits

WINDOW = 64  # requests in flight per worker in run_many
_HEADER = struct.Struct("<I")


class _Request(msgspec.Struct, array_like=True):
    id: int
    spec: str
    stdin: bytes
    timeout: float
    fuel: int
    memory: int
    max_output: int
    max_stderr: int
    max_input: int = DEFAULT_LIMITS.max_input
    task: str | None = None  # recorded with the run, as `evogit run --task` does


class _Response(msgspec.Struct, array_like=True):
    id: int
    outcome: RunOutcome


def _read_frame(stream: IO[bytes]) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    return data if len(data) == size else None


def _write_frame(stream: IO[bytes], data: bytes) -> None:
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def serve(repo: str) -> None:
    """A worker's loop: one Runtime; requests in on stdin, outcomes out on stdout, until stdin closes."""
    from .errors import EvogitError, ToolNotFound
    from .runtime import Runtime

    decode = msgspec.msgpack.Decoder(_Request).decode
    encode = msgspec.msgpack.Encoder().encode
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    with Runtime(repo) as rt:  # closed (log synced, wasmtime settled) when the caller closes stdin
        while (frame := _read_frame(stdin)) is not None:
            req = decode(frame)
            limits = Limits(req.timeout, req.fuel, req.memory, req.max_output, req.max_stderr, req.max_input)
            try:
                outcome = rt.run(req.spec, req.stdin, limits, task=req.task)
            except EvogitError as e:
                kind = "not_found" if isinstance(e, ToolNotFound) else "error"
                outcome = RunOutcome(req.spec, "", ok=False, error=kind, detail=str(e))
            _write_frame(stdout, encode(_Response(req.id, outcome)))


_SECRET = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)", re.I)


def _worker_env() -> dict[str, str]:
    """The environment a worker starts with: this one without secrets (a model's key, a server's token). A worker
    only runs tools; a run's sandbox sees no environment at all, and the worker process needs none of them."""
    return {k: v for k, v in os.environ.items() if not _SECRET.search(k)}


def _crash(detail: str) -> RunOutcome:
    return RunOutcome("", "", ok=False, error="worker_crash", detail=detail)


class _Worker:
    """One child process, its pending requests, and the thread that reads its answers and restarts it."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool
        self.lock = threading.Lock()  # guards `pending` and the process; never held while blocking on a pipe
        self.send_lock = threading.Lock()
        self.pending: dict[int, Future[RunOutcome]] = {}
        self.restarts = -1
        self.fast_deaths = 0
        self._start()

    def _start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "evogit.worker", str(self.pool.repo)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_worker_env(),
        )
        self.started = time.monotonic()
        self.dead = False
        self.restarts += 1
        self.stderr_tail: deque[str] = deque(maxlen=5)
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.process, self.stderr_tail), daemon=True).start()

    @staticmethod
    def _drain(process: subprocess.Popen[bytes], tail: deque[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            tail.append(line.decode("utf-8", "replace").rstrip())

    def submit(self, req: _Request) -> Future[RunOutcome]:
        future: Future[RunOutcome] = Future()
        data = self.pool.encode(req)
        with self.lock:
            if self.dead:
                future.set_result(_crash("worker is restarting"))
                return future
            self.pending[req.id] = future
            process = self.process
        try:
            with self.send_lock:
                assert process.stdin is not None
                _write_frame(process.stdin, data)
        except (OSError, ValueError):
            with self.lock:  # unless the reader of `process` will still collect it, fail it here
                orphan = self.process is not process or self.dead
                if orphan and self.pending.pop(req.id, None) is not None:
                    future.set_result(_crash("worker process died"))
        return future

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        decode = msgspec.msgpack.Decoder(_Response).decode
        assert process.stdout is not None
        while (frame := _read_frame(process.stdout)) is not None:
            resp = decode(frame)
            with self.lock:
                future = self.pending.pop(resp.id, None)
            if future is not None:
                future.set_result(resp.outcome)
        code = process.wait()
        time.sleep(0.05)  # let the stderr drain catch the last words
        detail = f"worker process died (exit code {code}); restarted" + (
            f": {self.stderr_tail[-1]}" if self.stderr_tail else "")
        with self.lock:
            lost, self.pending = self.pending, {}
            self.dead = True
        for future in lost.values():
            future.set_result(_crash(detail))
        if self.pool.closed:
            return
        lived = time.monotonic() - self.started
        self.fast_deaths = self.fast_deaths + 1 if lived < 5 else 0
        if self.fast_deaths:
            time.sleep(min(5.0, 0.05 * 2 ** self.fast_deaths))  # back off a worker that dies at once
        with self.lock:
            if not self.pool.closed:
                self._start()

    def close(self) -> None:
        with self.send_lock:
            if self.process.stdin is not None:
                with contextlib.suppress(OSError):  # closing flushes: a worker that died leaves a broken pipe
                    self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


class WorkerPool:
    """Supervised worker processes running the tools of one skills repository."""

    def __init__(self, repo: str | Path, workers: int | None = None):
        self.repo = Path(repo)
        self.closed = False
        self.encode = msgspec.msgpack.Encoder().encode
        self._ids = itertools.count()
        n = workers or os.cpu_count() or 1
        self._next = itertools.cycle(range(n))
        self.workers = [_Worker(self) for _ in range(n)]

    def submit(self, spec: str, stdin: bytes, limits: Limits = DEFAULT_LIMITS,
               task: str | None = None) -> Future[RunOutcome]:
        """Queue one run (recorded with `task`, if given) on the live worker with the fewest runs in flight, so
        a slow or hostile tool holds up only the worker it runs on."""
        if self.closed:
            raise RuntimeError("worker pool is closed")
        req = _Request(next(self._ids), spec, stdin, limits.timeout, limits.fuel, limits.memory, limits.max_output,
                       limits.max_stderr, limits.max_input, task)
        # ties go to the first worker in order, so that light load stays on few processes (fewer context switches
        # on a small machine) and the others take what the busy ones cannot
        live = [w for w in self.workers if not w.dead]
        return (min(live, key=lambda w: len(w.pending)) if live else self.workers[next(self._next)]).submit(req)

    def run(self, spec: str, stdin: bytes, limits: Limits = DEFAULT_LIMITS) -> RunOutcome:
        """Run once in a worker and wait for the outcome."""
        return self._named(self.submit(spec, stdin, limits).result(), spec)

    def run_many(self, spec: str, inputs: Iterable[bytes], limits: Limits = DEFAULT_LIMITS) -> Iterator[RunOutcome]:
        """Run `spec` on each input, pipelined across the workers; outcomes come back in input order."""
        window: deque[Future[RunOutcome]] = deque()
        for data in inputs:
            window.append(self.submit(spec, data, limits))
            if len(window) >= WINDOW * len(self.workers):
                yield self._named(window.popleft().result(), spec)
        while window:
            yield self._named(window.popleft().result(), spec)

    @staticmethod
    def _named(outcome: RunOutcome, spec: str) -> RunOutcome:
        if not outcome.tool:
            outcome.tool = spec
        return outcome

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers)

    def close(self) -> None:
        self.closed = True
        for w in self.workers:
            w.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    serve(sys.argv[1])  # then a normal exit: Runtime.close() made interpreter teardown safe
