"""Reading a model's reply as the one JSON object it was asked for, however the server delivered it, and
reading the function calls a model wrote as text when the server did not parse them (`text_tool_calls`).

A server that enforces the schema replies with the object alone; one that only promises JSON, or nothing,
may wrap it in a fenced ```json block or put prose around it. All three are read; anything else is not JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, NamedTuple

import jsonschema

from .. import jsonio
from ..errors import InvalidJSON

if TYPE_CHECKING:
    from .client import ToolCall

MAX_MISSES = 256  # braces in prose that open no object, tried before the search gives up
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
    decoder, best, end, misses = json.JSONDecoder(parse_constant=_no_constant), None, 0, 0
    for brace in re.finditer(r"\{", text):
        if brace.start() < end:
            continue  # inside an object already read
        try:
            value, stop = decoder.raw_decode(text, brace.start())
        except (ValueError, RecursionError):
            misses += 1  # each miss costs a pass over the text (the error counts lines): a bound, not n squared
            if misses > MAX_MISSES:
                break
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


# -- function calls written as text ----------------------------------------------------------------------------------
#: The longest reply searched for calls written as text; a longer one is not read as calls (only said to be one).
MAX_TEXT_CALLS_CHARS = 64_000
#: The most calls read from one reply (the solve loop carries out fewer still).
MAX_TEXT_CALLS = 32

_TAG = re.compile(r"<\s*/?\s*tool_call\s*>", re.I)
_OPEN = re.compile(r"<\s*tool_call\s*>", re.I)
_CLOSE = re.compile(r"<\s*/\s*tool_call\s*>", re.I)
_NAME_KEY = re.compile(r'"name"\s*:\s*"')
_ARGS_KEY = re.compile(r'"(?:arguments|parameters)"\s*:')
_CALL_KEYS = {"name", "arguments", "parameters", "type", "id"}


class TextCalls(NamedTuple):
    """The calls a reply wrote as text (as `ToolCall`s with synthetic ids), and, when it looks like an attempted
    call that could not be read, why (`problem`); both empty for a reply with no call in it."""

    calls: list[ToolCall]
    problem: str | None = None


def text_tool_calls(text: str | None, *, id_prefix: str = "text_call",
                    functions: Collection[str] = ()) -> TextCalls:
    """The function calls a reply wrote as plain content instead of as `tool_calls`, as models do when a server
    does not parse their calls (llama-cpp-python with `tool_choice: "auto"`, a chat template the server does not
    know): Hermes/Qwen `<tool_call>{"name": …, "arguments": …}</tool_call>` blocks (one or several, the last
    one possibly unclosed), a bare `{"name": …, "arguments": …}` object (or `"parameters"`, or OpenAI's
    `{"function": {…}}`, or a list of them, or `{"tool_calls": […]}`), with its braces doubled (`{{…}}`, as a
    Jinja template shows them), in a fenced block or with prose around. Arguments may be a JSON string or a
    JSON value (then encoded). Read strictly (jsonio: no NaN, no nesting deeper than jsonio.MAX_DEPTH), at most
    MAX_TEXT_CALLS_CHARS characters and MAX_TEXT_CALLS calls; the ids are `{id_prefix}_{i}`.

    A reply that looks like a call (a `<tool_call>` tag, `"name"` with `"arguments"`, or a line starting with one
    of `functions` and a parenthesis) but yields none has a `problem`: it is neither calls nor an answer."""
    text = (text or "").strip()
    if not text:
        return TextCalls([])
    if len(text) > MAX_TEXT_CALLS_CHARS:
        return TextCalls([], f"the reply has {len(text):,} characters, more than the {MAX_TEXT_CALLS_CHARS:,} "
                             "read for calls written as text" if _looks_like_call(text, functions) else None)
    raw: list[tuple[str, Any]] = []
    if _OPEN.search(text):
        for body in _OPEN.split(text)[1:MAX_TEXT_CALLS + 1]:
            body = _CLOSE.split(body, 1)[0].strip()
            found = _calls_in(body, whole=True) or _calls_in_prose(body) or _calls_in_prose(_undouble(body))
            if not found:
                return TextCalls([], f"a <tool_call> block is not a call {{\"name\": …, \"arguments\": {{…}}}}: "
                                     f"{_clip(body)!r}")
            raw += found
    else:
        text = _CLOSE.sub("", text)  # a closing tag without its opening one
        for candidate in (text, *(m.group(1) for m in _FENCE.finditer(text))):
            if (whole := _calls_in(candidate, whole=False)) is not None:
                raw = whole
                break
        else:
            raw = _calls_in_prose(text)
            if not raw and ("{{" in text or "}}" in text):
                raw = _calls_in_prose(_undouble(text))
    if not raw and functions:
        # `feedback\n{"binary_id": …}`, `feedback {…}`, `feedback{…}`: a function's name, its arguments after it
        first, _, rest = text.strip("`").strip().partition("\n")
        name, brace, after = first.strip().partition("{")
        name = name.strip()
        if name in functions:
            rest = brace + after + "\n" + rest
            try:
                value = jsonio.decode(rest.strip() or "{}", what="arguments")
            except InvalidJSON:
                value = None
            if not isinstance(value, dict):
                return TextCalls([], f"it names the function {name} first, but what follows is not its arguments "
                                     f"as a JSON object ({_clip(text)!r})")
            raw = [(name, value)]
    if not raw:
        if _is_json(text):  # a JSON answer, whatever keys it has: a call would have been read from it
            return TextCalls([])
        return TextCalls([], "it looks like a function call written as text, but no call could be read from it "
                             f"({_clip(text)!r})" if _looks_like_call(text, functions) else None)
    from .client import ToolCall  # here: the client imports this module

    return TextCalls([ToolCall(id=f"{id_prefix}_{i}", name=name, arguments=_encode_arguments(args))
                      for i, (name, args) in enumerate(raw[:MAX_TEXT_CALLS])])


def _is_json(text: str) -> bool:
    if text.startswith("```"):
        text = text[3:].partition("\n")[2].strip().removesuffix("```")
    try:
        jsonio.decode(text, what="the reply")
        return True
    except InvalidJSON:
        return False


def _looks_like_call(text: str, functions: Collection[str]) -> bool:
    if _TAG.search(text) or (_NAME_KEY.search(text) and _ARGS_KEY.search(text)):
        return True
    names = "|".join(re.escape(f) for f in functions if f)
    return bool(names) and re.search(rf"(?m)^[\s`>*-]*(?:{names})\s*\(", text) is not None


def _calls_in(text: str, *, whole: bool) -> list[tuple[str, Any]] | None:
    """The calls that `text` is, all of it (optionally fenced, braces optionally doubled), or None. `whole`
    (inside a <tool_call> block): a bare {"name": …} without arguments is a call too."""
    text = text.strip()
    if text.startswith("```"):  # one fenced block, its language and closing fence optional
        text = text[3:].partition("\n")[2] if "\n" in text else text[3:]
        text = text.strip().removesuffix("```").strip()
    for candidate in _repairs(text):
        try:
            value = jsonio.decode(candidate, what="a call")
        except InvalidJSON:
            continue
        calls = _as_calls(value, bare_name=whole)
        if calls is not None:
            return calls
    return None


def _repairs(text: str) -> list[str]:
    """`text` as written, then with its outer braces undoubled ({{…}} → {…}), then with every doubled brace
    outside strings undoubled."""
    out = [text]
    inner = text
    for _ in range(2):
        if inner.startswith("{{") and inner.endswith("}}"):
            inner = inner[1:-1].strip()
            out.append(inner)
    if "{{" in text or "}}" in text:
        out.append(_undouble(text))
    if (unquoted := _unquoted(text)) != text:
        out.append(unquoted)
    return out


#: A JSON document written as a string value without escaping its quotes (`"input_json": "{"text": "a"}"`), in
#: single quotes, or escaped twice (`"{\\"text\\": …}"`), as small models write it: the call object is then not
#: JSON. The document itself is put in the string's place (the catalog encodes run_binary's input_json again); one
#: of at most 4,000 characters, so that a long reply full of such keys is not read in quadratic time.
_QUOTED_DOC = re.compile(r'("(?:input_json|arguments)"\s*:\s*)(["\'])(\{.{0,4000}?\}|\[.{0,4000}?\])\2(?=\s*[,}\]])', re.S)


def _unquoted(text: str) -> str:
    def document(m: re.Match[str]) -> str:
        inner = m.group(3)
        for candidate in (inner, inner.replace('\\\\"', '"').replace('\\"', '"')):
            try:
                jsonio.decode(candidate, what="a call's document")
            except InvalidJSON:
                continue
            return m.group(1) + candidate
        return m.group(0)
    return _QUOTED_DOC.sub(document, text)


def _undouble(text: str) -> str:
    """Every `{{` and `}}` outside JSON strings as one brace (a template's escaped braces, copied by a model)."""
    out, i, in_string = [], 0, False
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                out.append(text[i:i + 2])
                i += 2
                continue
            in_string = c != '"'
        elif c == '"':
            in_string = True
        elif c in "{}" and text[i + 1:i + 2] == c:
            i += 1
        out.append(c)
        i += 1
    return "".join(out)


def _calls_in_prose(text: str) -> list[tuple[str, Any]]:
    """The call objects (or lists of them) found in prose, in order, each read at an opening bracket that is not
    inside one already read."""
    if jsonio.too_deep(text.encode("utf-8", "surrogatepass")):
        return []
    decoder, calls, end = json.JSONDecoder(parse_constant=_no_constant), [], 0
    for bracket in re.finditer(r"[\[{]", text):
        if bracket.start() < end:
            continue
        try:
            value, stop = decoder.raw_decode(text, bracket.start())
        except (ValueError, RecursionError):
            continue
        end = stop
        found = _as_calls(value, bare_name=False)
        if found:
            calls += found
        if len(calls) >= MAX_TEXT_CALLS:
            break
    return calls


def _as_calls(value: Any, *, bare_name: bool) -> list[tuple[str, Any]] | None:
    """`value` as (name, arguments) pairs if it is a call, a list of calls, or {"tool_calls": [calls]}; else None."""
    if isinstance(value, dict) and set(value) == {"tool_calls"} and isinstance(value["tool_calls"], list):
        value = value["tool_calls"]
    if isinstance(value, list):
        calls = [_as_call(v, bare_name) for v in value[:MAX_TEXT_CALLS]]
        return [c for c in calls if c is not None] if value and all(calls) else None
    call = _as_call(value, bare_name)
    return [call] if call is not None else None


def _as_call(value: Any, bare_name: bool) -> tuple[str, Any] | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict) and set(value) <= {"function", "type", "id"}:
        value = value["function"]  # OpenAI's own shape: {"type": "function", "function": {"name", "arguments"}}
    name = value.get("name")
    if not isinstance(name, str) or not name.strip() or not set(value) <= _CALL_KEYS:
        return None
    if "type" in value and value["type"] != "function":
        return None
    has_args = "arguments" in value or "parameters" in value
    if not has_args and not bare_name:
        return None  # {"name": "Ada"} in an answer is no call
    return name.strip(), value.get("arguments", value.get("parameters", {}))


def _encode_arguments(args: Any) -> str:
    """Arguments as JSON text: a string as written (a model's JSON text), a value encoded, none as {}."""
    if args is None:
        return "{}"
    return args if isinstance(args, str) else jsonio.encode(args)


def _clip(text: str, width: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
