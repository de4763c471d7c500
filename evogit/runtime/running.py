"""Running versions: resolve and load once per process, validate input, run in the sandbox, validate output,
and hand each run's record to a sink (the log by default)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import events as ev
from .. import jsonio
from .. import limits as limits_mod
from ..contract import Contract, RunOutcome, interpret
from ..errors import InvalidInput, InvalidJSON, SandboxError
from ..events import version_key
from ..manifest import ToolManifest, parse_manifest
from ..projections import task_key
from ..repo import SkillsRepo, Version, branch_ref, parse_spec
from ..sandbox import DEFAULT_LIMITS, Limits, LoadedModule, RunResult, Sandbox
from .state import LocalState

RunSink = Callable[[ev.ToolRun], None]


@dataclass
class _Loaded:
    version: Version
    manifest: ToolManifest
    wasm: bytes
    contract: Contract = field(repr=False)
    module: LoadedModule | None = field(default=None, repr=False)


def _run_event(outcome: RunOutcome, stdin: bytes, result: RunResult | None, task: str | None) -> ev.ToolRun:
    return ev.ToolRun(
        tool=outcome.tool, fingerprint=outcome.fingerprint, input_sha256=hashlib.sha256(stdin).hexdigest(),
        ok=outcome.ok, error=outcome.error, exit_code=outcome.exit_code, wall_ms=round(outcome.wall_ms, 3),
        cpu_ms=round(result.cpu_ms, 3) if result else 0.0, fuel=outcome.fuel,
        output_bytes=len(result.stdout) if result else 0, task=task,
    )


class Running:
    """Runs versions of one repository; keeps each loaded version (and its compiled module) for the process."""

    def __init__(self, repo: SkillsRepo, sandbox: Sandbox, state: LocalState, run_sink: RunSink | None = None):
        self.repo, self.sandbox, self.state = repo, sandbox, state
        self.run_sink: RunSink = run_sink or self._log_run
        self._loaded: dict[str, _Loaded] = {}
        self._resolved: dict[str, tuple[str | None, _Loaded]] = {}

    def close(self) -> None:
        self._loaded.clear()
        self._resolved.clear()

    def _log_run(self, event: ev.ToolRun) -> None:
        self.state.log.append([event])

    def choice(self, task: str, version: str) -> list[ev.Retrieved]:
        """The caller's choice for a task it searched for and has not yet chosen for (the first run or feedback
        with that task after the search), as a Retrieved event without candidates (and so without a model)."""
        search = self.state.projections().state.searches.get(task_key(task))
        if search is None or search.chosen > search.order:
            return []
        return [ev.Retrieved(query=task, model="", candidates=[], choice=version)]

    def default_limits(self) -> Limits:
        """Run limits from the repo's git config (`evogit.timeout`, `evogit.fuel`, `evogit.memory` in MiB,
        `evogit.maxOutput` and `evogit.maxInput` in bytes), falling back to the built-in defaults; a value out of
        its range is an InvalidLimit naming the key (evogit/limits.py)."""
        return limits_mod.from_config(self.repo.git.config, DEFAULT_LIMITS)

    def load(self, spec: str) -> _Loaded:
        """Resolve and load a version once per process; a bare name is re-resolved only if its branch moved."""
        name, prefix = parse_spec(spec)
        ref = None if prefix else self.repo.git.references.get(branch_ref(name))
        marker = str(ref.target) if ref is not None else None
        cached = self._resolved.get(spec)
        if cached is not None and cached[0] == marker:
            return cached[1]
        v = self.repo.resolve(spec)
        hit = self._loaded.get(v.build_commit)
        if hit is None:
            build = self.repo.commit(v.build_commit)
            manifest = parse_manifest(self.repo.read(build, "tool.json"), check_schemas=False)
            hit = _Loaded(v, manifest, self.repo.read(build, "build/tool.wasm"), Contract(manifest))
            self._loaded[v.build_commit] = hit
        self._resolved[spec] = (marker, hit)
        return hit

    def run(self, spec: str, stdin: bytes, limits: Limits = DEFAULT_LIMITS, task: str | None = None) -> RunOutcome:
        """Validate input, run the version in the sandbox, validate output; a ToolRun event goes to the sink
        (the log), with the task it served if the caller says."""
        if task is not None:
            check_task(task)
        if self.run_sink == self._log_run:
            _ = self.state.log  # a damaged log (LogCorrupted) fails the run before it starts, not after
        outcome, result = self._run(self.load(spec), stdin, limits)
        self.run_sink(_run_event(outcome, stdin, result, task))
        if task and (choice := self.choice(task, version_key(outcome.tool, outcome.fingerprint))):
            self.state.log.append(choice)
        return outcome

    def _run(self, tool: _Loaded, stdin: bytes, limits: Limits) -> tuple[RunOutcome, RunResult | None]:
        v = tool.version
        outcome = RunOutcome(v.name, v.fingerprint, ok=False)
        if len(stdin) > limits.max_input:
            outcome.error, outcome.detail = "invalid_input", _too_large(limits)
            return outcome, None
        try:
            value = jsonio.decode(stdin, what="input")
        except InvalidJSON as e:
            outcome.error, outcome.detail = "invalid_input", str(e)
            return outcome, None
        problem = tool.contract.input_problem(value)
        del value  # the tool reads the bytes: a big input's decoded copy need not live through the run
        if problem:
            outcome.error, outcome.detail = "invalid_input", problem
            return outcome, None
        if tool.module is None:
            try:
                tool.module = self.sandbox.load(tool.wasm, v.fingerprint)  # verifies the fingerprint
            except SandboxError as e:
                outcome.error, outcome.detail = e.kind, str(e)
                return outcome, None
        loaded = tool.module
        result = self.sandbox.run(loaded, stdin, limits, argv=(v.name,))
        interpret(outcome, result, tool.contract)
        return outcome, result

MAX_MODULE = 64 * 1024 * 1024  # bytes of a module `run --wasm` reads (a built tool is 0.1-3 MB)


def run_wasm(path: Path, stdin: bytes, limits: Limits = DEFAULT_LIMITS) -> RunOutcome:
    """Run any WASI command module under the same sandbox and limits, without schemas or a repository."""
    with open(path, "rb") as f:  # bounded: `--wasm /dev/zero` must not fill the memory (it reached 9.2 GB)
        wasm = f.read(MAX_MODULE + 1)
    if len(wasm) > MAX_MODULE:
        return RunOutcome(Path(path).name, "", ok=False, error="invalid_input",
                          detail=f"the module is larger than {MAX_MODULE:,} bytes")
    sandbox = Sandbox()
    try:
        loaded = sandbox.load(wasm, cache=False)  # only modules evogit compiled itself are ever deserialized
    except SandboxError as e:
        return RunOutcome(Path(path).name, "", ok=False, error=e.kind, detail=str(e))
    outcome = RunOutcome(Path(path).name, loaded.fingerprint, ok=False)
    if len(stdin) > limits.max_input:  # no schema, so nothing is decoded, but the size limit holds
        outcome.error, outcome.detail = "invalid_input", _too_large(limits)
        return outcome
    return interpret(outcome, sandbox.run(loaded, stdin, limits, argv=(Path(path).stem,)))


def _too_large(limits: Limits) -> str:
    return f"input is larger than {limits.max_input:,} bytes (raise --max-input or git config evogit.maxInput)"


MAX_TASK = 10_000  # characters of a task or a search query: every one is embedded, and logged


def check_task(task: str, what: str = "task") -> None:
    if not task.strip():
        raise InvalidInput(f"the {what} is blank: say what the tool was used for" if what == "task" else
                           f"the {what} is blank")
    if len(task) > MAX_TASK:
        raise InvalidInput(f"the {what} is {len(task):,} characters long; at most {MAX_TASK:,}")
