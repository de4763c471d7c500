"""The build pipeline: check the package, compile to WASI, run unit tests and cases in the sandbox, then
write the build commit and tag. A failed build tags nothing and keeps a record of why.

Green results are cached by (toolchain, source tree): an identical tree is never compiled twice on this machine.

A green build's .wasm carries the package's interface (artifact.py), so its fingerprint covers it.

Compiling runs in the build sandbox (toolchain.py). Where bubblewrap cannot run, only the starter library
evogit ships is built without it (recognised by its tree ids), unless the user opts out for everything with
`git config evogit.unsandboxedBuilds true` or `EVOGIT_UNSANDBOXED_BUILDS=1`; results built unsandboxed are
cached apart, so they are never served to a sandboxed build.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pygit2

from .artifact import ARTIFACT_FORMAT, with_interface
from .atomic import write_atomic
from .contract import Contract, RunOutcome, interpret
from .errors import (
    BuildFailed,
    CompileFailed,
    InvalidInput,
    InvalidJSON,
    InvalidPackage,
    SandboxError,
    SandboxUnavailable,
)
from .jsonio import decode, encode
from .log import warn
from .manifest import Case, ToolManifest, check_package
from .repo import SkillsRepo, Version
from .resources import resource
from .sandbox import Limits, Sandbox, fingerprint
from .toolchain import DEFAULT_BUILD_LIMITS, BuildLimits, Compiler, Diagnostic, sandbox_problem
from .userstate import cache_root

UNIT_TEST_LIMITS = Limits(timeout=60.0, fuel=500_000_000_000, memory=1 << 30)
_RESULT_RE = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed")


class CaseVerdict(msgspec.Struct, omit_defaults=True):
    name: str
    ok: bool
    expected: Any = None
    actual: Any = None
    expected_exit: int | None = None
    actual_exit: int | None = None
    error: str | None = None
    input: Any = None  # of a failing case, with the tail of what the tool wrote on stderr
    stderr: str | None = None


class BuildRecord(msgspec.Struct, omit_defaults=True):
    """Why a source commit is green or not. The green record becomes build/build.json (no times, no hosts)."""

    tool: str
    ok: bool
    toolchain: dict[str, str] = {}
    fingerprint: str | None = None
    wasm_bytes: int | None = None
    stage: str | None = None  # where a failed build stopped: package, compile, unit_tests, cases
    message: str | None = None
    unit_tests: dict[str, int] = {}
    cases: list[CaseVerdict] = []
    diagnostics: list[Diagnostic] = []  # a red compile: rustc's structured messages (toolchain.diagnostics)
    first_failure: CaseVerdict | None = None  # red cases: the first failing one, whole

    def summary(self) -> str:
        if self.ok:
            return (f"{self.tool}@{(self.fingerprint or '')[:7]}: {self.unit_tests.get('passed', 0)} unit tests, "
                    f"{len(self.cases)} cases passed")
        return f"{self.tool}: build failed at {self.stage}: {self.message}"


def json_equal(a: Any, b: Any) -> bool:
    """Exact JSON equality: like ==, but true/false are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


class Builder:
    """Builds source commits of one repository.

    `limits` are the compile limits (default: from the repository's git config at each build);
    `package_rules=False` skips the build-time safety rules of the package check (the tests do, to show that
    the sandbox alone keeps the host out); the manifest and cases are checked either way.
    """

    def __init__(self, repo: SkillsRepo, compiler: Compiler | None = None, sandbox: Sandbox | None = None, *,
                 limits: BuildLimits | None = None, package_rules: bool = True):
        self.repo = repo
        self._compiler = compiler
        # compiled modules are this user's (MAC'd with the per-user key) and named by the wasm's sha256: every
        # repository on the machine shares them, so a version compiled once is never compiled again
        self.sandbox = sandbox or Sandbox(cache_root() / "modules")
        self.limits = limits
        self.package_rules = package_rules

    @property
    def compiler(self) -> Compiler:
        if self._compiler is None:
            self._compiler = Compiler()
        return self._compiler

    def _named(self, commit: pygit2.Commit) -> str | None:
        """The name the commit's tool.json gives, if it reads as one (only to look for a version of it)."""
        try:
            return _name_of({"tool.json": self.repo.git[commit.tree["tool.json"].id].peel(pygit2.Blob).data})
        except (KeyError, ValueError, pygit2.GitError):
            return None

    def existing(self, commit: pygit2.Commit, name: str) -> Version | None:
        for v in self.repo.versions(name):
            if v.source_commit == str(commit.id) and self.repo.intact(v):
                return v
        return None

    def build(self, commit: pygit2.Commit, branch: str | None = None, *, force: bool = False,
              again: bool = False) -> Version:
        """Build one source commit and tag it. No-op if it is already tagged. Raises BuildFailed.

        `again` builds even if tagged (the identical-tree cache still serves) and returns the build commit
        written here, to verify a version by rebuilding it."""
        if not force and not again:
            # an intact version of this very commit is its build: nothing to check or compile (looked up before the
            # package checks, ~30 ms a head: a pull that brought 100 heads with their versions spent 3.2 s on them)
            named = branch or self._named(commit)
            if named and (done := self.existing(commit, named)) is not None:
                return done
        name = branch or "?"
        try:
            files, links = self.repo.files(commit.tree)  # checks every entry name before anything is written
            name = branch or _name_of(files) or "?"
            manifest, cases = check_package(files, links, build_rules=self.package_rules)
        except InvalidPackage as e:
            raise self._fail(commit, BuildRecord(name, False, stage="package", message=str(e))) from None
        if branch is not None and manifest.name != branch:
            msg = f"tool.json names {manifest.name!r} but the commit is on tools/{branch}"
            raise self._fail(commit, BuildRecord(name, False, stage="package", message=msg))
        name = manifest.name
        try:
            record, maybe_wasm = self._compile_cached(str(commit.tree_id), files, manifest, cases, force=force)
        except SandboxUnavailable as e:
            assert isinstance(e.record, BuildRecord)
            raise self._fail(commit, e.record, SandboxUnavailable) from None
        if not record.ok or maybe_wasm is None:
            raise self._fail(commit, record)  # failures are not cached: they may be transient (timeouts)
        return self._green(commit, record, maybe_wasm, again)

    def try_files(self, files: dict[str, bytes]) -> tuple[BuildRecord, bytes | None]:
        """Build and test a package that is not committed (a model's attempt) with the same checks, sandbox and
        cases as a commit's build. A green result is cached by its tree, so committing it afterwards compiles
        nothing; a red one is only returned (nothing is written to the repository but loose blobs)."""
        name = _name_of(files) or "?"
        try:
            tree = str(self.repo.write_tree(files))  # checks every path before anything is written
            manifest, cases = check_package(files, set(), build_rules=self.package_rules)
        except InvalidPackage as e:
            return BuildRecord(name, False, stage="package", message=str(e)), None
        try:
            return self._compile_cached(tree, files, manifest, cases)
        except SandboxUnavailable as e:
            assert isinstance(e.record, BuildRecord)
            return e.record, None

    def _compile_cached(self, tree: str, files: dict[str, bytes], manifest: ToolManifest, cases: list[Case], *,
                        force: bool = False) -> tuple[BuildRecord, bytes | None]:
        """The cached green result of an identical tree, else compile and test it in the build sandbox (without
        it only for the starter library or after an explicit opt-out) and cache a green result. Raises
        SandboxUnavailable (with its record) where neither is the case."""
        problem = sandbox_problem()
        unsandboxed = problem is not None and (tree in starter_trees() or self._opted_out())
        if not force:
            for sandboxed in (True, False) if unsandboxed else (True,):
                if (hit := self._cached(tree, sandboxed)) is not None:
                    return hit
        if problem is not None and not unsandboxed:
            msg = (f"refusing to build code evogit did not write without a sandbox: bubblewrap cannot run here "
                   f"({problem}); to build anyway, git config evogit.unsandboxedBuilds true "
                   "(or EVOGIT_UNSANDBOXED_BUILDS=1)")
            raise SandboxUnavailable(msg, BuildRecord(manifest.name, False, stage="compile", message=msg))
        record, wasm = self._compile_and_test(files, manifest, cases, sandboxed=problem is None)
        if record.ok and wasm is not None:
            self._cache(tree, record, wasm, sandboxed=problem is None)
        return record, wasm

    def cache_paths(self, tree: str, sandboxed: bool) -> tuple[Path, Path]:
        key = f"{self.compiler.toolchain.key}-{ARTIFACT_FORMAT}"
        cache = self.compiler.cache / "builds" / (key if sandboxed else f"{key}-unsandboxed")
        return cache / f"{tree}.json", cache / f"{tree}.wasm"

    def _cached(self, tree: str, sandboxed: bool = True) -> tuple[BuildRecord, bytes] | None:
        """The green build of an identical source tree on this machine, if one is cached and intact (results
        built without the sandbox are kept apart, never served to a sandboxed build)."""
        cached_record, cached_wasm = self.cache_paths(tree, sandboxed)
        if not (cached_record.exists() and cached_wasm.exists()):
            return None
        record = _read_record(cached_record)
        wasm = cached_wasm.read_bytes()
        if record is not None and record.ok and fingerprint(wasm) == record.fingerprint:
            return record, wasm
        if record is not None:  # a cached wasm that is not the one its record names: damaged
            warn(f"{cached_wasm} does not match its build record: treated as missing (rebuilt)")
        cached_wasm.unlink(missing_ok=True)
        return None

    def _cache(self, tree: str, record: BuildRecord, wasm: bytes, *, sandboxed: bool = True) -> None:
        cached_record, cached_wasm = self.cache_paths(tree, sandboxed)
        write_atomic(cached_wasm, wasm)
        write_atomic(cached_record, msgspec.json.encode(record))

    def _opted_out(self) -> bool:
        """The user allowed builds without the sandbox (env EVOGIT_UNSANDBOXED_BUILDS, git config)."""
        if os.environ.get("EVOGIT_UNSANDBOXED_BUILDS", "").lower() in ("1", "true", "yes", "on"):
            return True
        try:
            return "evogit.unsandboxedbuilds" in self.repo.git.config and \
                self.repo.git.config.get_bool("evogit.unsandboxedbuilds")
        except (ValueError, pygit2.GitError) as e:
            raise InvalidInput(f"bad evogit.unsandboxedBuilds in git config: {e}") from None

    def _compile_and_test(self, files: dict[str, bytes], manifest: ToolManifest, cases: list[Case], *,
                          sandboxed: bool) -> tuple[BuildRecord, bytes | None]:
        limits = self.limits or build_limits(self.repo.git.config)
        record = BuildRecord(manifest.name, False, toolchain=self.compiler.toolchain.describe())
        self.compiler.cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="pkg-", dir=self.compiler.cache))
        try:
            for path, data in files.items():
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).write_bytes(data)
            try:
                artifacts = self.compiler.compile(work, limits, sandboxed=sandboxed)
            except BuildFailed as e:
                record.stage, record.message = "compile", str(e)
                if isinstance(e, CompileFailed):
                    record.diagnostics = [d for d in e.diagnostics if isinstance(d, Diagnostic)]
                return record, None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        wasm = with_interface(artifacts.wasm, files)
        record.fingerprint, record.wasm_bytes = fingerprint(wasm), len(wasm)
        passed = failed = 0
        for test_wasm in artifacts.test_wasms:
            p, f, problem = self._unit_tests(test_wasm)
            passed, failed = passed + p, failed + f
            if problem:
                record.unit_tests = {"passed": passed, "failed": max(failed, 1)}
                record.stage, record.message = "unit_tests", problem
                # the cases too, for the evidence: a failing case says in JSON what a panic says in Debug form
                record.cases = self.run_cases(wasm, manifest, cases)
                record.first_failure = next((v for v in record.cases if not v.ok), None)
                return record, None
        record.unit_tests = {"passed": passed, "failed": failed}
        verdicts = self.run_cases(wasm, manifest, cases)
        record.cases = verdicts
        bad = [v for v in verdicts if not v.ok]
        if bad:
            first = record.first_failure = bad[0]
            record.stage = "cases"
            record.message = f"{len(bad)} of {len(verdicts)} cases failed; first: {first.name}: " + (
                first.error or f"expected {_short(first.expected)} (exit {first.expected_exit}), "
                f"got {_short(first.actual)} (exit {first.actual_exit})"
            )
            return record, None
        record.ok = True
        return record, wasm

    def _unit_tests(self, test_wasm: bytes) -> tuple[int, int, str | None]:
        """Run one libtest harness in the sandbox. Returns (passed, failed, problem or None)."""
        try:
            loaded = self.sandbox.load(test_wasm, cache=False)
        except SandboxError as e:
            return 0, 1, f"unit test harness: {e}"
        # --nocapture: with panic=abort a failing test kills the harness before it prints captured output.
        result = self.sandbox.run(loaded, b"", UNIT_TEST_LIMITS, argv=("tests", "--nocapture", "--test-threads=1"))
        out = result.stdout.decode("utf-8", "replace")
        m = _RESULT_RE.search(out)
        passed, failed = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        if result.ok and failed == 0:
            return passed, failed, None
        running = [ln for ln in out.splitlines() if ln.startswith("test ") and not ln.rstrip().endswith("ok")]
        where = f" in {running[-1].split()[1]}" if running else ""
        detail = result.detail or f"{failed} failed"
        return passed, failed, f"unit test failed{where}: {detail}"

    def run_cases(self, wasm: bytes, manifest: ToolManifest, cases: list[Case]) -> list[CaseVerdict]:
        """Run every case through the sandbox under the tool contract and compare exactly."""
        loaded = self.sandbox.load(wasm)
        contract = Contract(manifest)
        verdicts = []
        for case in cases:
            verdict = CaseVerdict(case.name, False, case.expect, None, case.exit)
            verdicts.append(verdict)
            if case.exit == 0 and (problem := contract.input_problem(case.input)):
                verdict.error, verdict.input = f"case input breaks input_schema: {problem}", case.input
                continue
            result = self.sandbox.run(loaded, encode(case.input).encode(), argv=(manifest.name,))
            outcome = interpret(RunOutcome(manifest.name, "", ok=False), result, contract if case.exit == 0 else None)
            verdict.actual_exit = outcome.exit_code
            verdict.actual = outcome.output if outcome.output is not None else result.stdout.decode("utf-8", "replace")[:2000]
            if outcome.error not in (None, "exit_code"):
                verdict.error = f"{outcome.error}: {outcome.detail}"
            if verdict.error is None and outcome.exit_code == case.exit and json_equal(verdict.actual, case.expect):
                verdicts[-1] = CaseVerdict(case.name, True)
            else:
                verdict.input = case.input
                verdict.stderr = outcome.stderr[-1000:] or None
        return verdicts

    def _green(self, commit: pygit2.Commit, record: BuildRecord, wasm: bytes, mine: bool = False) -> Version:
        build_json = json.dumps(msgspec.to_builtins(record), indent=2, sort_keys=True).encode() + b"\n"
        assert record.fingerprint is not None
        version = self.repo.write_build(record.tool, commit, {"tool.wasm": wasm, "build.json": build_json},
                                        record.fingerprint, mine=mine)
        self._remember(commit, record)
        return version

    def _fail(self, commit: pygit2.Commit, record: BuildRecord, kind: type[BuildFailed] = BuildFailed) -> BuildFailed:
        self._remember(commit, record)
        return kind(f"{str(commit.id)[:10]}: {record.summary()}", record)

    def _remember(self, commit: pygit2.Commit, record: BuildRecord) -> None:
        write_atomic(self.repo.state_dir / "builds" / f"{commit.id}.json", msgspec.json.encode(record))

    def last_record(self, commit: pygit2.Commit | str) -> BuildRecord | None:
        """The build record this repository kept for a source commit, if it was ever built here."""
        return _read_record(self.repo.state_dir / "builds" / f"{getattr(commit, 'id', commit)}.json")


def _read_record(path: Path) -> BuildRecord | None:
    """A kept build record; a damaged one is treated as missing, reported, and removed (so reported once)."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=BuildRecord)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        warn(f"{path} was unreadable: treated as missing")
        path.unlink(missing_ok=True)
        return None


def build_limits(config: pygit2.Config) -> BuildLimits:
    """Compile limits from git config: `evogit.buildTimeout` seconds, `evogit.buildMemory` MiB per process,
    `evogit.buildMaxOutput` bytes; the defaults for keys not set."""
    base, values = DEFAULT_BUILD_LIMITS, {}
    for key, field, scale in (("buildTimeout", "timeout", 0), ("buildMemory", "memory", 1 << 20),
                              ("buildMaxOutput", "max_output", 1)):
        name = f"evogit.{key}"
        if name.lower() not in config:
            continue
        try:
            value = float(str(config[name.lower()])) if not scale else config.get_int(name.lower()) * scale
        except (ValueError, pygit2.GitError) as e:
            raise InvalidInput(f"bad {name} in git config: {e}") from None
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput(f"bad {name} in git config: {config[name.lower()]!r} is not a positive number")
        values[field] = value
    return BuildLimits(**{**base.__dict__, **values})


def tree_id(files: dict[str, bytes]) -> str:
    """The git tree id of regular files (path -> bytes) as `SkillsRepo.write_tree` writes them, computed
    without writing objects."""
    root: dict[str, Any] = {}
    for path, data in files.items():
        *dirs, leaf = path.split("/")
        node = root
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = data

    def digest(node: dict[str, Any]) -> bytes:
        entries = []
        for name, value in node.items():
            if isinstance(value, dict):
                entries.append((name.encode() + b"/", b"40000 " + name.encode() + b"\0" + digest(value)))
            else:
                entries.append((name.encode(), b"100644 " + name.encode() + b"\0" + pygit2.hash(value).raw))
        body = b"".join(entry for _, entry in sorted(entries))
        return hashlib.sha1(b"tree %d\0" % len(body) + body).digest()

    return digest(root).hex()


@functools.cache
def starter_trees() -> frozenset[str]:
    """Tree ids of the starter tools shipped with evogit, as an import commits them: the code evogit wrote."""
    try:
        root = resource("skills-repo")
    except FileNotFoundError:
        return frozenset()
    trees = set()
    for d in root.iterdir():
        if (d / "tool.json").is_file():
            trees.add(tree_id({str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
                               if p.is_file() and "target" not in p.relative_to(d).parts}))
    return frozenset(trees)


def _name_of(files: dict[str, bytes]) -> str | None:
    try:
        return str(decode(files["tool.json"])["name"])
    except (KeyError, InvalidJSON, TypeError):
        return None


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else text[:200] + "…"
