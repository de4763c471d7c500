"""Event log benchmarks, in one process:

  appends/s, one event per call, group commit (the default)  vs  baseline: fsync after every event
  appends/s, 1,000 events per call
  replay of 1,000,000 ToolRun events into all projections (goal <= 3 s), and decode alone as a baseline
  sharing that log through git: publish (one segment), then 1,000 more events (an incremental publish), and
  import on another repository (every event checked), against copying the same bytes as a baseline
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from evogit import projections
    from evogit.atomic import write_atomic
    from evogit.events import ToolRun, decode
    from evogit.log import HEADER, FileLog

    work = Path(tempfile.mkdtemp(prefix="evogit-bench-log-"))

    def event(i: int) -> ToolRun:
        return ToolRun(tool=f"tool-{i % 200}", fingerprint=f"{i % 200:064x}", input_sha256=f"{i:064x}",
                       ok=i % 7 != 0, error=None if i % 7 else "trap", wall_ms=0.2 + (i % 50) / 10,
                       fuel=20000 + i % 1000, cpu_ms=0.1)

    log = FileLog(work / "single", "w")
    n = 50_000
    t0 = time.perf_counter()
    for i in range(n):
        log.append([event(i)])
    single = n / (time.perf_counter() - t0)

    base = FileLog(work / "fsync", "w")
    m = 2_000
    t0 = time.perf_counter()
    for i in range(m):
        base.append([event(i)])
        os.fsync(base._fd)
    fsync_each = m / (time.perf_counter() - t0)

    big = FileLog(work / "big", "w")
    total = 1_000_000
    t0 = time.perf_counter()
    for start in range(0, total, 1000):
        big.append([event(i) for i in range(start, start + 1000)])
    batched = total / (time.perf_counter() - t0)
    big.sync()

    data = (work / "big" / "w.log").read_bytes()
    t0 = time.perf_counter()
    pos, count = 0, 0
    view = memoryview(data)
    while pos < len(data):
        size, _ = HEADER.unpack_from(data, pos)
        decode(view[pos + 8:pos + 8 + size])
        pos += 8 + size
        count += 1
    decode_only = time.perf_counter() - t0

    t0 = time.perf_counter()
    projector, _ = projections.replay_all(big, work / "projections.msgpack", work / "embeddings.msgpack")
    replay_s = time.perf_counter() - t0
    runs = sum(v.runs for v in projector.state.versions.values())
    assert runs == total, runs

    # A library that has solved 50,000 tasks: their vectors (384 floats each) are most of the derived bytes.
    import numpy as np

    from evogit.events import Embedded, Feedback, fact_id

    grown = FileLog(work / "grown", "w")
    rng = np.random.default_rng(0)
    tasks = 50_000
    for start in range(0, tasks, 1000):
        batch: list[Any] = []
        for i in range(start, start + 1000):
            batch.append(Embedded(tool="", fingerprint="", model="m", text=f"task {i}", id=fact_id("embedded", "m", str(i)),
                                  vector=rng.standard_normal(384).astype(np.float32).tolist()))
            batch.append(Feedback(tool=f"tool-{i % 200}", fingerprint="f", task=f"task {i}", solved=True))
        grown.append(batch)
    metrics_path, vectors_path = work / "grown-projections.msgpack", work / "grown-embeddings.msgpack"
    projections.replay_all(grown, metrics_path, vectors_path)
    grown.append([event(0)])
    t0 = time.perf_counter()
    projections.open_projections(grown, metrics_path)
    open_metrics = time.perf_counter() - t0
    t0 = time.perf_counter()
    projections.open_embeddings(grown, vectors_path)
    open_vectors = time.perf_counter() - t0
    t0 = time.perf_counter()
    state = projections.load(vectors_path, projections.EmbeddingState)
    assert state is not None
    write_atomic(work / "rewritten.msgpack", projections.snapshot(state))
    rewrite_vectors = time.perf_counter() - t0

    from evogit.repo import SkillsRepo
    from evogit.share import LOGS, import_logs, publish_log

    repo_a, repo_b = SkillsRepo.init(work / "a"), SkillsRepo.init(work / "b")
    shutil.copy(work / "big" / "w.log", repo_a.state_dir / "w.log")
    t0 = time.perf_counter()
    publish_log(repo_a, repo_a.state_dir, "w")
    publish_s = time.perf_counter() - t0
    more = FileLog(repo_a.state_dir, "w")
    more.append([event(i) for i in range(1000)])
    more.sync()
    t0 = time.perf_counter()
    publish_log(repo_a, repo_a.state_dir, "w")
    publish_more_s = time.perf_counter() - t0
    subprocess.run(["git", "-C", str(repo_b.path), "fetch", "-q", str(repo_a.path), f"{LOGS}*:{LOGS}*"], check=True)
    t0 = time.perf_counter()
    added, _ = import_logs(repo_b, repo_b.state_dir / "log", "b")
    import_s = time.perf_counter() - t0
    assert added["w"] == (repo_a.state_dir / "w.log").stat().st_size
    t0 = time.perf_counter()
    shutil.copy(repo_a.state_dir / "w.log", work / "copy.log")
    copy_s = time.perf_counter() - t0

    print(f"appends, one event per call, group commit: {single:>10,.0f} /s   goal >= 50,000   "
          f"{'OK' if single >= 50_000 else 'MISSED'}")
    print(f"  baseline: fsync after every event:        {fsync_each:>10,.0f} /s   ({single / fsync_each:.0f}x slower)")
    print(f"appends, 1,000 events per call:             {batched:>10,.0f} /s")
    print(f"replay 1,000,000 runs into all projections: {replay_s:>10.2f} s    goal <= 3 s   "
          f"{'OK' if replay_s <= 3 else 'MISSED'}")
    print(f"  baseline: decode alone:                   {decode_only:>10.2f} s    "
          f"(projections add {replay_s - decode_only:.2f} s)")
    print(f"log size: {len(data) / 1e6:.0f} MB for {count:,} events")
    print(f"50,000 solved tasks with vectors; open the metrics after one more run: {open_metrics * 1000:.0f} ms "
          f"({metrics_path.stat().st_size / 1e6:.1f} MB snapshot)")
    print(f"  baseline: load and rewrite the vectors' snapshot, as when they shared one: {rewrite_vectors * 1000:.0f} ms "
          f"({vectors_path.stat().st_size / 1e6:.0f} MB; {rewrite_vectors / open_metrics:.0f}x)")
    print(f"  open the vectors (a search), nothing of theirs new:  {open_vectors * 1000:.0f} ms")
    print(f"publish that log into git (one segment):    {publish_s:>10.2f} s")
    print(f"publish 1,000 more events (a new segment):  {publish_more_s * 1000:>10.1f} ms")
    print(f"import it on another repository (checked):  {import_s:>10.2f} s    "
          f"baseline: copying the file {copy_s:.2f} s ({import_s / copy_s:.0f}x)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
