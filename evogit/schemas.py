"""JSON Schemas as evogit evaluates them: on the host, so never reaching the network and never taking long.

A tool's schemas are checked on the host (the input before a run, the output after), outside the sandbox and
its time limit, so two things a schema can ask for are ruled out:

- **Documents elsewhere.** A `$ref` (or `$dynamicRef`) must point inside the schema (`#...`); anything else is
  refused when the package is checked, and never resolved (`problem`).
- **Backtracking.** `pattern` and `patternProperties` are evaluated by RE2 (google-re2), whose time is linear in
  the text: `^(\\w+\\s?)*$` on a sentence ending in "!" took Python's `re` over a minute. A pattern RE2 cannot
  compile (look-around, back-references) is refused when the package is checked; in a version built before this
  check it fails every value (`search`), reported as such.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a model's bad pattern is our error message, not a line from RE2 on stderr
_REFS = ("$ref", "$dynamicRef")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMAS = ("additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames",
               "unevaluatedItems", "unevaluatedProperties", "additionalItems")


@functools.lru_cache(maxsize=1024)
def compiled(pattern: str) -> Any:
    """The RE2 program of a pattern; raises ValueError (RE2's reason) if RE2 cannot take it."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(reason) from None


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches somewhere in `text`, in linear time (False if RE2 cannot take the pattern)."""
    try:
        return compiled(pattern).search(text) is not None
    except ValueError:
        return False


def _walk(schema: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    if not isinstance(schema, dict) or depth > 200:
        return
    yield schema
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            for sub in schema[key].values():
                yield from _walk(sub, depth + 1)
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            for sub in schema[key]:
                yield from _walk(sub, depth + 1)
    for key in _SUBSCHEMAS:
        yield from _walk(schema.get(key), depth + 1)


def problem(schema: Any) -> str | None:
    """Why evogit will not evaluate a schema (a reference outside it, a pattern RE2 cannot take), or None."""
    for node in _walk(schema):
        for key in _REFS:
            ref = node.get(key)
            if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
                return (f"{key} {str(ref)[:80]!r} points outside the schema; only references inside it (#/...) are "
                        "resolved, never a URL or a file")
        patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns += [k for k in node["patternProperties"] if isinstance(k, str)]
        for pattern in patterns:
            try:
                compiled(pattern)
            except ValueError as e:
                return (f"the pattern {pattern[:80]!r} is not supported ({e}): patterns are evaluated in linear "
                        "time (RE2), without look-around or back-references")
    return None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, properties: dict[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in properties.items():
        for key, value in instance.items():
            if search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


@functools.cache
def validator_class() -> Any:
    """Draft 2020-12 with RE2 for `pattern` and `patternProperties`, and no retrieval of any other document."""
    import jsonschema
    from jsonschema.validators import extend

    return extend(jsonschema.Draft202012Validator,
                  validators={"pattern": _pattern, "patternProperties": _pattern_properties})


def validator(schema: Any) -> Any:
    """A validator for a schema, whose references resolve only inside it: an empty registry retrieves nothing
    (jsonschema's default one would fetch a URL)."""
    from referencing import Registry

    return validator_class()(schema, registry=Registry())
