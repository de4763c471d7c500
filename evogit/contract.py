"""The tool contract (design §3), in one place for builds and runs alike.

A tool reads one JSON document on stdin and writes one on stdout; exit 0 is success and its output must
match `output_schema`; a failure exits non-zero, ideally with `{"error": "..."}`. Input is checked against
`input_schema` before a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from .manifest import ToolManifest
from .sandbox import RunResult


@dataclass
class RunOutcome:
    """One run of a tool version: its output or the kind of failure, and what it cost."""

    tool: str
    fingerprint: str
    ok: bool
    output: Any = None
    error: str | None = None
    detail: str = ""
    exit_code: int | None = None
    wall_ms: float = 0.0
    fuel: int = 0
    stderr: str = ""

    def envelope(self) -> dict[str, Any]:
        return {"ok": self.ok, "output": self.output,
                "error": None if self.ok else {"kind": self.error, "message": self.detail},
                "tool": self.tool, "fingerprint": self.fingerprint, "wall_ms": round(self.wall_ms, 3),
                "fuel": self.fuel}


def _problem(validator: jsonschema.Draft202012Validator, value: Any) -> str | None:
    if validator.is_valid(value):  # the fast path; best_match only when there is something to explain
        return None
    err = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if err is None:
        return "invalid"
    where = "/".join(str(p) for p in err.absolute_path)
    return f"{where + ': ' if where else ''}{err.message}"


class Contract:
    """A manifest's schemas, compiled once."""

    def __init__(self, manifest: ToolManifest):
        self.input = jsonschema.Draft202012Validator(manifest.input_schema)
        self.output = jsonschema.Draft202012Validator(manifest.output_schema)

    def input_problem(self, value: Any) -> str | None:
        return _problem(self.input, value)

    def output_problem(self, value: Any) -> str | None:
        return _problem(self.output, value)


def interpret(outcome: RunOutcome, result: RunResult, contract: Contract | None = None) -> RunOutcome:
    """Fill `outcome` from a sandbox result: parse stdout, name the failure, check the output schema."""
    outcome.exit_code, outcome.wall_ms, outcome.fuel = result.exit_code, result.wall_ms, result.fuel
    outcome.stderr = result.stderr.decode("utf-8", "replace")
    try:
        outcome.output = json.loads(result.stdout) if result.stdout.strip() else None
    except ValueError:
        outcome.output = None
        if result.ok:
            outcome.error, outcome.detail = "invalid_output", "output is not one JSON document"
            return outcome
    if not result.ok:
        outcome.error, outcome.detail = result.error, result.detail
        message = outcome.output.get("error") if isinstance(outcome.output, dict) else None
        if result.error == "exit_code" and isinstance(message, str):
            outcome.detail = f"exit {result.exit_code}: {message}"
        return outcome
    if outcome.output is None:
        outcome.error, outcome.detail = "invalid_output", "no output"
    elif contract is not None and (problem := contract.output_problem(outcome.output)):
        outcome.error, outcome.detail = "invalid_output", f"output breaks output_schema: {problem}"
    else:
        outcome.ok = True
    return outcome
