"""Local state that does not match its log is rebuilt or refused, never trusted; processes die with their command;
the runtime closes cleanly (issue 10, items 5 and 7). Each test is named after a finding, with the attack as input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from evogit import events as ev
from evogit.cli import main
from evogit.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _runs(n: int, start: int = 0) -> list[ev.ToolRun]:
    return [ev.ToolRun(tool="t", fingerprint="ffff", input_sha256=str(i), ok=True, wall_ms=1.0)
            for i in range(start, start + n)]


@pytest.fixture
def logged(empty_rt: Runtime) -> Runtime:
    """A repository whose log holds 60 runs, projected and verified (as after a few commands: each opening of
    the log verifies what was appended before it)."""
    empty_rt.log.append(_runs(60))
    empty_rt.projections()
    empty_rt.close()
    Runtime(empty_rt.repo.path).close()
    rt = Runtime(empty_rt.repo.path)
    assert rt.log.repaired == 0
    return rt


def _log_path(rt: Runtime) -> Path:
    return rt.repo.state_dir / "log" / f"{rt.writer()}.log"


def _boundaries(data: bytes) -> list[int]:
    out, pos = [0], 0
    while pos < len(data):
        pos += 8 + int.from_bytes(data[pos:pos + 4], "little")
        out.append(pos)
    return out


CHILD = """
import sys, threading
from evogit.runtime import Runtime
rt = Runtime(sys.argv[1])
def work():
    for i in range(150):
        assert rt.run("word-count", b'{"text": "a b %d"}' % i).ok
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
if sys.argv[2] == "close":
    with rt:
        pass
"""


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["close", "exit"])
def test_four_processes_using_the_runtime_exit_without_an_abort(small_rt: Runtime, ending: str):
    """Before Runtime.close() and its exit hook, about a third of such exits aborted in a wasmtime thread."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    small_rt.run("word-count", b'{"text": "warm the module cache"}')
    for _ in range(4):
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(small_rt.repo.path), ending], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0 and b"panicked" not in err, err.decode(errors="replace")[-2000:]
    runs = small_rt.stats("word-count")
    assert sum(m["runs"] for m in runs.values()) == 1 + 16 * 300
