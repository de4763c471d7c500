"""The compiled-module cache is native code: only files this user's evogit wrote are ever deserialized."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from evogit.runtime import Runtime
from evogit.sandbox import _MAC_MAGIC, WASMTIME_VERSION
from evogit.userstate import cache_root, module_key


def _cwasm(rt: Runtime, tool: str) -> Path:
    v = rt.repo.resolve(tool)
    return cache_root() / "modules" / f"{v.fingerprint}-wasmtime{WASMTIME_VERSION}.cwasm"


def _run_cli(rt: Runtime, tool: str, data: dict) -> subprocess.CompletedProcess[str]:
    """In a child process: if a bad module were deserialized, it would kill that process, not the test run."""
    return subprocess.run([sys.executable, "-m", "evogit", "run", tool, json.dumps(data), "--repo", str(rt.repo.path)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})


def _warm(rt: Runtime) -> None:
    assert rt.run("word-count", b'{"text": "a b"}').ok
    assert rt.run("slugify", b'{"text": "A b"}').ok


def test_another_tools_cwasm_copied_under_a_fingerprints_name_does_not_run(small_rt: Runtime):
    _warm(small_rt)
    target = _cwasm(small_rt, "word-count")
    target.write_bytes(_cwasm(small_rt, "slugify").read_bytes())  # slugify's native code, word-count's name
    done = _run_cli(small_rt, "word-count", {"text": "one two three"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["words"] == 3  # word-count's own code ran: the copy was compiled anew
    assert target.read_bytes() != _cwasm(small_rt, "slugify").read_bytes()


def test_corrupted_cwasm_does_not_kill_the_host(small_rt: Runtime):
    _warm(small_rt)
    target = _cwasm(small_rt, "word-count")
    data = bytearray(target.read_bytes())
    for i in range(len(_MAC_MAGIC) + 32 + 4096, len(data), 997):  # damage the native code, keep the header
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))
    done = _run_cli(small_rt, "word-count", {"text": "one two"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["words"] == 2


def test_unauthenticated_cwasm_from_before_the_mac_is_compiled_anew(small_rt: Runtime):
    _warm(small_rt)
    target = _cwasm(small_rt, "word-count")
    raw = target.read_bytes()[len(_MAC_MAGIC) + 32:]  # what older versions wrote: bare serialized code
    target.write_bytes(raw)
    done = _run_cli(small_rt, "word-count", {"text": "x"})
    assert done.returncode == 0, done.stderr
    assert target.read_bytes().startswith(_MAC_MAGIC)


def test_cwasm_with_a_mac_under_another_key_is_compiled_anew(small_rt: Runtime):
    _warm(small_rt)
    v = small_rt.repo.resolve("slugify")
    target = _cwasm(small_rt, "word-count")
    native = _cwasm(small_rt, "slugify").read_bytes()[len(_MAC_MAGIC) + 32:]
    wc = small_rt.repo.resolve("word-count").fingerprint
    forged = hmac.digest(b"k" * 32, b"evogit-module\0%s\0%s\0" % (wc.encode(), WASMTIME_VERSION.encode()) + native, "sha256")
    target.write_bytes(_MAC_MAGIC + forged + native)
    done = _run_cli(small_rt, "word-count", {"text": "a b c d"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["words"] == 4
    assert v.fingerprint != wc


def test_module_key_is_private_and_outside_the_repository(small_rt: Runtime):
    _warm(small_rt)
    key_file = cache_root() / "module.key"
    assert len(module_key()) == 32 and key_file.read_bytes() == module_key()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not any(small_rt.repo.path.rglob("module.key"))
    assert module_key().hex() not in "".join(_cwasm(small_rt, t).read_bytes().hex() for t in ("word-count", "slugify"))


def test_damaged_key_file_is_replaced(tmp_path: Path):
    path = tmp_path / "module.key"
    path.write_bytes(b"short")
    key = module_key(path)
    assert len(key) == 32 and path.read_bytes() == key and module_key(path) == key
    assert hashlib.sha256(key).digest() != hashlib.sha256(b"short").digest()
