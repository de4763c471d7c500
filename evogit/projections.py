"""Derived state, rebuilt from the event log: per-version metrics, per-tool usage, tasks served, embeddings.

Every aggregate is commutative (counts, sums, histograms, latest-by-(at, writer, seq)), so the state does
not depend on the order events arrive in: catching up incrementally, merging another machine's log, or
replaying from zero all give the same state, and `snapshot()` encodes it canonically (sorted keys), so
they give the same bytes. A state records the log position it reflects and catches up from there.

Two projections, each with its own snapshot and position: `Projector` (metrics, usage, tasks served,
retrieval history), which every command reads, and `EmbeddingProjector` (the vectors: most of the bytes),
which only a search reads.

A snapshot is local state that must match its log, never trusted otherwise: with its position it keeps a
mark per writer (the crc32 of the bytes just before the position, `EventLog.marks`). If a log it reflects
is gone, shorter, or different there, or the snapshot itself does not decode, the projection is rebuilt
from zero and that is reported once (a warning on the `evogit` logger; the rebuilt snapshot is saved).
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from array import array
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from .atomic import write_atomic
from .events import (
    AnyEvent,
    AuthorAttempt,
    BuildFailed,
    BuildSucceeded,
    Embedded,
    Feedback,
    ModelCalled,
    Retrieved,
    Solved,
    ToolRun,
    UnknownEvent,
    VersionCommitted,
    problem,
    split_key,
    version_key,
)
from .log import EventLog, Position, warn

FORMAT = 13  # bump whenever projection logic changes: older snapshots are then rebuilt
LAT_BUCKETS = 64
_LAT_BASE = 0.01  # ms: bucket i holds latencies in [0.01 * 10^(i/8), 0.01 * 10^((i+1)/8))


_EDGES = [_LAT_BASE * 10 ** (i / 8) for i in range(1, LAT_BUCKETS)]


def latency_bucket(ms: float) -> int:
    return bisect_right(_EDGES, ms)


def bucket_upper_ms(i: int) -> float:
    return _LAT_BASE * 10 ** ((i + 1) / 8)


class VersionMetrics(msgspec.Struct, omit_defaults=True):
    runs: int = 0
    ok: int = 0
    refused: int = 0  # runs refused before they started because the input was not the tool's (invalid_input)
    errors: dict[str, int] = {}
    latency: list[int] = []  # histogram, LAT_BUCKETS wide once used
    wall_us: int = 0  # integers keep the sums independent of event order
    fuel: int = 0
    last_used: int = 0
    builds_ok: int = 0
    builds_failed: int = 0
    unit_tests: int = 0
    cases: int = 0
    solved: int = 0
    failed: int = 0
    retrieved: int = 0  # times among a search's results
    retrieved_first: int = 0  # times ranked first
    chosen: int = 0  # times a caller used it for a task it had searched for

    @property
    def success_rate(self) -> float | None:
        """The share of the runs that started which succeeded: a caller's invalid input is not the tool's
        failure, and counting it would let anyone switch a tool's fast path off with bad calls."""
        judged = self.runs - self.refused
        return self.ok / judged if judged > 0 else None

    def percentile(self, q: float) -> float | None:
        """An upper bound of the q-quantile latency (ms), from the histogram (1/8 decade resolution)."""
        total = sum(self.latency)
        if not total:
            return None
        need, seen = q * total, 0
        for i, n in enumerate(self.latency):
            seen += n
            if seen >= need:
                return round(bucket_upper_ms(i), 4)
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "runs": self.runs, "ok": self.ok, "refused": self.refused,
            "success_rate": None if (rate := self.success_rate) is None else round(rate, 4),
            "errors": self.errors, "p50_ms": self.percentile(0.5), "p95_ms": self.percentile(0.95),
            "mean_fuel": self.fuel // self.runs if self.runs else None, "last_used_ns": self.last_used or None,
            "builds_ok": self.builds_ok, "builds_failed": self.builds_failed, "unit_tests": self.unit_tests,
            "cases": self.cases, "feedback_solved": self.solved, "feedback_failed": self.failed,
            "retrieved": self.retrieved, "retrieved_first": self.retrieved_first, "chosen": self.chosen,
        }


class Vector(msgspec.Struct, array_like=True):
    order: tuple[int, str, int]  # (at, writer, seq): the newest embedding of a version and model wins
    text: str
    vector: list[float]


NEVER = (0, "", 0)


class Search(msgspec.Struct, array_like=True):
    order: tuple[int, str, int] = NEVER  # (at, writer, seq) of the newest search for this query
    chosen: tuple[int, str, int] = NEVER  # of the newest choice made for this query: after `order` = answered
    text: str = ""  # the query, once searched for (the demand retrieval estimates comes from these)


class TaskVector(msgspec.Struct, array_like=True):
    order: tuple[int, str, int]  # (at, writer, seq): the newest embedding of a task and model wins
    vector: bytes  # float32, native order


class ToolCost(msgspec.Struct, omit_defaults=True):
    """What writing one tool with a model cost: every attempt, green or red, of creates, mutations and teaching."""

    attempts: int = 0
    green: int = 0  # attempts that became a version
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ms: int = 0  # wall time of the attempts (integers keep the sums independent of event order)
    by_kind: dict[str, int] = {}  # create / mutate / teach -> attempts

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelCost(msgspec.Struct, omit_defaults=True):
    """Calls to one model, for any purpose, and what they cost."""

    calls: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    by_purpose: dict[str, int] = {}


class SolveCost(msgspec.Struct, omit_defaults=True):
    """What solving tasks cost and how they were served (Solved events)."""

    solves: int = 0
    answered: int = 0
    fast_path: int = 0  # served by a version without any model call
    model_run: int = 0  # served by a version the model chose to run, one already in the library
    written: int = 0  # served by a version created or mutated in the same solve
    unserved: int = 0  # answered without a run, or not answered
    prompt_tokens: int = 0
    completion_tokens: int = 0
    author_tokens: int = 0
    reuse_tokens: int = 0  # of which: the model calls of the solves served by reuse (model-run)
    by_outcome: dict[str, int] = {}
    reused: dict[str, int] = {}  # tool -> solves served by reusing one of its versions (fast path or model-run)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens + self.author_tokens


class Trust(msgspec.Struct, frozen=True):
    """Whose events a projection applies: this repository's own writer's, and those of the writers it trusts
    (`evogit.trustWriter`). Every other writer's events are kept in the log and counted as claims, never applied:
    a log anyone can push to a hub must not move this machine's fast path, parent choice or success rates."""

    own: str
    others: frozenset[str] = frozenset()

    def __contains__(self, writer: object) -> bool:
        return writer == self.own or writer in self.others

    def key(self) -> list[str]:
        return sorted({self.own, *self.others})


class Claims(msgspec.Struct, omit_defaults=True):
    """What the events of a writer this repository does not trust claim: counted, never applied."""

    events: int = 0
    runs: int = 0
    ok_runs: int = 0
    feedback: int = 0
    solved: int = 0  # feedback saying a task was solved


class State(msgspec.Struct, omit_defaults=True):
    format: int  # required, so an old snapshot's version is always on disk (a default would be omitted)
    position: Position = {}
    marks: dict[str, int] = {}  # writer -> crc32 of the log's bytes just before `position` (EventLog.marks)
    trusted: list[str] | None = None  # the writers whose events were applied (Trust.key); None: every writer
    claims: dict[str, Claims] = {}  # an untrusted writer -> what its events claim
    invalid: dict[str, int] = {}  # writer -> its events skipped as invalid (events.problem)
    unknown: dict[str, int] = {}  # writer -> its events of a type this version cannot read (a newer evogit's)
    versions: dict[str, VersionMetrics] = {}  # "tool@fingerprint"
    commits: dict[str, int] = {}  # tool -> source versions committed
    facts: set[str] = set()  # ids of facts that may be recorded twice (builds): counted once
    served: dict[str, dict[str, int]] = {}  # "tool@fingerprint" -> task -> (times solved) - (times failed)
    searches: dict[str, Search] = {}  # task_key(query) -> its newest search, and whether a choice followed
    retrievals: int = 0
    costs: dict[str, ToolCost] = {}  # tool -> what authoring it cost ("" for attempts that never named one)
    models: dict[str, ModelCost] = {}  # model id -> its calls
    solving: SolveCost = msgspec.field(default_factory=SolveCost)


class EmbeddingState(msgspec.Struct, omit_defaults=True):
    """The vectors, kept apart from the metrics: they are most of the bytes, and only a search reads them."""

    format: int
    position: Position = {}
    marks: dict[str, int] = {}
    trusted: list[str] | None = None
    vectors: dict[str, dict[str, Vector]] = {}  # model -> "tool@fingerprint" -> newest embedding
    tasks: dict[str, dict[str, TaskVector]] = {}  # model -> task_key(task text) -> newest embedding


def task_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


_key = version_key


S = TypeVar("S", State, EmbeddingState)


def _ignore(event: Any) -> None:
    pass


class _Projection(ABC, Generic[S]):
    """Applies events to a state that records its log position; the functions are chosen by event type. With a
    `trust`, only the trusted writers' events are applied (another writer's are counted by `_untrusted`), and
    every event not written by this repository's own writer is checked first (`events.problem`): an invalid
    one is skipped and counted."""

    state: S
    trust: Trust | None = None  # None: every writer's events are applied (still checked)
    _apply: dict[type, Callable[[Any], None]]
    skipped = 0  # events passed over as irrelevant since the snapshot was loaded
    unsaved = 0  # events applied since the snapshot was last saved
    saved_at = -1e9  # time.monotonic() of the last save by this process
    applied = 0  # events applied since it was loaded: while unchanged, so is the state

    def catch_up(self, log: EventLog) -> int:
        """Apply every event after the state's position; returns how many were not ignored."""
        return sum(self.apply(writer, end, events) for writer, end, events in log.chunks(self.state.position))

    def apply(self, writer: str, end: int, events: list[Any]) -> int:
        """Apply one chunk of a writer's log, which ends at byte `end`; returns how many were not ignored."""
        apply, n = self._apply, 0
        trust = self.trust
        if trust is not None and writer not in trust:
            n = self._untrusted(writer, events)
            for event in events:
                if type(event) is UnknownEvent:
                    self._unknown(writer)
        else:
            checked = trust is None or writer != trust.own
            for event in events:
                handler = apply.get(type(event), _ignore)
                if handler is _ignore:
                    if type(event) is UnknownEvent:
                        self._unknown(writer)
                    continue
                if checked and problem(event) is not None:
                    self._invalid(writer)
                else:
                    handler(event)
                n += 1
        self.skipped += len(events) - n
        self.applied += n
        self.state.position[writer] = end
        return n

    def _untrusted(self, writer: str, events: list[AnyEvent]) -> int:
        """Count what an untrusted writer's events claim (nothing by default); returns how many were counted."""
        return 0

    def _invalid(self, writer: str) -> None:
        """Count an invalid event of `writer` (not by default)."""

    def _unknown(self, writer: str) -> None:
        """Count an event of `writer` whose type this version cannot read, skipped (not by default)."""

    @abstractmethod
    def reset(self) -> None:
        """Start again from an empty state (position 0). `applied` keeps counting, so that whoever compares
        it to tell whether the state changed sees that it did. Each projection knows its empty state."""


class Projector(_Projection[State]):
    """Metrics, usage, tasks served, retrieval history."""

    def __init__(self, state: State | None = None, trust: Trust | None = None):
        self.trust = trust
        self.state = state or State(format=FORMAT, trusted=trust.key() if trust else None)
        self._by_pair: dict[tuple[str, str], VersionMetrics] = {}  # the same objects as state.versions
        self._apply = {
            ToolRun: self._run, BuildSucceeded: self._build_ok, BuildFailed: self._build_failed,
            Feedback: self._feedback, Embedded: _ignore, Retrieved: self._retrieved,
            VersionCommitted: self._committed, AuthorAttempt: self._author, ModelCalled: self._model_called,
            Solved: self._solved,
        }

    def reset(self) -> None:
        self.state, self._by_pair = State(format=FORMAT, trusted=self.trust.key() if self.trust else None), {}
        self.applied += 1

    def _untrusted(self, writer: str, events: list[AnyEvent]) -> int:
        c = self.state.claims.get(writer)
        if c is None:
            c = self.state.claims[writer] = Claims()
        for e in events:
            c.events += 1
            if isinstance(e, ToolRun):
                c.runs += 1
                c.ok_runs += e.ok is True
            elif isinstance(e, Feedback):
                c.feedback += 1
                c.solved += e.solved is True
        return len(events)

    def _invalid(self, writer: str) -> None:
        self.state.invalid[writer] = self.state.invalid.get(writer, 0) + 1

    def _unknown(self, writer: str) -> None:
        self.state.unknown[writer] = self.state.unknown.get(writer, 0) + 1

    def _metrics(self, tool: str, fp: str) -> VersionMetrics:
        m = self._by_pair.get((tool, fp))
        if m is None:
            key = _key(tool, fp)
            m = self.state.versions.get(key)
            if m is None:
                m = self.state.versions[key] = VersionMetrics(errors={}, latency=[0] * LAT_BUCKETS)
            self._by_pair[(tool, fp)] = m
        return m

    def _run(self, e: ToolRun) -> None:
        m = self._metrics(e.tool, e.fingerprint)
        m.runs += 1
        if e.ok:
            m.ok += 1
        elif e.error:
            m.errors[e.error] = m.errors.get(e.error, 0) + 1
            m.refused += e.error == "invalid_input"
        if e.wall_ms > 0:  # a run refused before it started (invalid_input) has no latency
            m.latency[latency_bucket(e.wall_ms)] += 1
        m.wall_us += round(e.wall_ms * 1000)
        m.fuel += e.fuel
        if e.at > m.last_used:
            m.last_used = e.at
        if e.task and e.ok:
            self._serve(e.tool, e.fingerprint, e.task, 1)

    def _once(self, event_id: str) -> bool:
        if event_id in self.state.facts:
            return False
        self.state.facts.add(event_id)
        return True

    def _build_ok(self, e: BuildSucceeded) -> None:
        if self._once(e.id):
            m = self._metrics(e.tool, e.fingerprint)
            m.builds_ok += 1
            m.unit_tests = max(m.unit_tests, e.unit_tests)
            m.cases = max(m.cases, e.cases)

    def _build_failed(self, e: BuildFailed) -> None:
        if self._once(e.id):
            m = self._metrics(e.tool, "")
            m.builds_failed += 1

    def _feedback(self, e: Feedback) -> None:
        m = self._metrics(e.tool, e.fingerprint)
        if e.solved:
            m.solved += 1
        else:
            m.failed += 1
        self._serve(e.tool, e.fingerprint, e.task, 1 if e.solved else -1)

    def _serve(self, tool: str, fp: str, task: str, delta: int) -> None:
        tasks = self.state.served.setdefault(_key(tool, fp), {})
        tasks[task] = tasks.get(task, 0) + delta

    def _retrieved(self, e: Retrieved) -> None:
        """A search (candidates), a caller's choice for a query (choice), or both at once. Each query keeps the
        order of its newest search and newest choice (maxima: any order of application gives the same state)."""
        order = (e.at, e.writer, e.seq)
        search = self.state.searches.setdefault(task_key(e.query), Search())
        if e.candidates:
            self.state.retrievals += 1
            for rank, version in enumerate(e.candidates):
                m = self._metrics(*split_key(version))
                m.retrieved += 1
                m.retrieved_first += rank == 0
            search.order = max(search.order, order)
            search.text = e.query
        if e.choice:
            self._metrics(*split_key(e.choice)).chosen += 1
            search.chosen = max(search.chosen, order)

    def _committed(self, e: VersionCommitted) -> None:
        if self._once(e.id):
            self.state.commits[e.tool] = self.state.commits.get(e.tool, 0) + 1

    def _author(self, e: AuthorAttempt) -> None:
        c = self.state.costs.get(e.tool)
        if c is None:
            c = self.state.costs[e.tool] = ToolCost(by_kind={})
        c.attempts += 1
        c.green += e.stage == "green"
        c.prompt_tokens += e.prompt_tokens
        c.completion_tokens += e.completion_tokens
        c.ms += round(e.seconds * 1000)
        c.by_kind[e.kind] = c.by_kind.get(e.kind, 0) + 1

    def _model_called(self, e: ModelCalled) -> None:
        m = self.state.models.get(e.model)
        if m is None:
            m = self.state.models[e.model] = ModelCost(by_purpose={})
        m.calls += 1
        m.failed += e.outcome != "ok"
        m.prompt_tokens += e.prompt_tokens
        m.completion_tokens += e.completion_tokens
        m.latency_ms += round(e.latency_ms)
        m.by_purpose[e.purpose] = m.by_purpose.get(e.purpose, 0) + 1


    def _solved(self, e: Solved) -> None:
        s = self.state.solving
        s.solves += 1
        s.answered += e.outcome == "answered"
        s.by_outcome[e.outcome] = s.by_outcome.get(e.outcome, 0) + 1
        s.prompt_tokens += e.prompt_tokens
        s.completion_tokens += e.completion_tokens
        s.author_tokens += e.author_tokens
        if e.outcome != "answered" or not e.served_by:
            s.unserved += 1
        elif e.served_by in e.written:
            s.written += 1
        else:
            s.fast_path += e.fast_path
            s.model_run += not e.fast_path
            s.reuse_tokens += e.prompt_tokens + e.completion_tokens
            tool = split_key(e.served_by)[0]
            s.reused[tool] = s.reused.get(tool, 0) + 1


class EmbeddingProjector(_Projection[EmbeddingState]):
    """The newest embedding of every version and task, per model."""

    def __init__(self, state: EmbeddingState | None = None, trust: Trust | None = None):
        self.trust = trust
        self.state = state or EmbeddingState(format=FORMAT, trusted=trust.key() if trust else None)
        self._apply = {kind: _ignore for kind in (ToolRun, BuildSucceeded, BuildFailed, Feedback, Retrieved,
                                                  VersionCommitted, AuthorAttempt, ModelCalled, Solved)}
        self._apply[Embedded] = self._embedded

    def reset(self) -> None:
        self.state = EmbeddingState(format=FORMAT, trusted=self.trust.key() if self.trust else None)
        self.applied += 1

    def _embedded(self, e: Embedded) -> None:
        order = (e.at, e.writer, e.seq)
        if not e.tool:  # a task's text (what a tool solved or failed), not a version's description
            by_task = self.state.tasks.setdefault(e.model, {})
            key = task_key(e.text)
            old = by_task.get(key)
            if old is None or tuple(old.order) < order:
                by_task[key] = TaskVector(order, array("f", e.vector).tobytes())
            return
        by_version = self.state.vectors.setdefault(e.model, {})
        key = _key(e.tool, e.fingerprint)
        current = by_version.get(key)
        if current is None or tuple(current.order) < order:
            by_version[key] = Vector(order, e.text, e.vector)


_encoder = msgspec.msgpack.Encoder(order="sorted")


def snapshot(state: State | EmbeddingState) -> bytes:
    """Canonical bytes of a state: equal states give equal bytes."""
    return _encoder.encode(state)


def load(path: Path, kind: type[S]) -> S | None:
    """A snapshot, or None if there is none, it is of another FORMAT, or it is damaged (reported)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        warn(f"{path} was unreadable ({e.strerror}): rebuilt from the log")
        return None
    try:
        state = msgspec.msgpack.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError):
        if _format_of(data) not in (None, FORMAT):
            return None  # written by another version of the projections: rebuilt, nothing to report
        warn(f"{path} was unreadable: rebuilt from the log")
        return None
    return state if state.format == FORMAT else None


def _format_of(data: bytes) -> int | None:
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        return None
    value = raw.get("format") if isinstance(raw, dict) else None
    return value if isinstance(value, int) else None


#: A process that keeps applying events (a server's workers, one run after another) saves its snapshot at most this
#: often (the first time at once); what is applied in between is saved by the next due save or by LocalState.close.
#: The log is the truth: a snapshot saved late only means more events to read on the next open.
SAVE_INTERVAL = 1.0
SKIPPED_BEFORE_SAVE = 10_000  # irrelevant events re-read at most (~20 ms) rather than rewriting a big snapshot


def refresh(projector: _Projection[Any], log: EventLog, path: Path, save: bool = False) -> None:
    """Catch a projection up with the log; save its snapshot if anything was applied, or if enough irrelevant
    events were passed over since the last save (or if `save`). A projection that reflects more of a log than
    is there, or other bytes, is rebuilt from zero first (reported once: the rebuilt snapshot is saved)."""
    state = projector.state
    if bad := log.mismatched(state.position, state.marks):
        why = "; ".join(f"{writer}.log {reason}" for writer, reason in sorted(bad.items()))
        warn(f"{path} reflected events the log no longer holds ({why}): rebuilt from the log")
        projector.reset()
        save = True
    before = dict(projector.state.position)
    applied = projector.catch_up(log)
    state = projector.state
    moved = {w: p for w, p in state.position.items() if before.get(w) != p}
    if moved:
        state.marks = {**state.marks, **log.marks(moved)}
    projector.unsaved += applied
    due = projector.unsaved and time.monotonic() - projector.saved_at >= SAVE_INTERVAL
    if due or projector.skipped >= SKIPPED_BEFORE_SAVE or save:
        save_snapshot(projector, path)


def save_snapshot(projector: _Projection[Any], path: Path) -> None:
    write_atomic(path, snapshot(projector.state))
    projector.skipped = projector.unsaved = 0
    projector.saved_at = time.monotonic()


def _opened(projector: _Projection[Any], log: EventLog, path: Path, loaded: bool) -> None:
    """Catch a loaded projection up; one that applied another set of writers' events starts again (trust
    changed: `evogit.trustWriter`)."""
    trust = projector.trust
    if loaded and projector.state.trusted != (trust.key() if trust else None):
        projector.reset()
        loaded = False
    refresh(projector, log, path, save=not loaded)


def open_projections(log: EventLog, path: Path, trust: Trust | None = None) -> Projector:
    """Load the snapshot (if any) and catch up with the log; save the snapshot if anything was applied."""
    state = load(path, State)
    projector = Projector(state, trust)
    _opened(projector, log, path, state is not None)
    return projector


def open_embeddings(log: EventLog, path: Path, trust: Trust | None = None) -> EmbeddingProjector:
    """The same for the embeddings, which only a search needs."""
    state = load(path, EmbeddingState)
    projector = EmbeddingProjector(state, trust)
    _opened(projector, log, path, state is not None)
    return projector


def replay(log: EventLog, path: Path | None = None, trust: Trust | None = None) -> Projector:
    """Rebuild the metrics from position 0 (and replace the snapshot)."""
    projector = Projector(trust=trust)
    projector.catch_up(log)
    if path is not None:
        projector.state.marks = log.marks(projector.state.position)
        write_atomic(path, snapshot(projector.state))
    return projector


def replay_all(log: EventLog, path: Path, embeddings_path: Path,
               trust: Trust | None = None) -> tuple[Projector, EmbeddingProjector]:
    """Rebuild both projections from position 0 in one pass over the log (and replace their snapshots)."""
    metrics, embeddings = Projector(trust=trust), EmbeddingProjector(trust=trust)
    for writer, end, events in log.chunks({}):
        metrics.apply(writer, end, events)
        embeddings.apply(writer, end, events)
    metrics.state.marks = embeddings.state.marks = log.marks(metrics.state.position)
    write_atomic(path, snapshot(metrics.state))
    write_atomic(embeddings_path, snapshot(embeddings.state))
    return metrics, embeddings
