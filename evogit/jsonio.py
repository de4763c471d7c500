"""Strict, bounded JSON (RFC 8259): how evogit reads every document a tool, a user or a package gives it, and
how it writes the JSON it prints.

Decoding is msgspec's, which refuses what RFC 8259 does not allow and Python's `json` lets through: `NaN`,
`Infinity`, numbers beyond a double, invalid UTF-8 and lone surrogates, control characters in strings. It reads
bytes without making a str copy of them. Before decoding, nesting deeper than MAX_DEPTH is refused by a
pre-scan of the brackets outside strings (callers refuse documents over their size limit unread). Deeper
documents would end in a RecursionError somewhere: msgspec, jsonschema and `json.dumps` recurse once (or more)
per level on the stack. On 4 MB the pre-scan takes a third of msgspec's decoding time for records, a tenth for
numbers, but 13–15 ms beside 2–4 ms for one long string full of escaped quotes (scripts/bench_json.py);
a document with fewer bytes than the limit is not scanned at all.
Encoding refuses NaN and Infinity.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import msgspec

from .errors import InvalidJSON

#: The deepest nesting of arrays and objects evogit reads: serde_json's own limit, so a tool could not have
#: read a deeper input anyway; everything that recurses over a value stays far from Python's stack limit.
MAX_DEPTH = 128

_OTHERS = bytes(c for c in range(256) if c not in b'"[]{}')  # deleted by the pre-scan: all but quotes, brackets
_STRING = re.compile(rb'"[^"]*"')
_SQUARE = bytes.maketrans(b"{}", b"[]")
_STEP = [0] * 256
_STEP[ord("[")], _STEP[ord("]")] = 1, -1
_PEEL = 8  # innermost levels removed by bytes.replace before counting the rest one bracket at a time


def too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """True if a JSON document nests arrays and objects deeper than `limit`, brackets inside strings not
    counted. Exact for valid JSON; for invalid JSON it may err either way (the decoder then refuses it)."""
    if len(data) <= limit:  # fewer bytes than opening brackets it would take
        return False
    if b'\\"' in data:  # a quote after a backslash may be escaped: blank escaped backslashes, then escaped quotes
        data = data.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    s = data.translate(None, _OTHERS)
    if b'"' in s:
        # Two adjacent quotes enclose no bracket (an empty string, or the gap between two strings): drop them.
        # What is left between quotes is a string's brackets.
        s = s.replace(b'""', b"")
        if b'"' in s:
            s = _STRING.sub(b"", s)
    s = s.translate(_SQUARE)
    if s.count(b"[") <= limit:
        return False
    peel = min(_PEEL, limit)
    for _ in range(peel):  # each pass removes the innermost level: cheap while most containers are shallow
        inner = s.replace(b"[]", b"")
        if not inner or len(inner) == len(s):
            return False  # emptied (so no deeper than the passes so far), or unbalanced: left to the decoder
        s = inner
    # the running depth of what is left, stopping at the first level past the limit
    return any(map((limit - peel).__lt__, itertools.accumulate(map(_STEP.__getitem__, s))))


def decode(data: bytes | str, *, what: str = "document", type: Any = Any) -> Any:
    """Decode one strict JSON document (into `type`, a msgspec type, if given); raise InvalidJSON saying what
    is wrong with `what` (e.g. "input", "output", "tool.json")."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8, refused below
    if not data or data.isspace():  # isspace stops at the first other byte: no copy of a big document
        raise InvalidJSON(f"{what} is empty: it must be one JSON document")
    if too_deep(data):
        raise InvalidJSON(f"{what} nests arrays or objects deeper than {MAX_DEPTH} levels")
    try:
        return msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as e:
        raise InvalidJSON(f"{what} is not valid JSON: {e}" if type is Any else f"{what}: {e}") from None
    except msgspec.DecodeError as e:
        raise InvalidJSON(f"{what} is not valid JSON: {e}") from None
    except RecursionError:  # unbalanced brackets the pre-scan could not measure, on an already deep stack
        raise InvalidJSON(f"{what} nests arrays or objects deeper than {MAX_DEPTH} levels") from None


def encode(value: Any, *, indent: int | None = None, sort_keys: bool = False,
           default: Callable[[Any], Any] | None = None) -> str:
    """Strict JSON text (NaN and Infinity raise ValueError), non-ASCII characters kept as they are."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=indent, sort_keys=sort_keys,
                      default=default)
