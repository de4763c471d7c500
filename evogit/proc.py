"""Child processes that die with evogit and stay within their limits: wall time, memory, output.

Every external command evogit starts that can run long (cargo under bubblewrap, git for push and pull) goes
through `run`:

- the child and everything it starts in its group get SIGKILL when the thread that started it ends
  (`setpriv --pdeathsig TERM`, util-linux, on a guard shell that kills the group), so a killed
  `evogit push` or `evogit build` leaves no git, receive-pack, hook or cargo running behind it;
- it runs in a process group of its own, killed whole on timeout, on too much output, and on any exception
  in the caller (Ctrl-C included);
- stdout and stderr are read up to a shared cap; past it the group is killed (`overflowed`);
- optionally an address-space limit for the child and everything it starts (`prlimit --as`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO

SETPRIV = shutil.which("setpriv")
PRLIMIT = shutil.which("prlimit")
_CHUNK = 1 << 16


@dataclass
class Completed:
    """How a child process ended. `returncode` is negative for a signal (as in subprocess)."""

    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    overflowed: bool = False
    seconds: float = 0.0
    wrapped: list[str] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.overflowed


class _Reader(threading.Thread):
    """Drains one pipe into memory while the shared budget lasts; past it, calls `on_overflow` once."""

    def __init__(self, stream: IO[bytes], budget: _Budget):
        super().__init__(daemon=True)
        self.stream, self.budget = stream, budget
        self.chunks: list[bytes] = []

    def run(self) -> None:
        try:
            while chunk := self.stream.read(_CHUNK):
                if self.budget.take(len(chunk)):
                    self.chunks.append(chunk)
        except (OSError, ValueError):
            pass  # the pipe closed under us (the group was killed)

    def value(self) -> bytes:
        return b"".join(self.chunks)


class _Budget:
    def __init__(self, cap: int | None, on_overflow: Callable[[], None]) -> None:
        self.cap, self.used, self.overflowed, self._on_overflow = cap, 0, False, on_overflow
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.cap is not None and self.used + n > self.cap:
                if not self.overflowed:
                    self.overflowed = True
                    self._on_overflow()
                return False
            self.used += n
            return True


def wrap(argv: list[str], memory: int | None = None) -> list[str]:
    """The command line that actually runs: `argv` under the parent-death signal and the memory limit."""
    wrapped = list(argv)
    if memory is not None:
        if PRLIMIT is None:
            raise OSError("prlimit (util-linux) is not installed: cannot limit a child's memory")
        wrapped = [PRLIMIT, f"--as={int(memory)}", "--", *wrapped]
    if SETPRIV is not None:
        wrapped = [SETPRIV, "--pdeathsig", "TERM", "--", SH, "-c", _GUARD, "evogit-guard", *wrapped]
    return wrapped


SH = "/bin/sh"
# The parent-death signal reaches only the process it is set on, not what that process starts (git push to
# a local remote runs receive-pack and its hooks; they outlived a killed `evogit push` and raced its retry).
# So it goes to a guard shell that kills the whole group, itself included, when evogit dies. (An
# asynchronous command's stdin would be /dev/null: fd 3 hands it the real one; a child's death by a signal
# is passed on as the guard's own, so `returncode` stays negative for it.)
_GUARD = ('trap "kill -KILL 0" TERM; exec 3<&0; "$@" <&3 3<&- & wait $!; s=$?; '
          'if [ $s -gt 128 ]; then trap - TERM; kill -$((s - 128)) $$; fi; exit $s')


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run(argv: list[str], *, cwd: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
        input: bytes | None = None, timeout: float | None = None, max_output: int | None = None,
        memory: int | None = None) -> Completed:
    """Run `argv` to the end (or to a limit) and return what it printed; never leaves it running.

    Raises OSError if the program cannot be started.
    """
    wrapped = wrap(argv, memory)
    t0 = time.monotonic()
    proc = subprocess.Popen(wrapped, cwd=cwd, env=dict(env) if env is not None else None,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, bufsize=0)
    budget = _Budget(max_output, lambda: kill_group(proc.pid))
    assert proc.stdout is not None and proc.stderr is not None
    readers = [_Reader(proc.stdout, budget), _Reader(proc.stderr, budget)]
    for r in readers:
        r.start()
    timed_out = False
    try:
        if input is not None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(input)
            proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc.pid)
            proc.wait()
    except BaseException:
        kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        kill_group(proc.pid)  # whatever it started and left behind in its group goes too
        for r in readers:
            r.join(5)  # a grandchild that left the group may hold a pipe open: do not wait on it forever
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return Completed(list(argv), proc.returncode, readers[0].value(), readers[1].value(), timed_out,
                     budget.overflowed, time.monotonic() - t0, wrapped)
