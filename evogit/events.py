"""Everything that happens to a skill library, as immutable events: one tagged union, encoded in one place.

Every event has a stable `id` (deterministic where one fact can be recorded twice, e.g. a build), the
`writer` that recorded it, the writer's `seq`uence number and `at` (ns since the epoch on the writer's
clock), and a schema version `v`: each type has its own (`VERSION`, a class attribute; a missing `v` means 1).
Old versions are upcast on read, step by step, by `UPCASTERS[(type tag, version)]`.

Forward compatible: an event this version cannot read, because its type is newer than this code or its
version is newer and no longer decodes, comes back as an `UnknownEvent` (type, version, id, at, writer, seq
and the original bytes) instead of an error, so a log from a newer writer never stops an older reader;
readers that dispatch on type pass it over, and `encode` gives its bytes back unchanged.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec


def version_key(tool: str, fingerprint: str) -> str:
    """A version's one name, in events and results alike: `tool@fingerprint` (the whole sha256)."""
    return f"{tool}@{fingerprint}"


def short_key(key: str) -> str:
    """`tool@<7 hex>`, how people read a version key (a key without "@" as it is)."""
    tool, fingerprint = split_key(key)
    return f"{tool}@{fingerprint[:7]}" if fingerprint else key


def split_key(key: str) -> tuple[str, str]:
    """`tool@fingerprint` → (tool, fingerprint); a key without "@" is all tool."""
    tool, _, fingerprint = key.rpartition("@")
    return (tool, fingerprint) if tool else (key, "")


class Event(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True, gc=False):
    #: This type's current schema version. Bump it together with an upcaster from the previous version; the
    #: default of `v` stays 1 for ever (records of version 1 omit it), so `encode` stamps newer versions.
    VERSION: ClassVar[int] = 1
    id: str = ""
    at: int = 0
    writer: str = ""
    seq: int = 0
    v: int = 1


class VersionCommitted(Event, tag="version_committed"):
    tool: str
    commit: str
    message: str = ""
    parent: str | None = None


class BuildSucceeded(Event, tag="build_succeeded"):
    tool: str
    commit: str
    fingerprint: str
    unit_tests: int = 0
    cases: int = 0


class BuildFailed(Event, tag="build_failed"):
    tool: str
    commit: str
    stage: str
    message: str


class ToolRun(Event, tag="tool_run"):
    tool: str
    fingerprint: str
    input_sha256: str
    ok: bool
    error: str | None = None
    exit_code: int | None = None
    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    fuel: int = 0
    output_bytes: int = 0
    task: str | None = None


class Feedback(Event, tag="feedback"):
    tool: str
    fingerprint: str
    task: str
    solved: bool
    note: str = ""


class Embedded(Event, tag="embedded"):
    tool: str
    fingerprint: str
    model: str
    text: str
    vector: list[float]


class Retrieved(Event, tag="retrieved"):
    query: str
    model: str
    candidates: list[str]
    choice: str | None = None


class ModelCalled(Event, tag="model_called"):
    """One call to a model, after the client's own retries: what it was for, which model, tokens, time and
    outcome. Never the prompt, the reply or the key."""

    purpose: str
    model: str
    outcome: str  # "ok", or the error kind: timeout, rate_limited, server_error, bad_response, ...
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 1  # HTTP requests sent for this call, the client's retries included
    mode: str = ""  # the reply format asked for (json_schema, json_object, text); "" for a plain chat
    tool: str = ""  # the tool being written or used, when the caller says
    round: int | None = None  # the authoring round (1 = first attempt), when the caller says


class AuthorAttempt(Event, tag="author_attempt"):
    """One round of writing a tool with a model (create, mutate, teach): how far its files got. A green
    attempt names the version it became; a red one the stage and error kind. Never the files or the prompt."""

    kind: str  # create, mutate, teach
    tool: str  # the tool's name ("" when the model had not named it yet)
    round: int  # 1 = the first attempt, 2.. = repair rounds
    stage: str  # model, reply, package, compile, unit_tests, cases, commit, green
    task: str
    model: str = ""
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    parent: str = ""  # name@fingerprint of the version mutated
    fingerprint: str = ""  # of the green version
    model_seconds: float = 0.0  # of `seconds`, waiting for the model (the rest is reading, building, testing)


class Solved(Event, tag="solved"):
    """One task solved (or not) by `evogit solve`: which version served it, whether a model was asked, and what
    the solve's own model calls cost (tools written inside it are `AuthorAttempt`s of their own). Never the
    input, the answer or the prompt."""

    task: str
    outcome: str  # answered, no_model, step_limit, model_error, failed
    served_by: str = ""  # name@fingerprint of the version whose run answered
    fast_path: bool = False  # served without a model
    model_used: bool = False
    steps: int = 0  # model calls
    prompt_tokens: int = 0
    completion_tokens: int = 0
    author_tokens: int = 0  # tokens of the tools created or mutated inside the solve
    written: list[str] = []  # versions created or mutated inside the solve (name@fingerprint)
    confidence: float = 0.0  # the fast-path decision's, for its top candidate


class UnknownEvent(msgspec.Struct, kw_only=True, gc=False):
    """An event this version cannot read (a newer writer's type, or a newer version that no longer decodes):
    kept whole, with what every event has, and skipped by readers that do not know it."""

    type: str
    v: int = 1
    id: str = ""
    at: int = 0
    writer: str = ""
    seq: int = 0
    raw: bytes = b""  # the record as written; `encode` returns it unchanged


KnownEvent = (VersionCommitted | BuildSucceeded | BuildFailed | ToolRun | Feedback | Embedded | Retrieved | ModelCalled
              | AuthorAttempt | Solved)
AnyEvent = KnownEvent | UnknownEvent
KNOWN: tuple[type[Event], ...] = (VersionCommitted, BuildSucceeded, BuildFailed, ToolRun, Feedback, Embedded,
                                  Retrieved, ModelCalled, AuthorAttempt, Solved)
_BY_TAG: dict[str, type[Event]] = {str(cls.__struct_config__.tag): cls for cls in KNOWN}
#: type tag -> the current schema version of that type.
VERSIONS: dict[str, int] = {tag: cls.VERSION for tag, cls in _BY_TAG.items()}
#: (type tag, version) -> function turning a raw dict of that version into the next version's dict.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(KnownEvent)


def encode(event: AnyEvent) -> bytes:
    """The record of an event; a new event is stamped with its type's current schema version first."""
    if isinstance(event, UnknownEvent):
        return event.raw
    if event.v < event.VERSION:
        event.v = event.VERSION
    return _encoder.encode(event)


def decode(data: bytes | memoryview) -> AnyEvent:
    """Decode one event, upcasting it if an older schema version wrote it; an event of a type or a version
    this code cannot read comes back as an `UnknownEvent`. Raises only for a record that is no event at all."""
    try:
        event = _decoder.decode(data)
        if event.v == event.VERSION:
            return event
    except msgspec.ValidationError:
        pass
    raw = msgspec.msgpack.decode(data)
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise msgspec.ValidationError(f"not an event: a msgpack {type(raw).__name__} without a type")
    cls = _BY_TAG.get(raw["type"])
    if cls is None or not isinstance(raw.get("v", 1), int):
        return _unknown(raw, data)
    while (step := UPCASTERS.get((raw["type"], raw.get("v", 1)))) is not None:
        raw = step(raw)
    version = raw.get("v", 1)
    if version < cls.VERSION:
        raise msgspec.ValidationError(f"no upcaster for {raw['type']} version {version}")
    try:
        return msgspec.convert(raw, cls)  # type: ignore[return-value]  # cls is one of KnownEvent's members
    except msgspec.ValidationError:
        if version > cls.VERSION:  # a newer writer changed it beyond what this code can read
            return _unknown(raw, data)
        raise


def _unknown(raw: dict[str, Any], data: bytes | memoryview) -> UnknownEvent:
    def get(key: str, kind: type, default: Any) -> Any:
        value = raw.get(key, default)
        return value if isinstance(value, kind) else default

    return UnknownEvent(type=raw["type"], v=get("v", int, 1), id=get("id", str, ""), at=get("at", int, 0),
                        writer=get("writer", str, ""), seq=get("seq", int, 0), raw=bytes(data))


def fact_id(*parts: str) -> str:
    """A deterministic id for a fact that may be recorded more than once (or on several machines)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


MAX_COUNT = 2**53  # an int of one event (tokens, fuel, bytes, ns since the epoch: 2^63) past this is no measurement
MAX_AMOUNT = 1e12  # a float of one event (ms, seconds: 31 years in ms) past this, likewise
MAX_VECTOR = 8192  # dimensions of one embedding
_RANGES = {"at": (0, 2**63), "exit_code": (-2**31, 2**31)}  # ns since the epoch; a process's exit status


def problem(event: AnyEvent) -> str | None:
    """Why an event from another writer cannot be applied (None: it can). Each int and float field is a finite,
    non-negative measurement in range; an embedding is finite numbers; a version is named `tool@fingerprint`.
    One event of another machine must never be able to take a command down (a `wall_ms` of infinity did)."""
    if isinstance(event, UnknownEvent):
        return None
    for name in event.__struct_fields__:
        value = getattr(event, name)
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int):
            low, high = _RANGES.get(name, (0, MAX_COUNT))
            if not low <= value < high:
                return f"{name} = {value} is out of range"
        elif isinstance(value, float) and not (math.isfinite(value) and 0 <= value <= MAX_AMOUNT):
            return f"{name} = {value} is out of range"
    if isinstance(event, Embedded):
        if not 0 < len(event.vector) <= MAX_VECTOR or not all(math.isfinite(x) for x in event.vector):
            return f"an embedding of {len(event.vector)} dimensions, or with numbers that are not finite"
    elif isinstance(event, Retrieved):
        if any("@" not in v for v in [*event.candidates, *([event.choice] if event.choice else [])]):
            return "a retrieved version is not named tool@fingerprint"
    elif isinstance(event, Solved) and not 0 <= event.confidence <= 1:
        return f"confidence = {event.confidence} is not a probability"
    return None
