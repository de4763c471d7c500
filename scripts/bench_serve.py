"""Load on `evogit serve --http`: N concurrent clients in a second process on loopback, calling a trivial tool
(word-count on a short text) and a CPU-heavy one (slugify on 1 MB) for a fixed time, over plain HTTP (/v1) and over
MCP (the SDK's own client, streamable HTTP). Per phase: calls per second, p50/p99 latency, errors, and the runs the
repository's log recorded against the calls made (every call carries a task naming its phase). The server's and its
workers' RSS are sampled throughout (and over `--soak` seconds of trivial /v1 load at the end).

Baseline, in this same command: the same trivial run submitted straight to a `WorkerPool` of the same size from this
process (no HTTP, no server), pipelined — the ceiling the server's transport costs are measured against.

    scripts/bench_serve [--seconds 10] [--clients 8] [--workers 2] [--soak 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRIVIAL = ("word-count", b'{"text": "the quick brown fox"}')
HEAVY_TEXT = "Lorem Ipsum dolor sit amet, consectetur. " * 26000  # ~1 MB


def heavy() -> tuple[str, bytes]:
    return "slugify", json.dumps({"text": HEAVY_TEXT}).encode()


# -- the load generator (run as a second process: `bench_serve.py --load ...`) ------------------------------------
async def _v1_client(port: int, tool: str, body: bytes, task: str, end: float, out: dict[str, list]) -> None:
    req = (f"POST /v1/tools/{tool}/run?task={task} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
    try:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:")
            data = await reader.readexactly(length)
            out["lat"].append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200") or not data.startswith(b'{"ok":true'):  # no decoding: the
                # load generator shares the 2 cores with the server it measures
                out["errors"].append(data[:200].decode(errors="replace"))
    finally:
        writer.close()


async def _mcp_client(url: str, tool: str, body: bytes, task: str, end: float, out: dict[str, list]) -> None:
    from mcp import Client

    args = json.loads(body)
    async with Client(f"{url}/mcp") as c:
        await c.list_tools()
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = await c.call_tool(tool, args, meta={"evogit/task": task})  # type: ignore[arg-type]
            out["lat"].append(time.perf_counter() - t0)
            if r.is_error:
                out["errors"].append(str(r.content)[:200])


def load(url: str, transport: str, clients: int, heavy_clients: int, seconds: float, phase: str) -> dict[str, Any]:
    port = int(url.rsplit(":", 1)[1])
    kinds = {"trivial": TRIVIAL, "heavy": heavy()}
    results: dict[str, dict[str, list]] = {k: {"lat": [], "errors": []} for k in kinds}

    async def main() -> None:
        end = time.monotonic() + seconds
        jobs = []
        for i in range(clients):
            kind = "heavy" if i < heavy_clients else "trivial"
            tool, body = kinds[kind]
            task = f"bench-{phase}-{kind}"
            if transport == "v1":
                jobs.append(_v1_client(port, tool, body, task, end, results[kind]))
            else:
                jobs.append(_mcp_client(url, tool, body, task, end, results[kind]))
        await asyncio.gather(*jobs)

    asyncio.run(main())
    out = {}
    for kind, r in results.items():
        lat = sorted(r["lat"])
        if not lat:
            continue
        out[kind] = {"calls": len(lat), "per_s": len(lat) / seconds, "p50_ms": 1000 * lat[len(lat) // 2],
                     "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], "errors": len(r["errors"]),
                     "first_error": r["errors"][0] if r["errors"] else None}
    return out


# -- the orchestrator -----------------------------------------------------------------------------------------------
def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Sampler(threading.Thread):
    """Samples the server's RSS and its workers' (total) once a second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop = pid, threading.Event()
        self.samples: list[tuple[float, int, int]] = []

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.samples.append((time.monotonic(), rss_kb(self.pid), sum(rss_kb(c) for c in children(self.pid))))


def runs_by_task(repo: Path) -> dict[str, int]:
    from evogit import events as ev
    from evogit.runtime import Runtime

    counts: dict[str, int] = {}
    with Runtime(repo) as rt:
        for _, _, e in rt.log.read():
            if isinstance(e, ev.ToolRun) and e.task and e.task.startswith("bench-"):
                counts[e.task] = counts.get(e.task, 0) + 1
    return counts


def baseline(repo: Path, workers: int, seconds: float, window: int) -> float:
    """Trivial runs per second straight into a WorkerPool from this process, `window` in flight."""
    from evogit.worker import WorkerPool

    tool, body = TRIVIAL
    with WorkerPool(repo, workers) as pool:
        pool.run(tool, body)
        done, end = 0, time.monotonic() + seconds
        inflight = [pool.submit(tool, body) for _ in range(window)]
        while time.monotonic() < end:
            inflight.pop(0).result()
            done += 1
            inflight.append(pool.submit(tool, body))
        for f in inflight:
            f.result()
    return done / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 2, help="as evogit serve (cores + 2)")
    p.add_argument("--soak", type=float, default=0.0, help="seconds of trivial /v1 load at the end (RSS over time)")
    p.add_argument("--load", nargs=6, metavar=("URL", "TRANSPORT", "CLIENTS", "HEAVY", "SECONDS", "PHASE"),
                   help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.load:
        url, transport, clients, heavy_clients, seconds, phase = a.load
        print(json.dumps(load(url, transport, int(clients), int(heavy_clients), float(seconds), phase)))
        return

    from evogit.runtime import Runtime

    work = Path(tempfile.mkdtemp(prefix="evogit-bench-serve-"))
    starter = work / "starter"
    starter.mkdir()
    import shutil

    for name in ("word-count", "slugify"):
        shutil.copytree(ROOT / "skills-repo" / name, starter / name)
    repo = work / "skills"
    Runtime.init(repo, starter=starter)[0].close()
    print(f"library: word-count, slugify ({repo}); {os.cpu_count()} cores; {a.clients} clients, {a.workers} workers, "
          f"{a.seconds:g} s per phase")

    base = baseline(repo, a.workers, a.seconds, a.clients)
    print(f"baseline (WorkerPool from this process, {a.clients} in flight, no server): {base:,.0f} trivial runs/s")

    server = subprocess.Popen([sys.executable, "-m", "evogit", "serve", "--http", "--port", "0", "--workers",
                               str(a.workers), "--repo", str(repo)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    url = ""
    for line in server.stdout:
        if line.strip().startswith("MCP:"):
            url = line.split()[-1].removesuffix("/mcp")
            break
    threading.Thread(target=server.stdout.read, daemon=True).start()
    sampler = Sampler(server.pid)
    sampler.start()
    phases = [("v1-trivial", "v1", 0), ("v1-mixed", "v1", 2), ("mcp-trivial", "mcp", 0), ("mcp-mixed", "mcp", 2)]
    if a.soak:
        phases.append(("v1-soak", "v1", 0))
    results: dict[str, dict[str, Any]] = {}
    try:
        for phase, transport, heavy_clients in phases:
            seconds = a.soak if phase == "v1-soak" else a.seconds
            done = subprocess.run([sys.executable, __file__, "--load", url, transport, str(a.clients),
                                   str(heavy_clients), str(seconds), phase], capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"load generator failed in {phase}: {done.stderr[-2000:]}")
            results[phase] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(60)
        sampler.stop.set()

    recorded = runs_by_task(repo)
    print(f"\n{'phase':<13}{'kind':<9}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}  {'recorded/calls':<15}"
          f"{'vs baseline':>8}")
    for phase, kinds in results.items():
        for kind, r in kinds.items():
            rec = recorded.get(f"bench-{phase}-{kind}", 0)
            ratio = f"{r['per_s'] / base:.2f}x" if kind == "trivial" else ""
            print(f"{phase:<13}{kind:<9}{r['per_s']:>9,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}"
                  f"  {rec:>7}/{r['calls']:<7}{ratio:>8}")
            if r["first_error"]:
                print(f"   first error: {r['first_error']}")
    lost = sum(r["calls"] - recorded.get(f"bench-{ph}-{k}", 0) for ph, ks in results.items() for k, r in ks.items())
    print(f"\nevents: {sum(recorded.values()):,} runs recorded for {sum(r['calls'] for ks in results.values() for r in ks.values()):,} "
          f"calls answered ({lost} missing) after SIGTERM")
    s = sampler.samples
    if s:
        third = max(1, len(s) // 3)
        print(f"RSS, server: {s[0][1] / 1024:.0f} MB at start, {s[-1][1] / 1024:.0f} MB at the end, "
              f"{max(x[1] for x in s) / 1024:.0f} MB at most; workers (all): {s[0][2] / 1024:.0f} → "
              f"{s[-1][2] / 1024:.0f} MB (max {max(x[2] for x in s) / 1024:.0f}); "
              f"median over the first and the last third of the run: server "
              f"{statistics.median(x[1] for x in s[:third]) / 1024:.0f} → "
              f"{statistics.median(x[1] for x in s[-third:]) / 1024:.0f} MB, workers "
              f"{statistics.median(x[2] for x in s[:third]) / 1024:.0f} → "
              f"{statistics.median(x[2] for x in s[-third:]) / 1024:.0f} MB")
        (work / "rss.json").write_text(json.dumps(s))
    print(f"(data in {work})")


if __name__ == "__main__":
    main()
