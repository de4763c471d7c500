"""Mending the Rust a model wrote for the skeleton's marked part, where what it meant is clear.

Small models given a skeleton still slip in the same few ways (design note §10): they send the whole
`main.rs` (with its own `main()` and `fail()`), re-import what the skeleton imports (E0252), name a test
function after a case (`fn text-not-string()`), or write only a typed function (`fn is_palindrome(s: &str)
-> bool`) and no `run`. Each is mended here, and said in a note, so that a round is spent on the logic and not
on glue; whatever is not clearly one of these is left for the compiler to explain.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from ..toolchain import Fix

#: What the skeleton imports at the top: a model's import of the same name from the same place is dropped.
SKELETON_IMPORTS = {"json": "serde_json", "Value": "serde_json", "Read": "std::io", "exit": "std::process"}
#: Top-level functions the skeleton defines around the marked part.
SKELETON_FUNCTIONS = ("main", "fail")

_USE = re.compile(r"^[ \t]*(?:pub\s+)?use\s+([A-Za-z_][\w:]*?)(?:::\{([^{}]*)\}|::(\w+))\s*;[ \t]*\n?", re.M)
_TEST_FN = re.compile(r"(#\[test\]\s*(?:#\[[^\]]*\]\s*)*fn\s+)([A-Za-z0-9_-]+)")
_ITEM_FN = re.compile(r"^(?:pub\s+)?fn\s+(\w+)\s*(?:<[^>{}]*>)?\s*\(", re.M)
_INNER_DOC = re.compile(r"^//![^\n]*\n", re.M)


def logic(code: str) -> tuple[str, list[str]]:
    """The marked part from what a model sent for it, and what was mended."""
    notes: list[str] = []
    if re.search(r"^\s*fn\s+main\s*\(", code, re.M):
        for name in SKELETON_FUNCTIONS:
            code, found = remove_fn(code, name)
            if found:
                notes.append(f"its own fn {name}() was dropped (the skeleton has one)")
        code = _INNER_DOC.sub("", code)
    code, dropped = _drop_skeleton_imports(code)
    if dropped:
        notes.append(f"re-imports of {', '.join(dropped)} were dropped (the skeleton imports them)")
    code, renamed = _test_names(code)
    if renamed:
        notes.append(f"test functions renamed to Rust identifiers: {', '.join(renamed)}")
    return code.strip("\n") + "\n", notes


def program(code: str) -> tuple[str, list[str]]:
    """A whole program (its own `main`, no `run`) as `src/main.rs`: only its test names are mended."""
    code, renamed = _test_names(code)
    return code.strip("\n") + "\n", [f"test functions renamed to Rust identifiers: {', '.join(renamed)}"] if renamed else []


def remove_fn(code: str, name: str) -> tuple[str, bool]:
    """`code` without the top-level `fn name(...) {...}` item (and the attributes and doc lines before it)."""
    m = re.search(rf"^(?:[ \t]*(?:#\[[^\n]*\]|///[^\n]*)\n)*[ \t]*(?:pub\s+)?fn\s+{name}\s*\(", code, re.M)
    if m is None:
        return code, False
    body = _body_start(code, m.end())
    end = matching_brace(code, body) if body is not None else None
    if end is None:
        return code, False
    stop = end + 1
    if code[stop:stop + 1] == "\n":
        stop += 1
    return code[:m.start()] + code[stop:], True


def remove_tests(code: str) -> tuple[str, bool]:
    """`code` without its `#[cfg(test)] mod tests { ... }` module."""
    m = re.search(r"^[ \t]*#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", code, re.M)
    end = matching_brace(code, m.end() - 1) if m is not None else None
    if m is None or end is None:
        return code, False
    return code[:m.start()] + code[end + 1:].lstrip("\n"), True


def _code(code: str, i: int) -> Iterator[tuple[int, str]]:
    """(index, character) of `code` from `i` on, outside strings, chars and comments."""
    while i < len(code):
        skip = skip_literal(code, i)
        if skip != i:
            i = skip
            continue
        yield i, code[i]
        i += 1


def _body_start(code: str, i: int) -> int | None:
    """The index of the `{` that opens a function's body, from just after its name's `(`."""
    depth = 1
    for at, c in _code(code, i):
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "{" and depth == 0:
            return at
        elif c == ";" and depth == 0:
            return None  # a declaration without a body
    return None


def matching_brace(code: str, i: int) -> int | None:
    """The index of the `}` that closes the `{` at `i`, skipping strings, chars and comments."""
    depth = 0
    for at, c in _code(code, i):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return at
    return None


_RAW = re.compile(r'b?r(#*)"')
_CHAR = re.compile(r"'(?:\\(?:u\{[0-9a-fA-F]{1,6}\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'")


def skip_literal(code: str, i: int) -> int:
    """The index just past the string, raw string, char literal or comment that starts at `i` (or `i`)."""
    c = code[i]
    if c == "/" and code.startswith("//", i):
        end = code.find("\n", i)
        return len(code) if end < 0 else end
    if c == "/" and code.startswith("/*", i):
        end = code.find("*/", i + 2)
        return len(code) if end < 0 else end + 2
    if c in "rb" and (m := _RAW.match(code, i)) and (i == 0 or not (code[i - 1].isalnum() or code[i - 1] == "_")):
        end = code.find('"' + m.group(1), m.end())
        return len(code) if end < 0 else end + 1 + len(m.group(1))
    if c == '"':
        j = i + 1
        while j < len(code):
            if code[j] == "\\":
                j += 2
                continue
            if code[j] == '"':
                return j + 1
            j += 1
        return len(code)
    if c == "'" and (m := _CHAR.match(code, i)):
        return m.end()
    return i


def _drop_skeleton_imports(code: str) -> tuple[str, list[str]]:
    dropped: list[str] = []

    def fix(m: re.Match[str]) -> str:
        path, group, single = m.group(1), m.group(2), m.group(3)
        names = [n.strip() for n in group.split(",") if n.strip()] if group is not None else [single]
        keep = [n for n in names if SKELETON_IMPORTS.get(n) != path]
        dropped.extend(n for n in names if n not in keep)
        if len(keep) == len(names):
            return m.group(0)
        if not keep:
            return ""
        shown = keep[0] if len(keep) == 1 else "{" + ", ".join(keep) + "}"
        if shown == "self":
            return f"use {path};\n"
        return f"use {path}::{shown};\n"

    return _USE.sub(fix, code), dropped


def _test_names(code: str) -> tuple[str, list[str]]:
    renamed: list[str] = []

    def fix(m: re.Match[str]) -> str:
        name = m.group(2)
        if re.fullmatch(r"[A-Za-z_]\w*", name):
            return m.group(0)
        ident = re.sub(r"\W", "_", name)
        ident = ident if re.match(r"[A-Za-z_]", ident) else "case_" + ident
        renamed.append(ident)
        return m.group(1) + ident

    return _TEST_FN.sub(fix, code), renamed


# -- glue: a `run` from the schemas, around a typed function ------------------------------------------------------
_SIG = re.compile(r"^(?:pub\s+)?fn\s+(\w+)\s*\(([^)]*)\)\s*(?:->\s*([^{]+?))?\s*\{", re.M)
_INTS = ("i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize")


def glue(code: str, input_schema: Any, output_schema: Any) -> tuple[str, str] | None:
    """A `run` function for a part that has none but one typed function whose parameters are the input's
    properties (by name, else in order) and whose result is the output's one property (or the whole output
    as a `Value`). Returns (the `run` to add, a note), or None when the match is not clear."""
    if re.search(r"^\s*(?:pub\s+)?fn\s+run\s*\(", code, re.M):
        return None
    props = _properties(input_schema)
    outs = _properties(output_schema)
    if props is None or outs is None:
        return None
    tests_at = code.find("#[cfg(test)]")
    head = code if tests_at < 0 else code[:tests_at]
    candidates = []
    for m in _SIG.finditer(head):
        params = _params(m.group(2))
        if params is None or not params:
            continue
        candidates.append((m.group(1), params, (m.group(3) or "()").strip()))
    # the function whose parameters are the input's properties; else the last one that takes as many
    fits = [c for c in candidates if sorted(p for p, _ in c[1]) == sorted(props)]
    if not fits:
        fits = [c for c in candidates if len(c[1]) == len(props)]
    if not fits:
        return None
    name, params, returns = fits[-1]
    by_name = sorted(p for p, _ in params) == sorted(props)
    lines, args = [], []
    for i, (param, rust_type) in enumerate(params):
        field = param if by_name else list(props)[i]
        got = _extract(field, props[field], rust_type, param)
        if got is None:
            return None
        lines.append(got)
        args.append(param)
    value = returns
    fallible = value.startswith("Result<")
    if fallible:
        inner = value[len("Result<"):].rsplit(",", 1)[0].strip()
        call = f"{name}({', '.join(args)}).map_err(|e| e.to_string())?"
    else:
        inner = value
        call = f"{name}({', '.join(args)})"
    if inner.replace(" ", "") in ("Value", "serde_json::Value"):
        result = "Ok(result)"
    elif len(outs) == 1:
        result = f'Ok(json!({{ "{next(iter(outs))}": result }}))'
    else:
        return None
    body = "\n".join(f"    {line}" for line in lines)
    run = (f"fn run(input: &Value) -> Result<Value, String> {{\n{body}\n    let result = {call};\n    {result}\n}}\n")
    return run, f"run() was written from the schemas around {name}()"


def _properties(schema: Any) -> dict[str, Any] | None:
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return None
    props = schema["properties"]
    return {str(k): (v if isinstance(v, dict) else {}) for k, v in props.items()}


def _params(text: str) -> list[tuple[str, str]] | None:
    out = []
    depth, current = 0, ""
    for c in text + ",":
        if c in "<([":
            depth += 1
        elif c in ">)]":
            depth -= 1
        if c == "," and depth == 0:
            if current.strip():
                name, sep, rust_type = current.partition(":")
                if not sep:
                    return None
                name = name.strip().removeprefix("mut ").strip()
                if not re.fullmatch(r"[A-Za-z_]\w*", name):
                    return None
                out.append((name, " ".join(rust_type.split())))
            current = ""
        else:
            current += c
    return out


def _extract(field: str, spec: dict[str, Any], rust_type: str, var: str) -> str | None:
    """A `let` that reads `field` of the input as `rust_type` (an error message naming it if it is not)."""
    get = f'input.get("{field}")'
    t = rust_type.replace(" ", "")
    if t in ("&str", "&String"):
        return f'let {var} = {get}.and_then(Value::as_str).ok_or("\\"{field}\\" must be a string")?;'
    if t == "String":
        return (f'let {var} = {get}.and_then(Value::as_str).ok_or("\\"{field}\\" must be a string")?'
                ".to_string();")
    if t == "bool":
        return f'let {var} = {get}.and_then(Value::as_bool).ok_or("\\"{field}\\" must be a boolean")?;'
    if t in ("f64", "f32"):
        return f'let {var} = {get}.and_then(Value::as_f64).ok_or("\\"{field}\\" must be a number")? as {t};'
    if t in _INTS:
        reader = "as_u64" if t.startswith("u") else "as_i64"
        return (f'let {var} = {get}.and_then(Value::{reader}).ok_or("\\"{field}\\" must be an integer")? as {t};')
    if t in ("&Value", "&serde_json::Value"):
        return f'let {var} = {get}.ok_or("\\"{field}\\" is missing")?;'
    m = re.fullmatch(r"(&)?(?:Vec<(.+)>|\[(.+)\])", t)
    if m:
        inner = m.group(2) or m.group(3)
        item = {"String": "s.as_str().map(|s| s.to_string())", "&str": "s.as_str()", "f64": "s.as_f64()",
                "bool": "s.as_bool()"}.get(inner)
        if item is None and inner in _INTS:
            item = f"s.{'as_u64' if inner.startswith('u') else 'as_i64'}().map(|n| n as {inner})"
        if item is None:
            return None
        ref = "&" if m.group(1) else ""
        return (f'let {var}: Vec<{inner}> = {get}.and_then(Value::as_array).ok_or("\\"{field}\\" must be an array")?'
                f'.iter().map(|s| {item}).collect::<Option<Vec<{inner}>>>()'
                f'.ok_or("\\"{field}\\" has an item of the wrong type")?;\n'
                f"    let {var} = {ref}{var};")
    return None


def apply_fixes(source: bytes, fixes: Sequence[Fix]) -> tuple[bytes, list[str]]:
    """`source` with rustc's suggested changes made (byte ranges of this one file; a change overlapping one
    already taken, or at the same place, is skipped), and a note for each change made."""
    taken: list[Fix] = []
    for fix in fixes:  # rustc's order: its first suggestion for a place wins
        if 0 <= fix.start <= fix.end <= len(source) and not any(
                fix.start < t.end and t.start < fix.end or fix.start == t.start for t in taken):
            taken.append(fix)
    taken.sort(key=lambda f: f.start)
    out = bytearray(source)
    for fix in reversed(taken):
        out[fix.start:fix.end] = fix.replacement.encode()
    notes = []
    for fix in taken:
        shown = fix.replacement.strip() or "nothing"
        line = source.count(b"\n", 0, fix.start) + 1
        notes.append(f"line {line}: {fix.note.rstrip('.:')}: `{shown if len(shown) <= 60 else shown[:57] + '...'}`")
    return bytes(out), notes


#: serde_json::Value accessors small models invent, and the ones that exist (seen live: `as_integer` in chunk-list,
#: run 4). rustc suggests none of these (the names are too far apart), so a red compile gets them here.
VALUE_METHODS = {
    "as_integer": "as_i64", "as_int": "as_i64", "as_i32": "as_i64", "as_long": "as_i64",
    "as_uint": "as_u64", "as_usize": "as_u64", "as_u32": "as_u64", "as_unsigned": "as_u64",
    "as_float": "as_f64", "as_double": "as_f64", "as_f32": "as_f64", "as_number": "as_f64",
    "as_string": "as_str", "as_text": "as_str",
    "as_list": "as_array", "as_vec": "as_array", "as_arr": "as_array",
    "as_map": "as_object", "as_obj": "as_object", "as_dict": "as_object",
    "as_boolean": "as_bool",
    "is_integer": "is_i64", "is_int": "is_i64", "is_float": "is_f64", "is_list": "is_array",
}
_NO_METHOD = re.compile(r"no (?:method|variant or associated item|function or associated item) named `(\w+)` "
                        r"found for .*\bValue\b")


def value_api_fixes(errors: Sequence[Any], source: bytes) -> list[Fix]:
    """Fixes for rustc errors about a serde_json::Value method that does not exist but has a namesake that does
    (VALUE_METHODS): the method's name at the error's place replaced. `errors` are toolchain.Diagnostics."""
    lines = source.decode("utf-8", "replace").split("\n")
    out = []
    for d in errors:
        m = _NO_METHOD.search(d.message or "")
        if m is None or m.group(1) not in VALUE_METHODS or d.file != "src/main.rs" or not d.line or not d.column:
            continue
        if not 0 < d.line <= len(lines):
            continue
        text = lines[d.line - 1]
        col = d.column - 1  # rustc's columns count characters from 1
        if text[col:col + len(m.group(1))] != m.group(1):
            continue
        start = sum(len(line.encode()) + 1 for line in lines[:d.line - 1]) + len(text[:col].encode())
        out.append(Fix("src/main.rs", start, start + len(m.group(1)), VALUE_METHODS[m.group(1)],
                       f"serde_json::Value has no {m.group(1)}; its method is"))
    return out
