"""Child processes die with the command that started them and stay within their limits (evogit/proc.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from evogit import proc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie is dead


def test_output_and_exit_code():
    done = proc.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"])
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")
    assert not done.ok and not done.timed_out and not done.overflowed


def test_input_is_passed():
    done = proc.run([sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read()[::-1])"], input=b"abc")
    assert done.ok and done.stdout == b"cba"


def test_timeout_kills_the_whole_group(tmp_path: Path):
    pidfile = tmp_path / "grandchild"
    script = f"import subprocess, time; p = subprocess.Popen(['sleep', '60']); open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    t0 = time.monotonic()
    done = proc.run([sys.executable, "-c", script], timeout=1.0)
    assert done.timed_out and time.monotonic() - t0 < 10
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(grandchild)


def test_output_cap_kills_the_child():
    t0 = time.monotonic()
    done = proc.run([sys.executable, "-c", "import sys\nwhile True: sys.stdout.write('x' * 65536)"], max_output=1 << 20)
    assert done.overflowed and not done.ok and len(done.stdout) <= 1 << 20
    assert time.monotonic() - t0 < 20


def test_memory_limit():
    done = proc.run([sys.executable, "-c", "x = bytearray(2 << 30)"], memory=512 << 20)
    assert done.returncode != 0 and b"MemoryError" in done.stderr


def test_child_dies_with_a_killed_parent(tmp_path: Path):
    pidfile = tmp_path / "child"
    parent = textwrap.dedent(f"""
        import threading, time
        from evogit import proc
        import subprocess
        orig = subprocess.Popen.__init__
        def spy(self, *a, **k):
            orig(self, *a, **k)
            open({str(pidfile)!r}, 'w').write(str(self.pid))
        subprocess.Popen.__init__ = spy
        proc.run(['sleep', '60'])
    """)
    p = subprocess.Popen([sys.executable, "-c", parent], env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert _alive(child)
    p.send_signal(signal.SIGKILL)
    p.wait()
    for _ in range(100):
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child)
