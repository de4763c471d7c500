"""Run benchmarks for word-count, all measured in this one process on the same tool and input:

  in-process warm run (evogit Runtime.run: schema checks + sandbox) — median and p99
  sandbox only (no schema checks)
  through the long-lived supervised worker: one run at a time (round trip), and pipelined — runs per second
  a fresh `evogit run` process
  baselines: the same Rust code compiled natively and run as a subprocess; wasmtime compiling the module
  on every run (what a naive embedding does)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INPUT = b'{"text": "the quick brown fox jumps over the lazy dog"}'


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return sorted(out)


def p(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    import wasmtime

    from evogit.runtime import Runtime
    from evogit.sandbox import Sandbox
    from evogit.toolchain import Compiler, detect
    from evogit.worker import WorkerPool

    work = Path(tempfile.mkdtemp(prefix="evogit-bench-run-"))
    src = work / "starter"
    src.mkdir()
    shutil.copytree(ROOT / "skills-repo" / "word-count", src / "word-count")
    rt, outcomes = Runtime.init(work / "skills", starter=src)
    assert outcomes[0].ok, outcomes[0].error
    rt.run_sink = lambda record: None
    assert rt.run("word-count", INPUT).ok

    warm = timed(lambda: rt.run("word-count", INPUT), 3000)
    tool = rt.load("word-count")
    sb: Sandbox = rt.builder.sandbox
    loaded = sb.load(tool.wasm, tool.version.fingerprint)
    bare = timed(lambda: sb.run(loaded, INPUT), 3000)

    with WorkerPool(rt.repo.path, workers=2) as pool:
        assert pool.run("word-count", INPUT).ok
        worker = timed(lambda: pool.run("word-count", INPUT), 2000)
        n = 10000
        t0 = time.perf_counter()
        results = list(pool.run_many("word-count", [INPUT] * n))
        batch_rps = n / (time.perf_counter() - t0)
        assert all(r.ok for r in results)

    evogit = ROOT / ".venv" / "bin" / "evogit"
    cmd = [str(evogit), "run", "word-count", INPUT.decode(), "--repo", str(rt.repo.path)]
    fresh = timed(lambda: subprocess.run(cmd, check=True, capture_output=True), 15)

    # Baseline 1: native build of the same source, run as a subprocess.
    tc = detect()
    pkg = work / "native"
    shutil.copytree(ROOT / "skills-repo" / "word-count", pkg)
    _, env = Compiler().command(pkg, work / "native-target", sandboxed=False)
    subprocess.run([tc.cargo, "build", "--release", "--offline"], cwd=pkg, env=env, check=True, capture_output=True)
    native_bin = work / "native-target" / "release" / "tool"
    native = timed(lambda: subprocess.run([str(native_bin)], input=INPUT, check=True, capture_output=True), 300)

    # Baseline 2: wasmtime compiling the module on every run.
    engine = wasmtime.Engine()
    def compile_every_time() -> None:
        module = wasmtime.Module(engine, tool.wasm)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        store = wasmtime.Store(engine)
        wasi = wasmtime.WasiConfig()
        stdin = work / "in.json"
        stdin.write_bytes(INPUT)
        wasi.stdin_file = str(stdin)
        wasi.stdout_file = str(work / "out.json")
        store.set_wasi(wasi)
        start = linker.instantiate(store, module).exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
    cold = timed(compile_every_time, 10)

    med = statistics.median
    print(f"word-count ({len(tool.wasm):,} bytes wasm), input {len(INPUT)} bytes, {os.cpu_count()} cores")
    print(f"{'path':<48}{'median ms':>10}{'p99 ms':>10}")
    rows = [
        ("evogit in-process warm run (schemas + sandbox)", warm),
        ("sandbox only (no schema checks)", bare),
        ("through the worker process, one at a time", worker),
        ("fresh `evogit run` process", fresh),
        ("baseline: native binary as a subprocess", native),
        ("baseline: wasmtime compile every run", cold),
    ]
    for name, xs in rows:
        print(f"{name:<48}{med(xs):>10.3f}{p(xs, 0.99):>10.3f}")
    print(f"through 2 worker processes, pipelined: {batch_rps:,.0f} runs/s ({n} runs)")
    print(f"warm run vs native subprocess: {med(native) / med(warm):.1f}x faster (goal >= 3x); "
          f"vs compile-every-time: {med(cold) / med(warm):.0f}x faster")
    print(f"goals: warm median <= 0.5 ms: {'OK' if med(warm) <= 0.5 else 'MISSED'}; "
          f"fresh process <= 250 ms: {'OK' if med(fresh) <= 250 else 'MISSED'}; "
          f">= 1500 runs/s through the workers: {'OK' if batch_rps >= 1500 else 'MISSED'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
