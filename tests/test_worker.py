"""Supervised worker processes: the same outcomes as in-process runs, order kept, crashes contained."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from evogit.runtime import Runtime
from evogit.worker import WorkerPool

from .test_sandbox import ATTACKS, LIMITS, SLACK

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(hostile: Runtime):
    with WorkerPool(hostile.repo.path, workers=2) as p:
        yield p


def test_every_attack_ends_the_same_way_in_a_worker(pool: WorkerPool):
    for name, (kind, limits, bound) in ATTACKS.items():
        t0 = time.perf_counter()
        outcome = pool.run("hostile", json.dumps({"mode": name.split("-")[0]}).encode(), limits)
        assert outcome.error == kind, (name, outcome.error, outcome.detail)
        assert time.perf_counter() - t0 < bound + SLACK  # ended by its limit (the kind says which), not left running
    assert pool.run("hostile", b'{"mode": "ok"}', LIMITS).output == {"ok": True}


def test_run_many_keeps_input_order(pool: WorkerPool):
    modes = ["ok", "exit", "panic", "ok", "badjson"] * 40
    outcomes = list(pool.run_many("hostile", (json.dumps({"mode": m}).encode() for m in modes), LIMITS))
    expected = {"ok": None, "exit": "exit_code", "panic": "trap", "badjson": "invalid_output"}
    assert [o.error for o in outcomes] == [expected[m] for m in modes]
    assert all(o.tool == "hostile" and len(o.fingerprint) == 64 for o in outcomes)


def test_a_dying_worker_is_contained_and_replaced(pool: WorkerPool):
    restarts = pool.restarts
    victim = pool.workers[0]
    # Find a request that lands on the victim: submissions go round-robin, so submit until one does.
    future = None
    for _ in range(len(pool.workers)):
        before = set(victim.pending)
        f = pool.submit("hostile", b'{"mode": "loop"}', LIMITS.__class__(timeout=20, fuel=10**13))
        if set(victim.pending) - before:
            future = f
            break
    assert future is not None
    time.sleep(0.3)
    os.kill(victim.process.pid, signal.SIGKILL)
    outcome = future.result(timeout=10)
    assert outcome.error == "worker_crash" and "died" in outcome.detail
    assert [pool.run("hostile", b'{"mode": "ok"}', LIMITS).ok for _ in range(4)] == [True] * 4
    deadline = time.monotonic() + 10
    while pool.restarts == restarts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.restarts == restarts + 1 and not victim.dead
    assert victim.process.pid and victim.process.poll() is None


def test_unknown_tool_is_reported_not_fatal(pool: WorkerPool):
    outcome = pool.run("no-such-tool", b"{}")
    assert outcome.error == "not_found" and "no tool named" in outcome.detail


def test_workers_exit_normally_when_the_pool_closes(hostile: Runtime):
    """Workers now leave through interpreter teardown (Runtime.close(), not os._exit): it must be clean."""
    with WorkerPool(hostile.repo.path, workers=2) as p:
        outcomes = list(p.run_many("hostile", (b'{"mode": "ok"}' for _ in range(400)), LIMITS))
        processes = [w.process for w in p.workers]
    assert all(o.ok for o in outcomes)
    assert [proc.returncode for proc in processes] == [0, 0]
    assert not any("panic" in line for w in p.workers for line in w.stderr_tail)
