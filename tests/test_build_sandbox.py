"""The build sandbox, attacked: host files and environment never reach a binary, record, event or message.

Every spelling in tests/hostile_build/ tries to read a planted canary at build time (a file outside the
package, a Rust file, a crate, and secrets in the building process's environment). Each runs twice: with the
package rules switched off, so the sandbox alone is what stops it, and with them on. Then the limits (a
compile bomb under a low time and memory limit), the slots (a hung build does not block another), the
process tree (SIGKILL of a build leaves nothing running) and the refusal where bubblewrap cannot run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pygit2
import pytest

from evogit.build import Builder, build_limits, starter_trees, tree_id
from evogit.errors import BuildFailed, InvalidInput
from evogit.resources import resource
from evogit.runtime import BuildOutcome, Runtime
from evogit.toolchain import PROFILE_ENV, Compiler, Toolchain, cache_root, sandbox_problem

from .conftest import tool_files

HOSTILE = Path(__file__).parent / "hostile_build"
SPELLINGS = sorted(p.stem for p in HOSTILE.iterdir() if p.suffix == ".rs" or p.is_dir())
#: Spellings that compile in the sandbox: what they read must be the sandbox's own, never the host's.
READS_THE_SANDBOX = {"proc_self_environ": b"CARGO_HOME=/cargo", "proc_1_environ": b"CARGO_HOME=/cargo",
                     "build_script": b"CARGO_TARGET_DIR=/target"}
#: Spellings with no control below: they read no planted file even without the sandbox (the environment,
#: which evogit clears for every build; /proc; /etc/hostname; `+verbatim`, unstable on 1.63), or read it
#: without keeping it (a doc attribute: its text is not compiled in, though whether the build fails says
#: whether the file exists).
NO_CONTROL = {"env_parens", "env_brackets", "option_env_concat", "option_env_via_macro", "proc_self_environ",
              "proc_1_environ", "path_attribute_proc_environ", "link_verbatim", "etc_hostname", "doc_attribute"}
BUILD_PROCESSES = {"bwrap", "cargo", "rustc", "setpriv", "prlimit", "cc", "rust-lld"}
HOOK = "std::io::stdin().read_to_string(&mut raw).unwrap();"


@dataclass
class Canary:
    secret: str  # in a file outside the package, a Rust file and a crate
    env: dict[str, str]  # in the building process's environment
    file: Path
    rsfile: Path
    crate: Path

    @property
    def needles(self) -> list[bytes]:
        return [self.secret.encode(), *(v.encode() for v in self.env.values())]


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    host = tmp_path_factory.mktemp("host")
    secret = f"canary-{secrets.token_hex(12)}"
    file = host / f"secret-{secrets.token_hex(6)}.txt"
    file.write_text(secret + "\n")
    leak_fn = f'pub fn leak() -> String {{ "{secret}".to_string() }}\n'
    rsfile = host / f"secret-{secrets.token_hex(6)}.rs"
    rsfile.write_text(leak_fn)
    crate = host / "canary-crate"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text('[package]\nname = "canary_crate"\nversion = "0.1.0"\nedition = "2021"\n')
    (crate / "src" / "lib.rs").write_text(leak_fn)
    env = {"OPENAI_API_KEY": f"sk-{secrets.token_hex(12)}", "EVOGIT_CANARY": secrets.token_hex(12)}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield Canary(secret, env, file, rsfile, crate)


def _fill(text: str, c: Canary) -> str:
    path = str(c.file)
    half = len(path) // 2
    for key, value in {"@FILE@": path, "@RSFILE@": str(c.rsfile), "@CRATE@": str(c.crate),
                       "@FILE_X2F@": path.replace("/", "\\x2f"), "@FILE_U2F@": path.replace("/", "\\u{2f}"),
                       "@FILE_HEAD@": path[:half], "@FILE_TAIL@": path[half:],
                       "@UP@": "../" * 24 + path.lstrip("/")}.items():
        text = text.replace(key, value)
    return text


def _package(spelling: str, c: Canary) -> dict[str, bytes]:
    """The echo tool with the spelling's `leak()` in front, printed when the input starts with a NUL."""
    where = HOSTILE / spelling
    extra: dict[str, bytes] = {}
    deps = ""
    if where.is_dir():
        leak = (where / "leak.rs").read_text()
        for p in sorted(where.rglob("*")):
            rel = str(p.relative_to(where))
            if rel == "Cargo.deps":
                deps = _fill(p.read_text(), c)
            elif p.is_file() and rel != "leak.rs":
                extra[rel] = _fill(p.read_text(), c).encode()
    else:
        leak = (HOSTILE / f"{spelling}.rs").read_text()
    return tool_files("leak", main_rs=_with_leak(_fill(leak, c)), cargo_extra=deps, extra=extra)


def _with_leak(leak: str) -> str:
    main = tool_files()["src/main.rs"].decode()
    assert HOOK in main
    return leak + "\n" + main.replace(HOOK, HOOK + '\n    if raw.starts_with("\\u{0}") { println!("{}", leak()); return; }')


def _runtime(tmp_path: Path, *, package_rules: bool = True) -> Runtime:
    rt, _ = Runtime.init(tmp_path / "skills", starter=False)
    if not package_rules:  # the composition root takes the collaborator: every concern then builds with it
        rt = Runtime(rt.repo.path, builder=lambda repo: Builder(repo, package_rules=False))
    return rt


def _leaks(rt: Runtime, outcome: BuildOutcome, c: Canary) -> list[str]:
    """Where any canary shows up: the error, the record, every file of .git/evogit (build records, events,
    module cache), every git object (binaries, build.json) and the build-result cache."""
    places = {"error": (outcome.error or "").encode(),
              "record": msgspec.json.encode(outcome.record) if outcome.record else b""}
    for root in (rt.repo.state_dir, cache_root() / "builds"):
        for p in root.rglob("*"):
            if p.is_file():
                places[str(p)] = p.read_bytes()
    places["git objects"] = subprocess.run(["git", "-C", str(rt.repo.path), "cat-file", "--batch-all-objects",
                                            "--batch"], capture_output=True, check=True).stdout
    return [f"{where} holds {needle!r}" for where, data in places.items() for needle in c.needles if needle in data]


def _wasm(rt: Runtime, outcome: BuildOutcome) -> bytes:
    assert outcome.version is not None
    return rt.repo.read(rt.repo.commit(outcome.version.build_commit), "build/tool.wasm")


def test_the_suite_has_at_least_twenty_spellings():
    assert len(SPELLINGS) >= 20, SPELLINGS


def _compile_unsandboxed(files: dict[str, bytes], where: Path) -> bytes | str:
    for path, data in files.items():
        (where / path).parent.mkdir(parents=True, exist_ok=True)
        (where / path).write_bytes(data)
    try:
        return Compiler().compile(where, sandboxed=False).wasm
    except BuildFailed as e:
        return str(e)


@pytest.mark.slow
@pytest.mark.parametrize("spelling", sorted(set(SPELLINGS) - NO_CONTROL))
def test_without_the_sandbox_the_spelling_does_reach_the_host(spelling, canary, tmp_path):
    """The control: each attack is real. Compiled without the sandbox (directly, nothing is kept), the
    planted secret lands in the binary."""
    wasm = _compile_unsandboxed(_package(spelling, canary), tmp_path)
    assert isinstance(wasm, bytes) and canary.secret.encode() in wasm, wasm


@pytest.mark.slow
@pytest.mark.parametrize("spelling", ["env_parens", "env_brackets", "option_env_concat"])
def test_even_without_the_sandbox_a_build_gets_no_host_environment(spelling, canary, tmp_path):
    result = _compile_unsandboxed(_package(spelling, canary), tmp_path)
    assert all(needle not in (result if isinstance(result, bytes) else result.encode()) for needle in canary.needles)


@pytest.mark.slow
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_host_data_never_reaches_a_sandboxed_build_without_package_rules(spelling, canary, tmp_path):
    rt = _runtime(tmp_path, package_rules=False)
    outcome = rt.commit("leak", _package(spelling, canary), f"Try {spelling}")
    assert not _leaks(rt, outcome, canary)
    if spelling in READS_THE_SANDBOX:
        assert outcome.ok, outcome.error  # it read something: the sandbox's own, nothing of the host
        assert READS_THE_SANDBOX[spelling] in _wasm(rt, outcome)
    elif outcome.ok:
        wasm = _wasm(rt, outcome)
        assert all(needle not in wasm for needle in canary.needles)
    else:  # it failed for want of what the sandbox hides
        assert outcome.record is not None and outcome.record.stage == "compile", outcome.error
        assert any(why in (outcome.error or "") for why in (
            "No such file or directory", "not defined", "failed to load source", "unstable",
            "unknown start of token")), outcome.error
    if spelling == "etc_hostname":
        assert "No such file or directory" in (outcome.error or "")


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_package_rules_refuse_every_spelling(spelling, canary, tmp_path):
    rt = _runtime(tmp_path)
    outcome = rt.commit("leak", _package(spelling, canary), f"Try {spelling}")
    assert not outcome.ok and outcome.record is not None and outcome.record.stage == "package", outcome.error
    assert not _leaks(rt, outcome, canary)


def _commit_with_symlink(rt: Runtime, files: dict[str, bytes], link: str, target: str) -> None:
    git = rt.repo.git
    index = pygit2.Index()
    for path, data in sorted(files.items()):
        index.add(pygit2.IndexEntry(path, git.create_blob(data), pygit2.enums.FileMode.BLOB))
    index.add(pygit2.IndexEntry(link, git.create_blob(target.encode()), pygit2.enums.FileMode.LINK))
    sig = rt.repo.signature()
    git.create_commit("refs/heads/tools/leak", sig, sig, "A symlink to a host file", index.write_tree(git),
                      [git.references["refs/heads/main"].target])


@pytest.mark.slow
@pytest.mark.parametrize("package_rules", [True, False], ids=["rules-on", "rules-off"])
def test_symlink_in_tree_to_a_host_file_reaches_nothing(package_rules, canary, tmp_path):
    rt = _runtime(tmp_path, package_rules=package_rules)
    files = tool_files("leak", main_rs=_with_leak('fn leak() -> String { include_str!("leak.txt").to_string() }'))
    _commit_with_symlink(rt, files, "src/leak.txt", str(canary.file))
    outcome = rt.build(["leak"])[0]
    assert not outcome.ok and outcome.record is not None
    if package_rules:
        assert outcome.record.stage == "package" and "symbolic links are not allowed" in (outcome.error or "")
    else:  # the link is never written out: the compiler finds no file
        assert outcome.record.stage == "compile" and "No such file" in (outcome.error or "")
    assert not _leaks(rt, outcome, canary)


def _bomb(doublings: int) -> str:
    """A macro that doubles itself: 2**doublings calls after expansion."""
    lines = ["fn tick() {}", "macro_rules! d0 { () => { tick(); } }"]
    lines += [f"macro_rules! d{i} {{ () => {{ d{i - 1}!(); d{i - 1}!(); }} }}" for i in range(1, doublings + 1)]
    return "\n".join([*lines, f"fn main() {{ d{doublings}!(); }}"])


def _descendants(pid: int) -> dict[int, tuple[str, str]]:
    """Every live descendant of `pid`: pid -> (name, start time), read from /proc."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        info[int(entry)] = (name, fields[19])
    found, todo = {}, list(children.get(pid, []))
    while todo:
        p = todo.pop()
        found[p] = info[p]
        todo += children.get(p, [])
    return found


def _alive(procs: dict[int, tuple[str, str]]) -> list[str]:
    still = []
    for pid, (name, start) in procs.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[19] == start and fields[0] != "Z":
            still.append(f"{pid} {name}")
    return still


@pytest.mark.slow
@pytest.mark.parametrize("key, value, says", [
    ("evogit.buildTimeout", "8", "longer than its time limit of 8 s (git config evogit.buildTimeout"),
    ("evogit.buildMemory", "600", "out of its memory limit of 600 MiB per process (git config evogit.buildMemory"),
], ids=["time", "memory"])
def test_compile_bomb_ends_at_its_limit_and_the_next_build_works(key, value, says, tmp_path):
    rt = _runtime(tmp_path)
    rt.repo.git.config[key] = value
    started = time.monotonic()
    outcome = rt.commit("bomb", tool_files("bomb", main_rs=_bomb(26)), "A compile bomb")
    took = time.monotonic() - started
    assert not outcome.ok and outcome.record is not None and outcome.record.stage == "compile"
    assert says in (outcome.record.message or ""), outcome.error
    assert "\n" not in (outcome.record.message or "")
    assert took < 120  # liveness, not speed: without the limit this bomb runs for many minutes
    assert not [p for p in _alive(_descendants(os.getpid())) if p.split()[1] in BUILD_PROCESSES]
    assert rt.commit("echo-tool", tool_files(), "Echo").ok


def _start_bomb_build(rt: Runtime) -> subprocess.Popen:
    """`evogit build bomb` in a child process, returned once its rustc runs in the sandbox."""
    rt.repo.git.config["evogit.buildTimeout"] = "120"  # ends it even if a failing test left it behind
    rt.commit("bomb", tool_files("bomb", main_rs=_bomb(26)), "A compile bomb", build=False)
    child = subprocess.Popen([sys.executable, "-m", "evogit", "build", "bomb", "--repo", str(rt.repo.path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    deadline = time.monotonic() + 120
    while not {"bwrap", "cargo", "rustc"} <= {name for name, _ in _descendants(child.pid).values()}:
        assert child.poll() is None and time.monotonic() < deadline, "the bomb's rustc never started"
        time.sleep(0.1)
    return child


@pytest.mark.slow
def test_a_hung_build_does_not_block_other_builds(tmp_path):
    bomb_rt = _runtime(tmp_path / "a")
    child = _start_bomb_build(bomb_rt)
    try:
        rt = _runtime(tmp_path / "b")
        files = tool_files()
        files["src/main.rs"] += f"// {secrets.token_hex(8)}: a new tree, so it really compiles\n".encode()
        outcome = rt.commit("echo-tool", files, "Echo while a bomb builds")
        assert outcome.ok, outcome.error
        assert child.poll() is None and any(n == "rustc" for n, _ in _descendants(child.pid).values())
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
def test_sigkill_of_a_build_leaves_no_cargo_running_and_a_retry_builds(tmp_path):
    rt = _runtime(tmp_path)
    child = _start_bomb_build(rt)
    try:
        procs = _descendants(child.pid)
        assert {"bwrap", "cargo", "rustc"} <= {name for name, _ in procs.values()}, procs
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 30
    while _alive(procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(procs)
    outcome = rt.commit("bomb", tool_files("bomb"), "Defuse the bomb")
    assert outcome.ok, outcome.error


@pytest.fixture
def no_bwrap(monkeypatch):
    monkeypatch.setenv("EVOGIT_BWRAP", "/nonexistent/bwrap")
    monkeypatch.delenv("EVOGIT_UNSANDBOXED_BUILDS", raising=False)
    assert sandbox_problem() is not None


@pytest.mark.slow
def test_without_bubblewrap_code_evogit_did_not_write_is_not_built(no_bwrap, tmp_path):
    rt = _runtime(tmp_path)
    files = tool_files()
    files["src/main.rs"] += f"// {secrets.token_hex(8)}\n".encode()
    outcome = rt.commit("echo-tool", files, "Echo")
    assert not outcome.ok and outcome.record is not None and outcome.record.stage == "compile"
    message = outcome.record.message or ""
    assert "bubblewrap cannot run here" in message and "evogit.unsandboxedBuilds" in message
    assert "\n" not in message
    tree = str(rt.repo.head("echo-tool").tree_id)
    # Opting out builds it, unsandboxed, and keeps the result apart from sandboxed results.
    rt.repo.git.config["evogit.unsandboxedBuilds"] = "true"
    assert rt.build(["echo-tool"])[0].ok
    assert rt.builder.cache_paths(tree, sandboxed=False)[1].exists()
    assert not rt.builder.cache_paths(tree, sandboxed=True)[1].exists()


@pytest.mark.slow
def test_without_bubblewrap_the_shipped_starter_still_builds(no_bwrap, tmp_path):
    src = tmp_path / "starter"
    src.mkdir()
    shutil.copytree(resource("skills-repo") / "word-count", src / "word-count")
    rt, outcomes = Runtime.init(tmp_path / "skills", starter=src)
    assert [o.ok for o in outcomes] == [True], [o.error for o in outcomes]
    head = rt.repo.head("word-count")
    assert str(head.tree_id) in starter_trees()
    assert rt.builder.build(head, "word-count", force=True).fingerprint == outcomes[0].version.fingerprint


def test_opting_out_by_environment_is_explicit(no_bwrap, tmp_path, monkeypatch):
    rt = _runtime(tmp_path)
    assert not rt.builder._opted_out()
    monkeypatch.setenv("EVOGIT_UNSANDBOXED_BUILDS", "1")
    assert rt.builder._opted_out()


def test_tree_ids_of_the_starter_match_the_trees_git_writes(tmp_path):
    repo = pygit2.init_repository(str(tmp_path / "r"))
    root = resource("skills-repo")
    for d in sorted(root.iterdir())[:3]:
        files = {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*") if p.is_file()}
        index = pygit2.Index()
        for path, data in sorted(files.items()):
            index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
        assert tree_id(files) == str(index.write_tree(repo))
    assert len(starter_trees()) == 24


@pytest.mark.parametrize("key, value", [("evogit.buildTimeout", "-1"), ("evogit.buildTimeout", "nan"),
                                        ("evogit.buildTimeout", "inf"), ("evogit.buildMemory", "0"),
                                        ("evogit.buildMemory", "lots"), ("evogit.buildMaxOutput", "-5")])
def test_bad_build_limits_in_git_config_are_a_clear_error(key, value, tmp_path):
    rt = _runtime(tmp_path)
    rt.repo.git.config[key] = value
    with pytest.raises(InvalidInput, match=f"bad {key} in git config"):
        build_limits(rt.repo.git.config)


def test_build_limits_come_from_git_config(tmp_path):
    rt = _runtime(tmp_path)
    config = rt.repo.git.config
    config["evogit.buildTimeout"], config["evogit.buildMemory"], config["evogit.buildMaxOutput"] = "30", "512", "1000"
    limits = build_limits(config)
    assert (limits.timeout, limits.memory, limits.max_output) == (30.0, 512 << 20, 1000)


@pytest.mark.slow
def test_build_output_past_its_limit_is_a_compile_failure(tmp_path):
    rt = _runtime(tmp_path)
    rt.repo.git.config["evogit.buildMaxOutput"] = "2000"
    noisy = "\n".join(f"fn unused_{i}() {{}}" for i in range(200)) + "\nfn main() {}\n"
    outcome = rt.commit("noisy", tool_files("noisy", main_rs=noisy), "Warnings galore")
    assert not outcome.ok and outcome.record is not None and outcome.record.stage == "compile"
    assert "output limit of 2000 bytes (git config evogit.buildMaxOutput" in (outcome.record.message or "")
    assert json.loads(json.dumps(msgspec.to_builtins(outcome.record)))  # the record stays plain JSON


def test_a_toolchain_outside_usr_is_bound_read_only_and_nothing_else_of_the_host(tmp_path):
    tc = Toolchain("/opt/rust/bin/cargo", "/opt/rust/bin/rustc", "wasm32-wasip1", "rustc 9", "cargo 9", "/opt/rust")
    argv, env = Compiler(tc, tmp_path).command(tmp_path / "pkg", tmp_path / "slot")
    binds = [tuple(argv[i:i + 3]) for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")]
    assert binds == [("--ro-bind", "/usr", "/usr"), ("--ro-bind", "/etc/alternatives", "/etc/alternatives"),
                     ("--ro-bind", "/opt/rust", "/opt/rust"), ("--bind", str(tmp_path / "pkg"), "/pkg"),
                     ("--ro-bind", str(tmp_path / "cargo-home"), "/cargo"), ("--bind", str(tmp_path / "slot"), "/target")]
    assert {"--unshare-all", "--clearenv", "--die-with-parent", "--as-pid-1"} <= set(argv)
    inside = {argv[i + 1] for i, a in enumerate(argv) if a == "--setenv"}
    assert inside == {"PATH", "RUSTC", "CARGO_TERM_COLOR", "CARGO_HOME", "CARGO_TARGET_DIR", *PROFILE_ENV}
    assert argv[argv.index("--") + 1] == "/opt/rust/bin/cargo"
    assert set(env) == {"PATH", "LANG"}  # bubblewrap itself gets none of the host's environment either


@pytest.mark.slow
def test_a_compile_error_quoting_out_of_memory_is_not_called_the_memory_limit(tmp_path):
    rt = _runtime(tmp_path)
    source = 'fn main() { let x: u32 = "out of memory: Cannot allocate memory"; }'
    outcome = rt.commit("echo-tool", tool_files(main_rs=source), "A type error")
    assert outcome.record is not None and "compilation failed" in (outcome.record.message or "")
    assert "memory limit" not in (outcome.record.message or "")
