"""Everything that happens to a skill library, as immutable events: one tagged union, encoded in one place.

Every event has a stable `id` (deterministic where one fact can be recorded twice, e.g. a build), the
`writer` that recorded it, the writer's `seq`uence number and `at` (ns since the epoch on the writer's
clock), and a schema version `v`. Old versions are upcast on read (`UPCASTERS`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec


class Event(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True, gc=False):
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


AnyEvent = VersionCommitted | BuildSucceeded | BuildFailed | ToolRun | Feedback | Embedded | Retrieved
CURRENT_VERSION = 1
#: (type tag, version) -> function turning a raw dict of that version into the next version's dict.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyEvent)


def encode(event: AnyEvent) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes | memoryview) -> AnyEvent:
    """Decode one event, upcasting it if it was written by an older schema version."""
    try:
        event = _decoder.decode(data)
        if event.v == CURRENT_VERSION:
            return event
    except msgspec.ValidationError:
        pass
    raw = msgspec.msgpack.decode(data)
    if not isinstance(raw, dict):
        raise msgspec.ValidationError(f"not an event: a msgpack {type(raw).__name__}")
    while (step := UPCASTERS.get((raw.get("type", ""), raw.get("v", 1)))) is not None:
        raw = step(raw)
    return msgspec.convert(raw, AnyEvent)


def fact_id(*parts: str) -> str:
    """A deterministic id for a fact that may be recorded more than once (or on several machines)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
