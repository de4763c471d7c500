"""The build pipeline: check the package, compile to WASI, run unit tests and cases in the sandbox, then
write the build commit and tag. A failed build tags nothing and keeps a record of why.

Green results are cached by (toolchain, source tree): an identical tree is never compiled twice on this machine.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pygit2

from .atomic import write_atomic
from .contract import Contract, RunOutcome, interpret
from .errors import BuildFailed, InvalidJSON, InvalidPackage, SandboxError
from .jsonio import decode, encode
from .log import warn
from .manifest import Case, ToolManifest, check_package
from .repo import SkillsRepo, Version
from .sandbox import Limits, Sandbox, fingerprint
from .toolchain import Compiler

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
    """Builds source commits of one repository."""

    def __init__(self, repo: SkillsRepo, compiler: Compiler | None = None, sandbox: Sandbox | None = None):
        self.repo = repo
        self._compiler = compiler
        self.sandbox = sandbox or Sandbox(repo.state_dir / "modules")

    @property
    def compiler(self) -> Compiler:
        if self._compiler is None:
            self._compiler = Compiler()
        return self._compiler

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
        name = branch or "?"
        try:
            files, links = self.repo.files(commit.tree)  # checks every entry name before anything is written
            name = branch or _name_of(files) or "?"
            manifest, cases = check_package(files, links)
        except InvalidPackage as e:
            raise self._fail(commit, BuildRecord(name, False, stage="package", message=str(e))) from None
        if branch is not None and manifest.name != branch:
            msg = f"tool.json names {manifest.name!r} but the commit is on tools/{branch}"
            raise self._fail(commit, BuildRecord(name, False, stage="package", message=msg))
        name = manifest.name
        if not force and not again and (done := self.existing(commit, name)) is not None:
            return done
        if not force and (hit := self._cached(str(commit.tree_id))) is not None:
            return self._green(commit, *hit, again)
        record, maybe_wasm = self._compile_and_test(files, manifest, cases)
        if not record.ok or maybe_wasm is None:
            raise self._fail(commit, record)  # failures are not cached: they may be transient (timeouts)
        self._cache(str(commit.tree_id), record, maybe_wasm)
        return self._green(commit, record, maybe_wasm, again)

    def try_files(self, files: dict[str, bytes]) -> tuple[BuildRecord, bytes | None]:
        """Build and test a package that is not committed (a model's attempt) with the same checks, sandbox and
        cases as a commit's build. A green result is cached by its tree, so committing it afterwards compiles
        nothing; a red one is only returned (nothing is written to the repository but loose blobs)."""
        name = _name_of(files) or "?"
        try:
            tree = str(self.repo.write_tree(files))  # checks every path before anything is written
            manifest, cases = check_package(files, set())
        except InvalidPackage as e:
            return BuildRecord(name, False, stage="package", message=str(e)), None
        if (hit := self._cached(tree)) is not None:
            return hit
        record, wasm = self._compile_and_test(files, manifest, cases)
        if record.ok and wasm is not None:
            self._cache(tree, record, wasm)
        return record, wasm

    def _cache_paths(self, tree: str) -> tuple[Path, Path]:
        cache = self.compiler.cache / "builds" / self.compiler.toolchain.key
        return cache / f"{tree}.json", cache / f"{tree}.wasm"

    def _cached(self, tree: str) -> tuple[BuildRecord, bytes] | None:
        """The green build of an identical source tree on this machine, if one is cached and intact."""
        cached_record, cached_wasm = self._cache_paths(tree)
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

    def _cache(self, tree: str, record: BuildRecord, wasm: bytes) -> None:
        cached_record, cached_wasm = self._cache_paths(tree)
        write_atomic(cached_wasm, wasm)
        write_atomic(cached_record, msgspec.json.encode(record))

    def _compile_and_test(self, files: dict[str, bytes], manifest: ToolManifest,
                          cases: list[Case]) -> tuple[BuildRecord, bytes | None]:
        record = BuildRecord(manifest.name, False, toolchain=self.compiler.toolchain.describe())
        self.compiler.cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="pkg-", dir=self.compiler.cache))
        try:
            for path, data in files.items():
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).write_bytes(data)
            try:
                artifacts = self.compiler.compile(work)
            except BuildFailed as e:
                record.stage, record.message = "compile", str(e)
                return record, None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        record.fingerprint, record.wasm_bytes = fingerprint(artifacts.wasm), len(artifacts.wasm)
        passed = failed = 0
        for test_wasm in artifacts.test_wasms:
            p, f, problem = self._unit_tests(test_wasm)
            passed, failed = passed + p, failed + f
            if problem:
                record.unit_tests = {"passed": passed, "failed": max(failed, 1)}
                record.stage, record.message = "unit_tests", problem
                return record, None
        record.unit_tests = {"passed": passed, "failed": failed}
        verdicts = self.run_cases(artifacts.wasm, manifest, cases)
        record.cases = verdicts
        bad = [v for v in verdicts if not v.ok]
        if bad:
            first = bad[0]
            record.stage = "cases"
            record.message = f"{len(bad)} of {len(verdicts)} cases failed; first: {first.name}: " + (
                first.error or f"expected {_short(first.expected)} (exit {first.expected_exit}), "
                f"got {_short(first.actual)} (exit {first.actual_exit})"
            )
            return record, None
        record.ok = True
        return record, artifacts.wasm

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
                verdict.error = f"case input breaks input_schema: {problem}"
                continue
            result = self.sandbox.run(loaded, encode(case.input).encode(), argv=(manifest.name,))
            outcome = interpret(RunOutcome(manifest.name, "", ok=False), result, contract if case.exit == 0 else None)
            verdict.actual_exit = outcome.exit_code
            verdict.actual = outcome.output if outcome.output is not None else result.stdout.decode("utf-8", "replace")[:2000]
            if outcome.error not in (None, "exit_code"):
                verdict.error = f"{outcome.error}: {outcome.detail}"
            if verdict.error is None and outcome.exit_code == case.exit and json_equal(verdict.actual, case.expect):
                verdicts[-1] = CaseVerdict(case.name, True)
        return verdicts

    def _green(self, commit: pygit2.Commit, record: BuildRecord, wasm: bytes, mine: bool = False) -> Version:
        build_json = json.dumps(msgspec.to_builtins(record), indent=2, sort_keys=True).encode() + b"\n"
        assert record.fingerprint is not None
        version = self.repo.write_build(record.tool, commit, {"tool.wasm": wasm, "build.json": build_json},
                                        record.fingerprint, mine=mine)
        self._remember(commit, record)
        return version

    def _fail(self, commit: pygit2.Commit, record: BuildRecord) -> BuildFailed:
        self._remember(commit, record)
        return BuildFailed(f"{str(commit.id)[:10]}: {record.summary()}", record)

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


def _name_of(files: dict[str, bytes]) -> str | None:
    try:
        return str(decode(files["tool.json"])["name"])
    except (KeyError, InvalidJSON, TypeError):
        return None


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else text[:200] + "…"
