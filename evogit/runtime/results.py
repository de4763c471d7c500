"""What the runtime's operations return: typed values that the CLI formats and a model or MCP client reads as
JSON (`msgspec.to_builtins`), so their shape is defined here once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from ..build import BuildRecord
from ..repo import Version


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

    def to_json(self) -> dict[str, Any]:
        return {"tool": self.tool, "commit": self.commit, "ok": self.ok,
                "version": self.version.short if self.version else None,
                "fingerprint": self.version.fingerprint if self.version else None,
                "error": None if self.ok else (self.record.summary() if self.record else self.error)}


@dataclass
class ToolSummary:
    """One tool in `list`: its newest green version and the state of its branch head."""

    name: str
    description: str
    latest: Version | None
    versions: int
    head: str
    head_status: str  # green, failed or unbuilt

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.latest.short if self.latest else None,
                "fingerprint": self.latest.fingerprint if self.latest else None, "versions": self.versions,
                "head": self.head, "head_status": self.head_status, "description": self.description}


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
    metrics: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out
