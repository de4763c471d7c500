"""The tool contract (design §3), in one place for builds and runs alike.

A tool reads one JSON document on stdin and writes one on stdout; exit 0 is success and its output must
match `output_schema`; a failure exits non-zero, ideally with `{"error": "..."}`. Input is checked against
`input_schema` before a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import fastjsonschema

from . import schemas
from .errors import InvalidJSON
from .jsonio import decode
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



#: Keywords that mean the same in draft 2020-12 (jsonschema) and draft-07 (fastjsonschema). A schema that uses
#: only these gets a compiled fast path; anything else (format, list-form items, $ref, ...) uses jsonschema alone,
#: and so does `pattern`: fastjsonschema evaluates it with Python's backtracking `re`, evogit with RE2 (schemas.py).
_PORTABLE = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "minItems",
    "maxItems", "uniqueItems", "minProperties", "maxProperties", "anyOf", "oneOf", "allOf", "not",
    "description", "title", "default", "examples", "$schema", "$comment",
})
_SUBSCHEMA_MAPS = ("properties",)
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf")
_SUBSCHEMAS = ("additionalProperties", "items", "not")


def _portable(schema: Any) -> bool:
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict) or not set(schema) <= _PORTABLE:
        return False
    if isinstance(schema.get("items"), list):  # tuple form means different things in the two drafts
        return False
    return (all(_portable(s) for key in _SUBSCHEMA_MAPS for s in schema.get(key, {}).values())
            and all(_portable(s) for key in _SUBSCHEMA_LISTS for s in schema.get(key, []))
            and all(_portable(schema[key]) for key in _SUBSCHEMAS if key in schema))


class _Checker:
    """jsonschema for the verdict's explanation; a compiled fastjsonschema check first when it is portable."""

    def __init__(self, schema: dict[str, Any]):
        self.schema = schema
        self.fast: Callable[[Any], Any] | None = None
        if _portable(schema):
            try:
                self.fast = fastjsonschema.compile(schema, use_default=False, use_formats=False)
            except (fastjsonschema.JsonSchemaDefinitionException, SyntaxError, RecursionError):
                self.fast = None  # a nested schema's generated code can be too deep for Python's compiler

    @cached_property
    def validator(self) -> Any:
        return schemas.validator(self.schema)

    def problem(self, value: Any) -> str | None:
        from referencing.exceptions import Unresolvable

        try:
            return self._problem(value)
        except RecursionError:  # a recursive schema over a deep value: jsonio.MAX_DEPTH keeps values far from it
            return "too deeply nested to check against the schema"
        except Unresolvable as e:  # a reference outside the schema, in a version built before they were refused
            return f"the schema refers to {str(getattr(e, 'ref', '') or e)[:80]!r}, outside itself: never resolved"

    def _problem(self, value: Any) -> str | None:
        if self.fast is not None:
            try:
                self.fast(value)
                return None
            except fastjsonschema.JsonSchemaValueException:
                pass  # confirm and explain with jsonschema, the reference
        elif self.validator.is_valid(value):
            return None
        import jsonschema  # only to explain a verdict (and for schemas fastjsonschema cannot take): off the fast path

        err = jsonschema.exceptions.best_match(self.validator.iter_errors(value))
        if err is None:
            return None
        where = "/".join(str(p) for p in err.absolute_path)
        return f"{where + ': ' if where else ''}{err.message}"


def checker(schema: Any) -> Callable[[Any], str | None] | None:
    """What is wrong with a value under `schema` (None: nothing), as a function; None if `schema` is not a
    schema that can check anything."""
    import jsonschema

    if not isinstance(schema, (dict, bool)):
        return None
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except (jsonschema.exceptions.SchemaError, RecursionError):
        return None
    if schemas.problem(schema) is not None:
        return None
    return _Checker(schema).problem  # type: ignore[arg-type]


class Contract:
    """A manifest's schemas, compiled once."""

    def __init__(self, manifest: ToolManifest):
        self.input = _Checker(manifest.input_schema)
        self.output = _Checker(manifest.output_schema)

    def input_problem(self, value: Any) -> str | None:
        return self.input.problem(value)

    def output_problem(self, value: Any) -> str | None:
        return self.output.problem(value)


def interpret(outcome: RunOutcome, result: RunResult, contract: Contract | None = None) -> RunOutcome:
    """Fill `outcome` from a sandbox result: parse stdout, name the failure, check the output schema."""
    outcome.exit_code, outcome.wall_ms, outcome.fuel = result.exit_code, result.wall_ms, result.fuel
    outcome.stderr = result.stderr.decode("utf-8", "replace")
    try:
        outcome.output = decode(result.stdout, what="output") if result.stdout.strip() else None
    except InvalidJSON as e:
        outcome.output = None
        if result.ok:
            outcome.error, outcome.detail = "invalid_output", str(e)
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
