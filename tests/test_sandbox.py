"""The hostile suite: every attack ends with its own error kind, within its limit, and the host survives."""

from __future__ import annotations

import json
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import wasmtime

from evogit.errors import SandboxError
from evogit.runtime import Runtime
from evogit.sandbox import Limits, Sandbox

pytestmark = pytest.mark.slow
LIMITS = Limits(timeout=1.0, fuel=2_000_000_000_000, memory=64 << 20, max_output=1 << 20, max_stderr=64 << 10)

#: Seconds allowed past an attack's bound before it counts as not contained: the kind proves which limit ended
#: it; the wall time only proves it was ended at all (a loaded 2-core CI machine stretches every run).
SLACK = 10.0
# mode -> (expected error kind, limits to use, upper bound on wall time in seconds)
ATTACKS = {
    "loop": ("timeout", LIMITS, 1.0 + 0.5),
    "loop-fuel": ("out_of_fuel", Limits(timeout=30, fuel=200_000_000), 5.0),
    "alloc": ("memory_limit", LIMITS, 1.5),
    "recurse": ("stack_overflow", LIMITS, 1.5),
    "sleep": ("trap", LIMITS, 1.5),
    "stdout": ("output_limit", LIMITS, 1.5),
    "stderr": ("output_limit", LIMITS, 1.5),
    "panic": ("trap", LIMITS, 1.5),
    "exit": ("exit_code", LIMITS, 1.5),
    "badjson": ("invalid_output", LIMITS, 1.5),
    "schema": ("invalid_output", LIMITS, 1.5),
}


def attack(rt: Runtime, name: str):
    kind, limits, bound = ATTACKS[name]
    mode = name.split("-")[0]
    t0 = time.perf_counter()
    outcome = rt.run("hostile", json.dumps({"mode": mode}).encode(), limits)
    return outcome, time.perf_counter() - t0


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_ends_in_its_own_kind_within_its_limit(hostile: Runtime, name: str):
    kind, _, bound = ATTACKS[name]
    outcome, took = attack(hostile, name)
    assert not outcome.ok
    assert outcome.error == kind, (outcome.error, outcome.detail)
    assert took < bound + SLACK, f"{name} took {took:.2f}s"  # ended by its limit, not left running
    assert outcome.detail
    if name == "panic":
        assert "hostile tool panics on purpose" in outcome.detail
    if name == "exit":
        assert "exiting with 3" in outcome.detail and outcome.exit_code == 3


@pytest.mark.parametrize("mode", ["passwd", "listdir"])
def test_no_host_files(hostile: Runtime, mode: str):
    outcome = hostile.run("hostile", json.dumps({"mode": mode}).encode(), LIMITS)
    assert outcome.ok and outcome.output["ok"] is False  # the read failed inside the guest
    assert "root:" not in json.dumps(outcome.output)


def test_no_environment_and_no_arguments(hostile: Runtime, monkeypatch):
    monkeypatch.setenv("EVOGIT_PLANTED_SECRET", "hunter2")
    outcome = hostile.run("hostile", b'{"mode": "env"}', LIMITS)
    assert outcome.ok
    assert outcome.output["env"] == [] and outcome.output["args"] == ["hostile"]


def test_invalid_input_never_reaches_the_tool(hostile: Runtime):
    outcome = hostile.run("hostile", b'{"mode": 5}', LIMITS)
    assert outcome.error == "invalid_input" and outcome.fuel == 0
    assert hostile.run("hostile", b"{", LIMITS).error == "invalid_input"


def test_non_wasi_import_is_refused():
    wasm = wasmtime.wat2wasm('(module (import "env" "evil" (func)) (memory (export "memory") 1)'
                             ' (func (export "_start") call 0))')
    with pytest.raises(SandboxError) as err:
        Sandbox().load(wasm)
    assert err.value.kind == "invalid_module" and "env.evil" in str(err.value)


def test_fingerprint_is_checked_before_loading():
    wasm = wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "_start")))')
    with pytest.raises(SandboxError, match="fingerprint mismatch"):
        Sandbox().load(wasm, "0" * 64)


def test_host_survives_and_memory_stays_bounded(hostile: Runtime):
    for name in ATTACKS:  # warm up: compile and cache everything once
        attack(hostile, name)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        for name in ATTACKS:
            attack(hostile, name)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 150, f"host RSS grew {grown_mib:.0f} MiB"
    assert hostile.run("hostile", b'{"mode": "ok"}', LIMITS).output == {"ok": True}


def test_four_threads_behave_like_one(hostile: Runtime):
    names = sorted(ATTACKS) * 2
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: (n, attack(hostile, n)), names))
    for name, (outcome, took) in results:
        kind, _, bound = ATTACKS[name]
        assert outcome.error == kind, (name, outcome.error, outcome.detail)
        assert took < bound * 2 + SLACK, f"{name} took {took:.2f}s with 4 threads"


def test_every_run_leaves_a_record(hostile: Runtime, monkeypatch):
    seen = []
    monkeypatch.setattr(hostile, "run_sink", seen.append)
    hostile.run("hostile", b'{"mode": "ok"}', LIMITS)
    hostile.run("hostile", b'{"mode": "panic"}', LIMITS)
    hostile.run("hostile", b'{"mode": 1}', LIMITS)
    assert [(r.ok, r.error) for r in seen] == [(True, None), (False, "trap"), (False, "invalid_input")]
    first = seen[0]
    assert first.tool == "hostile" and len(first.fingerprint) == 64 and len(first.input_sha256) == 64
    assert first.fuel > 0 and first.wall_ms > 0 and first.output_bytes == len(b'{"ok": true}\n')


def test_runs_are_events_in_the_log(hostile: Runtime):
    rt = Runtime(hostile.repo.path)
    before = rt.log.end()
    rt.run("hostile", b'{"mode": "exit"}', LIMITS, task="exit politely")
    (_, _, event), = list(rt.log.read(before))
    assert event.error == "exit_code" and event.exit_code == 3 and event.task == "exit politely"


def test_cli_batch_and_raw_wasm(hostile: Runtime, tmp_path: Path):
    from click.testing import CliRunner

    from evogit.cli import main

    repo = str(hostile.repo.path)
    lines = '{"mode": "ok"}\n{"mode": "exit"}\n\n{"mode": "ok"}\n'
    result = CliRunner().invoke(main, ["run", "hostile", "--batch", "-", "--repo", repo, "--timeout", "1"], input=lines)
    envelopes = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["ok"] for e in envelopes] == [True, False, True] and result.exit_code == 1
    assert envelopes[1]["error"]["kind"] == "exit_code"
    wasm = tmp_path / "hostile.wasm"
    wasm.write_bytes(hostile.repo.read(hostile.repo.commit(hostile.repo.resolve("hostile").build_commit), "build/tool.wasm"))
    result = CliRunner().invoke(main, ["run", "--wasm", str(wasm), '{"mode": "schema"}'])
    assert result.exit_code == 0 and json.loads(result.stdout) == {"nope": 1}  # no schema checks on raw modules
    result = CliRunner().invoke(main, ["run", "--wasm", str(wasm), '{"mode": "loop"}', "--timeout", "0.3"])
    assert result.exit_code == 1 and ": timeout: ran longer than 0.3 s" in result.output
