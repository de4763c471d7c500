"""Reading a model's reply as the one JSON object it was asked for, however the server delivered it.

A server that enforces the schema replies with the object alone; one that only promises JSON, or nothing,
may wrap it in a fenced ```json block or put prose around it. All three are read; anything else is not JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from .. import jsonio
from ..errors import InvalidJSON

_FENCE = re.compile(r"```[ \t]*[A-Za-z]*[ \t]*\n(.*?)```", re.S)


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in `text`: all of it, else the first fenced block that is one, else the longest non-empty
    object that parses inside prose (not the `{ }` of code quoted around it); None if there is none. Strict, as
    everything evogit reads (jsonio): a reply with NaN, or nested deeper than jsonio.MAX_DEPTH, is no object."""
    text = text.strip()
    for candidate in [text, *(m.group(1) for m in _FENCE.finditer(text))]:
        try:
            value = jsonio.decode(candidate, what="the reply")
        except InvalidJSON:
            continue
        if isinstance(value, dict):
            return value
    if jsonio.too_deep(text.encode("utf-8", "surrogatepass")):
        return None  # the prose search below would recurse as deep as the brackets go
    decoder, best, end = json.JSONDecoder(parse_constant=_no_constant), None, 0
    for brace in re.finditer(r"\{", text):
        if brace.start() < end:
            continue  # inside an object already read
        try:
            value, stop = decoder.raw_decode(text, brace.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict) and value and (best is None or stop - brace.start() > best[0]):
            best = (stop - brace.start(), value)
        end = stop
    return best[1] if best else None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def schema_error(value: Any, schema: dict[str, Any]) -> str | None:
    """Why `value` breaks `schema` (the most relevant error, one line), or None if it matches."""
    error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message[:200]}" + (f" at /{where}" if where else "")
