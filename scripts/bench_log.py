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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from evogit import projections
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
    projector = projections.replay(big, work / "projections.msgpack")
    replay_s = time.perf_counter() - t0
    runs = sum(v.runs for v in projector.state.versions.values())
    assert runs == total, runs

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
    print(f"publish that log into git (one segment):    {publish_s:>10.2f} s")
    print(f"publish 1,000 more events (a new segment):  {publish_more_s * 1000:>10.1f} ms")
    print(f"import it on another repository (checked):  {import_s:>10.2f} s    "
          f"baseline: copying the file {copy_s:.2f} s ({import_s / copy_s:.0f}x)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
