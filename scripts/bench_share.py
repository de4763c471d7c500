"""Sharing at scale: `evogit push` and `evogit pull` of a library of 1,000 tool versions through a bare hub.

Each measurement is the `evogit` command line in its own process (what a user waits for), timed next to its
baseline from the same run: plain `git push` / `git fetch` of the same refs between the same repositories (the
floor evogit adds its checks to), and the start of an `evogit` process that does nothing (`evogit --help`).

  push      the whole library to a new hub (`evogit init --bare`, trust `hash`), vs `git push` to a plain bare repo
  pull      the whole library into a new repository under trust `hash` and `signed`, vs `git fetch`
  rebuild   a pull under trust `rebuild` (each version rebuilt here, from a build cache that never saw it: what
            another machine with warm crates pays) on a subset (`--rebuild-versions`), reported per version next
            to `hash` on the same subset; a rebuild that finds the tree in this machine's cache is shown too
  no-op     the same push and pull again with nothing new (goal: a pull <= 1 s)
  one new   one new version of one tool: its push, then its pull (push sends only what is new)

Bytes are counted on the wire: the hub's `git-upload-pack` (for fetches) and `git-receive-pack` (for pushes) are
run through a pass-through wrapper (`remote.<name>.uploadpack` / `.receivepack`) that pipes the pack stream
through `dd`, which reports the bytes it copied: everything the hub sends to a fetch (ref advertisement,
negotiation replies, the pack) and everything a push sends to the hub (commands and the pack) — what ssh
would carry, less its own framing. They are compared with the raw size of the wasm files moved.

The library: `--versions` (default 1,000) versions of tools made from the starter library (tool t is starter
t mod 24 renamed `<starter>-g<t div 24>`; 10 versions a tool: the original, then 9 real code changes — `main`
calls a new function with constants of its own before the original `main`, so every version compiles to a new
wasm). They are made by real `Runtime.commit` calls, each building its version in the build sandbox, with every
tag signed by a bench SSH key; the compiles run first in two worker processes (`Builder.try_files`, whose
results evogit's identical-tree cache serves to the commits). The repository is packed (`git gc`) and kept
under ~/.cache/evogit-bench (keyed by evogit's version, the toolchain and this generator) so a second run does
not rebuild it; the bench's own build cache lives there too, never in ~/.cache/evogit.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_CACHE = Path(os.environ.get("EVOGIT_BENCH_CACHE") or Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "evogit-bench")
MAKER_CACHE = BENCH_CACHE / "evogit-cache"  # EVOGIT_CACHE_DIR of the machine that made the library
GENERATOR = "1"  # bump when the library below changes
PER_TOOL = 10
HUB_TRUST = "hash"
# evogit processes as an installed evogit runs: its modules' bytecode cached (here outside the source tree)
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
       "PYTHONPYCACHEPREFIX": str(BENCH_CACHE / "pycache")}


# -- the library ---------------------------------------------------------------------------------------------
def starters() -> list[Path]:
    from evogit.resources import resource

    return sorted(d for d in resource("skills-repo").iterdir() if (d / "tool.json").is_file())


def package(t: int, k: int) -> tuple[str, dict[str, bytes], str]:
    """Version k of tool t: (name, files, commit message)."""
    src = starters()[t % len(starters())]
    name = f"{src.name}-g{t // len(starters())}"
    files = {str(p.relative_to(src)): p.read_bytes() for p in sorted(src.rglob("*"))
             if p.is_file() and "target" not in p.relative_to(src).parts}
    manifest = json.loads(files["tool.json"])
    manifest["name"] = name
    files["tool.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    if k:
        main_rs = files["src/main.rs"].decode()
        assert main_rs.count("fn main() {") == 1, src
        seed = int(hashlib.sha256(f"{name} {k}".encode()).hexdigest()[:12], 16)
        files["src/main.rs"] = (main_rs.replace("fn main() {", "fn bench_main_v() {") + f"""
// bench version {k}: a change of code that leaves the tool's behaviour as it was
fn bench_evolved(s: &str) -> String {{
    let mut h: u64 = {seed};
    for b in s.bytes() {{
        h = h.wrapping_mul({2 * k + 1_000_003}).wrapping_add((b as u64) ^ {k * 7919});
    }}
    format!("{{}} {{:x}} {{}}", s, h, {k})
}}

fn main() {{
    if std::env::args().len() > {1000 + k} {{
        eprintln!("{{}}", bench_evolved("{name} v{k}"));
    }}
    bench_main_v()
}}
""").encode()
    return name, files, f"{name}: bench version {k}\n\nA code change that keeps every case.\n"


def layout(n: int) -> list[tuple[int, int]]:
    """(tool, version) in the order they are committed: round k gives every tool its version k."""
    tools = -(-n // PER_TOOL)
    return [(t, k) for k in range(PER_TOOL) for t in range(tools) if t * PER_TOOL + k < n]


def library_dir(n: int) -> Path:
    from evogit import __version__
    from evogit.artifact import ARTIFACT_FORMAT
    from evogit.toolchain import detect

    key = hashlib.sha256(f"{__version__} {detect().key} {ARTIFACT_FORMAT} {GENERATOR}".encode()).hexdigest()[:12]
    return BENCH_CACHE / f"share-{__version__}-{key}-{n}"


def compile_worker(index: int, workers: int, n: int, scratch: str) -> None:
    """Compile and test this worker's share of the library's packages into the build cache (not committed)."""
    from evogit.build import Builder
    from evogit.repo import SkillsRepo

    builder = Builder(SkillsRepo.init(scratch, bare=True))
    todo = layout(n)[index::workers]
    for i, (t, k) in enumerate(todo):
        name, files, _ = package(t, k)
        record, _ = builder.try_files(files)
        if not record.ok:
            raise SystemExit(f"{name} v{k} does not build: {record.message}")
        if i % 25 == 0:
            print(f"  worker {index}: {i + 1}/{len(todo)} compiled", flush=True)


def make_library(n: int) -> Path:
    """The cached library of n versions (made once, then reused): its directory holds `repo`, the signing key
    and the allowed-signers file."""
    lib = library_dir(n)
    if (lib / "done").exists():
        return lib
    shutil.rmtree(lib, ignore_errors=True)
    lib.mkdir(parents=True)
    t0 = time.perf_counter()
    print(f"making the library of {n} versions in {lib} (once; builds in {MAKER_CACHE})", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="evogit-bench-share-scratch-"))
    workers = [subprocess.Popen([sys.executable, __file__, "--compile-worker", str(i), "2", str(n),
                                 str(scratch / f"w{i}")], env={**ENV, "EVOGIT_CACHE_DIR": str(MAKER_CACHE)})
               for i in range(2)]
    if any(w.wait() != 0 for w in workers):
        raise SystemExit("compiling the library failed")
    shutil.rmtree(scratch, ignore_errors=True)
    compiled = time.perf_counter() - t0
    key = lib / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)], check=True)
    (lib / "allowed_signers").write_text("bench " + " ".join(key.with_suffix(".pub").read_text().split()[:2]) + "\n")
    repo = lib / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    for option, value in (("gpg.format", "ssh"), ("user.signingkey", str(key)),
                          ("gpg.ssh.allowedSignersFile", str(lib / "allowed_signers")), ("evogit.writer", "bench-maker")):
        subprocess.run(["git", "-C", str(repo), "config", option, value], check=True)
    from evogit.runtime import Runtime

    rt, _ = Runtime.init(repo, starter=False)
    t1 = time.perf_counter()
    for i, (t, k) in enumerate(layout(n)):
        name, files, message = package(t, k)
        outcome = rt.commit(name, files, message)
        if not outcome.ok:
            raise SystemExit(f"{name} v{k}: {outcome.error}")
        if i % 100 == 99:
            print(f"  {i + 1}/{n} committed and built", flush=True)
    rt.close()
    subprocess.run(["git", "-C", str(repo), "gc", "-q"], check=True)
    (lib / "done").write_text(f"compiled in {compiled:.0f} s, committed and built in {time.perf_counter() - t1:.0f} s\n")
    print(f"library made in {time.perf_counter() - t0:.0f} s ({(lib / 'done').read_text().strip()})", flush=True)
    return lib


# -- measuring -----------------------------------------------------------------------------------------------
class Wire:
    """Counts the bytes a hub's upload-pack sends and its receive-pack receives (see the module docstring)."""

    def __init__(self, work: Path):
        self.log = work / "wire.log"
        self.upload, self.receive = work / "count-upload-pack", work / "count-receive-pack"
        self.upload.write_text(f'#!/bin/sh\ngit upload-pack "$@" | dd bs=65536 2>>"{self.log}"\n')
        self.receive.write_text(f'#!/bin/sh\ndd bs=65536 2>>"{self.log}" | git receive-pack "$@"\n')
        for p in (self.upload, self.receive):
            p.chmod(0o755)

    def add_remote(self, repo: Path, name: str, url: Path) -> None:
        git(repo, "remote", "add", name, str(url))
        git(repo, "config", f"remote.{name}.uploadpack", str(self.upload))
        git(repo, "config", f"remote.{name}.receivepack", str(self.receive))

    def reset(self) -> None:
        self.log.write_text("")

    def bytes(self) -> int:
        return sum(int(m.group(1)) for m in re.finditer(r"^(\d+) bytes", self.log.read_text(), re.M))


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, env=ENV)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args[:3])} failed: {done.stderr.decode()[-800:]}")
    return done.stdout.decode()


def evogit(repo: Path | None, *args: str, cache: Path = MAKER_CACHE) -> tuple[float, str]:
    """Run the evogit command line; (seconds, stdout)."""
    argv = [sys.executable, "-m", "evogit", *(["--repo", str(repo)] if repo else []), *args]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env={**ENV, "EVOGIT_CACHE_DIR": str(cache)})
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"evogit {' '.join(args)} failed ({took:.1f} s): "
                         f"{(done.stderr or done.stdout).decode()[-1500:]}")
    return took, done.stdout.decode()


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


FETCH_SPECS = ("+refs/heads/tools/*:refs/remotes/hub/tools/*", "+refs/tags/tools/*:refs/tags/tools/*",
               "+refs/evogit/logs/*:refs/evogit/remotes/hub/logs/*")


def shared_refs(repo: Path) -> list[str]:
    """The refs `evogit push` sends: tool branches, version tags, this writer's log."""
    out = git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/tools/", "refs/tags/tools/", "refs/evogit/logs/")
    return out.split()


def wasm_bytes(repo: Path, refs: list[str] | None = None, deflated: bool = False) -> tuple[int, int]:
    """(versions, total bytes of their tool.wasm) among the version tags (all, or those in `refs`); with
    `deflated`, the bytes of each file deflated on its own (zlib level 6, as git stores an object without a
    delta): what the transfer would cost if no version shared anything with another."""
    tags = [r for r in (refs if refs is not None else shared_refs(repo)) if r.startswith("refs/tags/tools/")]
    spec = "".join(f"{t}^{{commit}}:build/tool.wasm\n" for t in tags)
    if not deflated:
        out = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch-check=%(objectsize)"], input=spec.encode(),
                             capture_output=True, check=True).stdout.decode().split()
        return len(tags), sum(int(x) for x in out)
    data = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch"], input=spec.encode(), capture_output=True,
                          check=True).stdout
    total, at = 0, 0
    for _ in tags:
        header_end = data.index(b"\n", at)
        size = int(data[at:header_end].split()[2])
        total += len(zlib.compress(data[header_end + 1:header_end + 1 + size], 6))
        at = header_end + 1 + size + 1
    return len(tags), total


def fresh_puller(path: Path, wire: Wire, hub: Path, trust: str, lib: Path) -> Path:
    from evogit.runtime import Runtime

    Runtime.init(path, starter=False)[0].close()
    wire.add_remote(path, "hub", hub)
    git(path, "config", "evogit.trust", trust)
    git(path, "config", "gpg.ssh.allowedSignersFile", str(lib / "allowed_signers"))
    return path


def pull(repo: Path, cache: Path = MAKER_CACHE) -> tuple[float, dict[str, Any]]:
    took, out = evogit(repo, "pull", "hub", "--json", cache=cache)
    return took, json.loads(out)


def another_machine(cache: Path) -> Path:
    """The build cache of another machine: the crates compiled (a copy of the maker's warmest target dir), no
    build results and no compiled modules."""
    shutil.rmtree(cache, ignore_errors=True)
    warmest = max((d for d in (MAKER_CACHE / "targets").iterdir() if d.name.isdigit() and d.is_dir()),
                  key=lambda d: sum(1 for _ in d.rglob("*.rlib")))
    shutil.copytree(warmest, cache / "targets" / "0", symlinks=True)
    return cache


def profile(label: str, fn: Any) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(25)
    print(f"\n-- cProfile: {label} (in-process, cumulative) --")
    print("\n".join(text.getvalue().splitlines()[:60]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=1000, help="versions in the library (default 1000)")
    parser.add_argument("--rebuild-versions", type=int, default=100,
                        help="versions pulled under trust rebuild (whole tools of 10; default 100, 0: all)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 versions, 10 rebuilt")
    parser.add_argument("--profile", action="store_true", help="also cProfile the no-op pull and push in-process")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    n = 20 if args.quick else args.versions
    n_rebuild = min(n, 10 if args.quick else (args.rebuild_versions or n))
    os.environ["EVOGIT_CACHE_DIR"] = str(MAKER_CACHE)

    lib = make_library(n)
    work = Path(tempfile.mkdtemp(prefix="evogit-bench-share-"))
    wire = Wire(work)
    maker = work / "maker"
    shutil.copytree(lib / "repo", maker, symlinks=True)
    versions, raw = wasm_bytes(maker)
    assert versions == n, f"the library has {versions} versions, not {n}: delete {lib}"
    tools = len(git(maker, "for-each-ref", "refs/heads/tools/").splitlines())
    pack = sum(p.stat().st_size for p in (maker / ".git" / "objects" / "pack").glob("*.pack"))
    deflated = wasm_bytes(maker, deflated=True)[1]
    rows: list[tuple[str, float, int | None, str]] = []  # (what, seconds, wire bytes, note)

    def row(what: str, seconds: float, nbytes: int | None = None, note: str = "") -> None:
        rows.append((what, seconds, nbytes, note))
        shown = f"{nbytes / 1e6:10.2f} MB" if nbytes is not None else " " * 13
        print(f"  {what:<52} {seconds:8.2f} s {shown}  {note}", flush=True)

    print(f"library: {n} versions of {tools} tools; tool.wasm {raw / 1e6:.1f} MB raw ({raw / n / 1e3:.0f} KB a "
          f"version), {deflated / 1e6:.1f} MB deflated one by one; the packed repository {pack / 1e6:.1f} MB; "
          f"work dir {work}")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")

    start = statistics.median(evogit(None, "--help")[0] for _ in range(3))
    row("evogit --help (a process that does nothing)", start)

    # -- push the whole library --------------------------------------------------------------------------------
    hub, plain, globbed, plain2 = (work / f"{x}.git" for x in ("hub", "plain", "globbed", "plain2"))
    evogit(None, "init", "--bare", "--no-starter", str(hub))
    git(hub, "config", "evogit.trust", HUB_TRUST)
    for bare in (plain, globbed, plain2):
        git(work, "init", "-q", "--bare", str(bare))
    for remote in (hub, plain, globbed, plain2):
        wire.add_remote(maker, remote.stem, remote)
    hub_cache = another_machine(work / "hub-cache")  # the hub's machine: its post-receive builds with this cache
    print(f"\npush of {n} versions (hub: evogit init --bare, trust {HUB_TRUST}, on another machine's build cache)")
    wire.reset()
    took, _ = evogit(maker, "push", "hub", cache=hub_cache)
    pushed = wire.bytes()
    hub_versions = len(git(hub, "for-each-ref", "refs/tags/tools/").splitlines())
    assert hub_versions == n, f"the hub took {hub_versions} of {n} version tags"
    hub_builds = len(list((hub_cache / "builds").rglob("*.wasm")))
    refs = shared_refs(maker)
    explicit = [f"{r}:{r}" for r in refs]  # what evogit pushes: each ref named (so that unsound ones can be left out)
    globs = ["refs/heads/tools/*:refs/heads/tools/*", "refs/tags/tools/*:refs/tags/tools/*",
             "refs/evogit/logs/*:refs/evogit/logs/*"]
    wire.reset()
    base = timed(lambda: git(maker, "push", "-q", "plain", *explicit))
    base_bytes = wire.bytes()
    floor_push = timed(lambda: git(maker, "push", "-q", "globbed", *globs))
    row("git push, same refs named one by one (baseline)", base, base_bytes, f"{base_bytes / raw:.3f} x raw wasm")
    row("git push, same refs as 3 globs", floor_push, None, f"{floor_push / base:.2f} x git push by name")
    row("evogit push", took, pushed, f"{took / base:.1f} x git push; {pushed / raw:.3f} x raw wasm")
    client = evogit(maker, "push", "plain2", cache=hub_cache)[0]
    row("  of it, evogit's side (to a repo without hooks)", client, None,
        f"{client / base:.1f} x git push; so the hub's post-receive took {took - client:.0f} s, "
        f"in which it compiled {hub_builds} tool heads")

    wire.reset()
    base_noop = statistics.median(timed(lambda: git(maker, "push", "-q", "plain", *explicit)) for _ in range(3))
    base_noop_bytes = wire.bytes() // 3
    floor_noop = statistics.median(timed(lambda: git(maker, "push", "-q", "globbed", *globs)) for _ in range(3))
    wire.reset()
    noop = statistics.median(evogit(maker, "push", "hub", cache=hub_cache)[0] for _ in range(3))
    noop_bytes = wire.bytes() // 3
    wire.reset()
    lsremote = statistics.median(timed(lambda: git(maker, "ls-remote", "--refs", "plain", "refs/heads/tools/*",
                                                   "refs/tags/tools/*", "refs/evogit/logs/*")) for _ in range(3))
    lsremote_bytes = wire.bytes() // 3
    row("git push again, nothing new, refs by name (baseline)", base_noop, base_noop_bytes)
    row("git push again, nothing new, 3 globs", floor_noop, None)
    row("git ls-remote of those refs (what evogit asks first)", lsremote, lsremote_bytes)
    row("evogit push again, nothing new (median of 3)", noop, noop_bytes, f"{noop / base_noop:.1f} x git push")

    # -- pull the whole library under each trust policy ------------------------------------------------------
    print(f"\npull of {n} versions into a new repository")
    floor = work / "fetch"
    git(work, "init", "-q", str(floor))
    wire.add_remote(floor, "hub", hub)
    wire.reset()
    fetch = timed(lambda: git(floor, "fetch", "-q", "--no-tags", "hub", *FETCH_SPECS))
    fetch_bytes = wire.bytes()
    row("git fetch, same refs (baseline)", fetch, fetch_bytes, f"{fetch_bytes / raw:.2f} x raw wasm")
    pullers = {}
    for trust in ("hash", "signed"):
        b = pullers[trust] = fresh_puller(work / f"pull-{trust}", wire, hub, trust, lib)
        wire.reset()
        took, report = pull(b)
        got = wire.bytes()
        assert len(report["accepted_tags"]) == n and not report["refused_tags"], report["refused_tags"]
        row(f"evogit pull, trust {trust}", took, got,
            f"{took / fetch:.1f} x git fetch; {(took - fetch) * 1000 / n:.1f} ms/version over it")

    print("\nthe same pull again, nothing new (median of 5, range)")
    base_noop = statistics.median(timed(lambda: git(floor, "fetch", "-q", "--no-tags", "hub", *FETCH_SPECS))
                                  for _ in range(5))
    wire.reset()
    git(floor, "fetch", "-q", "--no-tags", "hub", *FETCH_SPECS)
    advertised = wire.bytes()  # the hub's ref advertisement: every fetch pays it
    row("git fetch again (baseline)", base_noop, advertised)
    for trust, b in pullers.items():
        wire.reset()
        times = sorted(pull(b)[0] for _ in range(5))
        took = statistics.median(times)
        row(f"evogit pull again, trust {trust}", took, wire.bytes() // 5,
            f"{times[0]:.2f}-{times[-1]:.2f} s; {took / base_noop:.1f} x git fetch; goal <= 1 s: "
            f"{'met' if took <= 1 else 'MISSED'}")
    # what a pull's own fetch costs when nothing moved: the quarantine keeps the accepted tags (the hub's tags as
    # last fetched), so the fetch has no ref to write
    b = pullers["hash"]
    quarantine = "refs/evogit/quarantine/remotes/hub/tags/tools/"
    kept = len(git(b, "for-each-ref", quarantine).splitlines())
    specs = [FETCH_SPECS[0], f"+refs/tags/tools/*:{quarantine}*", FETCH_SPECS[2]]
    fetches = [timed(lambda: git(b, "fetch", "-q", "--no-tags", "hub", *specs)) for _ in range(5)]
    row("  git fetch, evogit's refspecs, nothing new", statistics.median(fetches), None,
        f"{kept} tags kept in the quarantine: nothing to write")

    # -- trust rebuild, on a subset --------------------------------------------------------------------------
    sub_tools = sorted(r for r in refs if r.startswith("refs/heads/tools/"))[:-(-n_rebuild // PER_TOOL)]
    names = {r[len("refs/heads/tools/"):] for r in sub_tools}
    sub_refs = sub_tools + [r for r in refs if r.startswith("refs/tags/tools/") and r.split("/")[3] in names]
    n_sub = sum(r.startswith("refs/tags/") for r in sub_refs)
    sub_raw = wasm_bytes(maker, sub_refs)[1]
    subhub = work / "sub.git"
    git(work, "init", "-q", "--bare", str(subhub))
    git(maker, "push", "-q", str(subhub), *(f"{r}:{r}" for r in sub_refs))
    print(f"\ntrust rebuild: {n_sub} versions of {len(names)} tools (a hub holding only those)")
    sub: dict[str, float] = {}
    for label, trust, cache in (("hash", "hash", MAKER_CACHE),
                                ("rebuild, another machine", "rebuild", another_machine(work / "rebuild-cache")),
                                ("rebuild, this machine's build cache", "rebuild", MAKER_CACHE)):
        b = fresh_puller(work / f"sub-{label.split(',')[0]}-{len(sub)}", wire, subhub, trust, lib)
        took, report = pull(b, cache)
        assert len(report["accepted_tags"]) == n_sub and not report["refused_tags"], report["refused_tags"]
        sub[label] = took
        extra = f"; {(took - sub['hash']) * 1000 / n_sub:.0f} ms/version over hash" if label != "hash" else ""
        row(f"evogit pull, trust {label}", took, None,
            f"{took * 1000 / n_sub:.0f} ms/version{extra} ({sub_raw / 1e6:.1f} MB wasm)")
    if n_sub < n:
        est = sub["rebuild, another machine"] / n_sub * n
        print(f"  (trust rebuild for all {n} versions at that rate: ~{est / 60:.0f} min; not run)")

    # -- one new version ------------------------------------------------------------------------------------
    print("\none new version of one tool")
    from evogit.runtime import Runtime

    name, files, message = package(0, PER_TOOL)
    with Runtime(maker) as rt:
        outcome = rt.commit(name, files, message)
    assert outcome.ok, outcome.error
    assert outcome.version is not None
    new_raw = int(git(maker, "cat-file", "-s", f"{outcome.version.build_commit}:build/tool.wasm"))
    refs = shared_refs(maker)
    wire.reset()
    base = timed(lambda: git(maker, "push", "-q", "plain", *(f"{r}:{r}" for r in refs)))
    base_bytes = wire.bytes()
    wire.reset()
    took, _ = evogit(maker, "push", "hub", cache=hub_cache)
    got = wire.bytes()
    built = len(list((hub_cache / "builds").rglob("*.wasm"))) - hub_builds
    row("git push (baseline)", base, base_bytes, f"{base_bytes / new_raw:.2f} x its wasm ({new_raw / 1e3:.0f} KB)")
    row("evogit push", took, got, f"{took / base:.1f} x git push; {got / new_raw:.2f} x its wasm; the hub "
                                  f"compiled {built} head")
    wire.reset()
    base = timed(lambda: git(floor, "fetch", "-q", "--no-tags", "hub", *FETCH_SPECS))
    base_bytes = wire.bytes()
    row("git fetch (baseline)", base, base_bytes, f"{(base_bytes - advertised) / new_raw:.2f} x its wasm beyond the "
                                                  f"ref advertisement ({advertised / 1e6:.2f} MB)")
    for trust, b in pullers.items():
        wire.reset()
        took, report = pull(b)
        assert len(report["accepted_tags"]) == 1, report
        got = wire.bytes()
        row(f"evogit pull, trust {trust}", took, got,
            f"{took / base:.1f} x git fetch; {(got - advertised) / new_raw:.2f} x its wasm beyond the advertisement")

    if args.profile:
        fresh = fresh_puller(work / "profiled", wire, hub, "hash", lib)
        profile(f"pull of {n + 1} versions, trust hash", lambda: Runtime(fresh).pull("hub"))
        profile("no-op pull, trust hash", lambda: Runtime(pullers["hash"]).pull("hub"))
        profile("no-op push", lambda: Runtime(maker).push("hub"))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--compile-worker":
        compile_worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        main()
