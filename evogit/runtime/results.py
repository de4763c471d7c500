"""What the runtime's operations return, and their JSON forms: msgspec Structs whose fields are exactly what
`--json`, the MCP server and the HTTP API send (`msgspec.json.schema(T)` is each one's output schema), so their
shape is defined here once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..build import BuildRecord
from ..contract import RunOutcome
from ..projections import Claims
from ..repo import Version
from ..share import PullReport


class RunError(msgspec.Struct):
    """Why a run failed: its kind (invalid_input, timeout, fuel, memory, trap, exit, invalid_output, …)."""

    kind: str
    message: str


class RunReport(msgspec.Struct):
    """One run, as `run --json`, MCP and `POST /v1/tools/{name}/run` give it: the output, or the error, and the
    usage (wall milliseconds, fuel)."""

    ok: bool
    output: Any
    error: RunError | None
    tool: str
    fingerprint: str
    wall_ms: float
    fuel: int

    @classmethod
    def of(cls, o: RunOutcome) -> RunReport:
        return cls(o.ok, o.output, None if o.ok else RunError(o.error or "error", o.detail), o.tool, o.fingerprint,
                   round(o.wall_ms, 3), o.fuel)


class BuildReport(msgspec.Struct):
    """One build, as `build --json`, `fork --json`, `init --json` and `pull --json` give it."""

    tool: str
    commit: str  # the source commit built
    ok: bool
    version: str | None  # name@7 hex
    fingerprint: str | None
    error: str | None  # why not green: the failing stage and its message


class InitReport(msgspec.Struct):
    """`init --json`: the repository and the tools built into it; for a repository git made (a `git clone`),
    what init took from it as a pull would (Sharing.arrived)."""

    repo: str
    tools: list[BuildReport]
    adopted: list[str] = []  # local tool branches made from the remote-tracking ones
    accepted_tags: list[str] = []  # version tags that came with it and passed the checks
    refused: dict[str, str] = {}  # remote-tracking tool branches not taken, and why
    refused_tags: dict[str, str] = {}  # version tags that came with it, refused (taken out of refs/tags), and why
    unbuilt: dict[str, str] = {}  # tool -> why its head was not built (trust policy `signed`)


class PullSummary(msgspec.Struct):
    """`pull --json`: what moved, what was refused and why, and whose evidence arrived (share.PullReport)."""

    created: list[str]
    fast_forwarded: list[str]
    diverged: list[str]
    log_bytes: dict[str, int]  # writer -> bytes of its log imported
    refused_logs: dict[str, str]  # log refs not imported and branches not taken -> why
    accepted_tags: list[str]
    refused_tags: dict[str, str]
    unbuilt: dict[str, str]  # tool -> why its head that arrived was not built (trust policy `signed`)
    builds: list[BuildReport]
    trusted_writers: list[str]
    untrusted_claims: dict[str, Claims]
    invalid_events: dict[str, int]
    heads: dict[str, str]  # diverged tool -> the version (name@fingerprint) its branch is at, by the pull's rule
    unknown_events: dict[str, int]  # writer -> its events of types this evogit cannot read (a newer one's), skipped

    @classmethod
    def of(cls, r: PullReport, builds: list[BuildOutcome]) -> PullSummary:
        return cls(r.created, r.fast_forwarded, r.diverged, r.logs, r.refused, r.accepted_tags, r.refused_tags,
                   r.unbuilt, [b.to_json() for b in builds], r.trusted, r.claims, r.invalid, r.heads,
                   r.unknown)


class SearchHit(msgspec.Struct, omit_defaults=True):
    """One ranked tool of `search --json`."""

    tool: str
    version: str  # name@fingerprint
    score: float
    description: str
    why: dict[str, Any] | None = None  # with --explain: what the score is made of


class SearchReport(msgspec.Struct):
    """`search --json`: the embedder used and the ranked tools."""

    model: str
    semantic: bool
    hits: list[SearchHit]


class IndexReport(msgspec.Struct):
    tools: int
    dimensions: int
    model: str
    seconds: float


class ReplayReport(msgspec.Struct):
    """`replay --json`: the projections rebuilt from the whole log, and the retrieval index refitted."""

    versions: int
    runs: int
    position: dict[str, int]  # writer -> bytes of its log reflected
    seconds: float
    index: IndexReport


class ToolEntry(msgspec.Struct):
    """One tool as `list --json` and `GET /v1/tools` give it: its newest green version and its branch head."""

    name: str
    version: str | None  # name@7 hex of the newest green version
    fingerprint: str | None
    versions: int
    head: str
    head_status: str  # green, failed or unbuilt
    description: str
    diverged: list[str] = msgspec.field(default_factory=list)  # versions off the branch's history: a sibling from
    # a machine that advanced the tool too, until someone merges or chooses (evogit resolve)


class SolveReport(msgspec.Struct):
    """A solve, as `solve --json`, MCP's `solve` and `POST /v1/solve` give it, whatever its outcome."""

    answer: Any
    served_by: str | None  # name@fingerprint of the version whose run answered
    model_used: bool
    steps: list[dict[str, Any]]
    tokens: int
    ok: bool
    outcome: str  # answered, no_model, step_limit, deadline, model_error, failed, error
    fast_path: bool
    confidence: float | None
    written: list[str]
    superseded: list[dict[str, str]]
    error: str | None


@dataclass
class BuildOutcome:
    """The result of building one source commit: a version, or the record of why not."""

    tool: str
    commit: str
    version: Version | None = None
    record: BuildRecord | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.version is not None

    def to_json(self) -> BuildReport:
        return BuildReport(self.tool, self.commit, self.ok, self.version.short if self.version else None,
                           self.version.fingerprint if self.version else None,
                           None if self.ok else (self.record.summary() if self.record else self.error))


@dataclass
class ToolSummary:
    """One tool in `list`: its newest green version and the state of its branch head."""

    name: str
    description: str
    latest: Version | None
    versions: int
    head: str
    head_status: str  # green, failed or unbuilt
    diverged: list[str] = field(default_factory=list)  # versions off the branch's history (name@fingerprint)

    def to_json(self) -> ToolEntry:
        return ToolEntry(self.name, self.latest.short if self.latest else None,
                         self.latest.fingerprint if self.latest else None, self.versions, self.head, self.head_status,
                         self.description, self.diverged)


class BestDescendant(msgspec.Struct):
    version: str  # name@fingerprint
    success_rate: float
    runs: int


class VersionStats(msgspec.Struct):
    """One version's metrics from the event log (`stats --json`, `describe`'s `metrics`), lineage-aware."""

    runs: int
    ok: int
    refused: int  # runs whose input the schema refused: not counted in the success rate
    success_rate: float | None
    errors: dict[str, int]  # failed runs by error kind
    p50_ms: float | None
    p95_ms: float | None
    mean_fuel: int | None
    last_used_ns: int | None
    builds_ok: int
    builds_failed: int
    unit_tests: int
    cases: int
    feedback_solved: int
    feedback_failed: int
    retrieved: int  # searches that returned it
    retrieved_first: int  # ... ranked first
    chosen: int  # ... after which the caller chose it
    children: int = 0
    descendants: int = 0
    best_descendant: BestDescendant | None = None  # by success rate, runs breaking ties (one run at least)


class ToolTokens(msgspec.Struct):
    """What writing one tool cost (every attempt of creates, mutations and teaching, red ones too)."""

    tokens: int
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    green: int
    by_kind: dict[str, int]
    seconds: float


class ModelTokens(msgspec.Struct):
    calls: int
    failed: int
    tokens: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    by_purpose: dict[str, int]


class Reused(msgspec.Struct):
    reused: int  # solves it served by reuse
    authoring_tokens: int  # what writing it cost, per green version (or the library's mean)
    saved: int
    estimate: str  # own, or library mean


class SolveCosts(msgspec.Struct):
    """How tasks were served and what reuse saved (an estimate: see the README's What reuse saves)."""

    solves: int
    answered: int
    fast_path: int
    model_run: int
    written: int
    unserved: int
    by_outcome: dict[str, int]
    tokens: int
    prompt_tokens: int
    completion_tokens: int
    author_tokens: int
    runs_without_model: int
    mean_authoring_tokens: int
    tokens_saved: int
    tokens_saved_net: int
    reused: dict[str, Reused]


class CostReport(msgspec.Struct):
    """`stats --cost --json`: tokens per tool and per model, and the solves."""

    tools: dict[str, ToolTokens]
    models: dict[str, ModelTokens]
    tokens: int
    solves: SolveCosts


class Supersession(msgspec.Struct):
    """A parent's case this version no longer has to pass, and why (an `Evogit-Supersedes` trailer)."""

    case: str
    reason: str


class Description(msgspec.Struct, kw_only=True):
    """Everything about one version: manifest, schemas, cases, build record, lineage, metrics."""

    tool: str
    version: str  # name@fingerprint prefix
    fingerprint: str
    description: str
    tags: list[str]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    cases: list[dict[str, Any]]
    build: dict[str, Any]
    source_commit: str
    build_commit: str
    message: str
    superseded: list[Supersession]
    author: str
    parents: list[str]
    children: list[str]
    versions: list[str]
    head: str
    head_is_this_version: bool
    metrics: VersionStats

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


# -- the catalog's results: what a model (a tool call's result) and an MCP client (structured content) are sent --
# A field that is UNSET is left out of the JSON. Every success has `ok: true`; every failure is a CallFailed.
class CallError(msgspec.Struct):
    kind: str  # unknown_function, bad_arguments, tool_not_found, timeout, not_green, ...
    message: str  # one line


class CallFailed(msgspec.Struct, kw_only=True):
    """A call that did not succeed: the error, and what is known besides (the version that ran and what it
    printed; a write's attempts and tokens)."""

    ok: bool = False
    error: CallError
    version: str | msgspec.UnsetType = msgspec.UNSET  # name@fingerprint
    output: Any | msgspec.UnsetType = msgspec.UNSET
    stderr: str | msgspec.UnsetType = msgspec.UNSET
    attempts: int | msgspec.UnsetType = msgspec.UNSET
    tokens: int | msgspec.UnsetType = msgspec.UNSET


class Listed(msgspec.Struct):
    version: str  # name@fingerprint of the tool's newest green version
    description: str  # its first sentence
    runs: int
    success_rate: float | None


class Listing(msgspec.Struct, kw_only=True):
    """list_tools."""

    ok: bool = True
    tools: list[Listed]


class Candidate(msgspec.Struct):
    """A search hit as a model is shown it."""

    version: str
    description: str
    input_schema: dict[str, Any]
    probability: float
    runs: int
    success_rate: float | None


class Candidates(msgspec.Struct, kw_only=True):
    """search_tools: the hits, and how sure retrieval is of the first."""

    ok: bool = True
    confidence: float
    tools: list[Candidate]


class Example(msgspec.Struct):
    input: Any
    expect: Any | msgspec.UnsetType = msgspec.UNSET
    exit: int | msgspec.UnsetType = msgspec.UNSET


class Record(msgspec.Struct):
    runs: int
    success_rate: float | None
    errors: dict[str, int]
    p50_ms: float | None
    solved: int
    failed: int


class Described(msgspec.Struct, kw_only=True):
    """describe_binary."""

    ok: bool = True
    version: str
    description: str
    tags: list[str]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    examples: list[Example]
    cases: int
    record: Record
    versions: int
    newest: bool
    parents: list[str]
    superseded: list[Supersession]


class Ran(msgspec.Struct, kw_only=True):
    """run_binary that succeeded. In a solve, a run whose output is not what the task asks for has
    `answers_task: false` and a `note` saying why."""

    ok: bool = True
    version: str
    output: Any
    wall_ms: float
    answers_task: bool | msgspec.UnsetType = msgspec.UNSET
    note: str | msgspec.UnsetType = msgspec.UNSET


class Written(msgspec.Struct, kw_only=True):
    """create_binary and mutate_binary: the green version written."""

    ok: bool = True
    version: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    parent: str | None
    attempts: int
    tokens: int
    superseded: list[Supersession]


class Recorded(msgspec.Struct, kw_only=True):
    """feedback."""

    ok: bool = True
    version: str
    task: str
    recorded: str  # solved or failed


CallResult = Listing | Candidates | Described | Ran | Written | Recorded | CallFailed


# -- writing tools -----------------------------------------------------------------------------------------------
class Attempt(msgspec.Struct):
    """One round of create / mutate / teach: what the model was asked for and how far its files got."""

    round: int
    stage: str  # model, reply, package, compile, unit_tests, cases, green
    request: str = "first"  # first; repair (of the attempt before it); fresh (the first request again, warmer)
    error: str | None = None  # the error kind; None when green
    evidence: str = ""  # what went back to the model
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0  # the whole round, model call included
    model_seconds: float = 0.0  # of which waiting for the model


class AuthorReport(msgspec.Struct):
    """`create`, `mutate` and `teach --json`: the green version written, or every attempt that was not."""

    kind: str  # create, mutate, teach
    ok: bool
    tool: str
    version: str | None  # name@7 hex
    fingerprint: str | None
    parent: str | None  # name@fingerprint of the version mutated
    parent_reason: str | None
    model: str
    tokens: int
    attempts: list[Attempt]
    superseded: list[Supersession]
    mended: list[str]  # what was put back or ignored in the reply's cases
    notes: str
    commit: str | None
    error: str | None  # why it failed, one line
