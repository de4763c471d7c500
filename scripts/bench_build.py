"""Build benchmarks: cold starter library, a new tool with warm dependencies, a no-op rebuild.

Prints each measurement next to its baseline from the same run:
  - cold library build vs. a plain `cargo build` of one tool from an empty target dir (what cargo alone costs)
  - warm new-tool build vs. plain `cargo build` of the same package with the same warm target dir
  - no-op rebuild vs. the warm build
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-cold", action="store_true", help="reuse the user cache instead of a cold one")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="evogit-bench-"))
    if not args.skip_cold:
        os.environ["EVOGIT_CACHE_DIR"] = str(work / "cache")
    from evogit.runtime import Runtime
    from evogit.toolchain import Compiler, detect

    tc = detect()
    print(f"toolchain: {tc.rustc_version} → {tc.target}; cache: {Compiler().cache}")

    t0 = time.perf_counter()
    rt, outcomes = Runtime.init(work / "skills")
    cold = time.perf_counter() - t0
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    print(f"starter library ({len(outcomes)} tools, {'cold' if not args.skip_cold else 'cached'}): {cold:7.2f} s")

    # Baseline: plain cargo on one tool from an empty target dir (same profile env as evogit).
    pkg = work / "pkg"
    shutil.copytree(ROOT / "skills-repo" / "word-count", pkg)
    comp = Compiler()
    env = comp._env()
    env["CARGO_TARGET_DIR"] = str(work / "baseline-target")
    t0 = time.perf_counter()
    subprocess.run([tc.cargo, "build", "--release", "--offline", "--target", tc.target], cwd=pkg, env=env,
                   check=True, capture_output=True)
    cargo_cold = time.perf_counter() - t0
    print(f"  baseline: plain cargo build of word-count, empty target dir: {cargo_cold:7.2f} s "
          f"(library/one-tool ratio {cold / cargo_cold:.1f}x)")

    # A new tool with warm dependencies: word-count with a changed source, so nothing is cached.
    files, _ = rt.repo.files(rt.repo.head("word-count").tree)
    times = []
    for i in range(3):
        files["src/main.rs"] = files["src/main.rs"].replace(b"fn main() {", f"fn main() {{ let _nonce = {time.time_ns()}u64;".encode(), 1)
        oid = rt.repo.commit_version(f"bench-{i}", files | {"tool.json": files["tool.json"].replace(b'"word-count"', f'"bench-{i}"'.encode())}, f"bench {i}")
        t0 = time.perf_counter()
        outcome = rt.build([f"bench-{i}"])[0]
        times.append(time.perf_counter() - t0)
        assert outcome.ok, outcome.error
        del oid
    warm = statistics.median(times)
    env["CARGO_TARGET_DIR"] = str(comp.target_dir)
    (pkg / "src" / "main.rs").write_text((pkg / "src" / "main.rs").read_text() + "\n// touched\n")
    t0 = time.perf_counter()
    subprocess.run([tc.cargo, "build", "--release", "--offline", "--target", tc.target, "--bins", "--tests"], cwd=pkg,
                   env=env, check=True, capture_output=True)
    cargo_warm = time.perf_counter() - t0
    print(f"new tool, warm dependencies (median of 3):               {warm:7.2f} s   goal <= 5 s   "
          f"{'OK' if warm <= 5 else 'MISSED'}")
    print(f"  baseline: plain cargo build --bins --tests, warm target dir: {cargo_warm:7.2f} s "
          f"(evogit adds {warm - cargo_warm:.2f} s: package checks, unit tests and cases in wasmtime, git writes)")

    # No-op rebuild of an unchanged tree, in process and as a fresh CLI process.
    noop = []
    for _ in range(50):
        t0 = time.perf_counter()
        outcome = rt.build(["word-count"])[0]
        noop.append(time.perf_counter() - t0)
        assert outcome.ok
    noop_ms = statistics.median(noop) * 1000
    evogit = [str(ROOT / ".venv" / "bin" / "evogit")] if (ROOT / ".venv" / "bin" / "evogit").exists() else [sys.executable, "-m", "evogit"]
    cli = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([*evogit, "build", "word-count", "--repo", str(rt.repo.path)], check=True, capture_output=True)
        cli.append(time.perf_counter() - t0)
    cli_ms = statistics.median(cli) * 1000
    print(f"no-op rebuild, in process (median of 50):                {noop_ms:7.2f} ms  goal <= 50 ms  "
          f"{'OK' if noop_ms <= 50 else 'MISSED'}   ({warm * 1000 / noop_ms:.0f}x faster than a warm build)")
    print(f"no-op rebuild, fresh `evogit build` process (median of 5): {cli_ms:7.2f} ms")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
