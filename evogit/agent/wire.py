"""The authoring wire format, fixed so that recorded sessions and every compatible server work.

One chat completion per attempt, no `tools`; the reply's message content is one JSON object:

    {"files": {"tool.json": "...", "Cargo.toml": "...", "src/main.rs": "...", "tests/cases.jsonl": "..."},
     "superseded": [{"case": NAME, "reason": TEXT}],
     "notes": TEXT}

Files are whole, never diffs (diff formats break with local models). What a reply may get wrong in form and
still mean clearly is mended here, once, so that every caller sees the same package: a `tool.json` given as an
object, cases given as a list, a `main.rs` that holds only the marked function (it is put into the skeleton).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import msgspec

from ..errors import InvalidPackage
from ..manifest import REQUIRED_FILES, Case, parse_cases

#: The JSON Schema of a reply, for `response_format: json_schema` (strict: every property required, no others).
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "files": {
            "type": "object",
            "properties": {path: {"type": "string"} for path in REQUIRED_FILES},
            "required": list(REQUIRED_FILES),
            "additionalProperties": False,
        },
        "superseded": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"case": {"type": "string"}, "reason": {"type": "string"}},
                "required": ["case", "reason"],
                "additionalProperties": False,
            },
        },
        "notes": {"type": "string"},
    },
    "required": ["files", "superseded", "notes"],
    "additionalProperties": False,
}
REPLY_NAME = "evogit_tool_package"
MAX_FILE = 256 * 1024  # bytes per file: a tool is a few hundred lines


class Supersede(msgspec.Struct):
    """A parent's case the new version no longer has to pass, and why (it becomes a commit trailer)."""

    case: str
    reason: str


class Reply(msgspec.Struct):
    """One model reply, as files ready to commit."""

    files: dict[str, bytes]
    superseded: list[Supersede]
    notes: str


def parse_reply(obj: Any, skeleton: str | None = None) -> Reply:
    """Check and normalise one decoded reply. Raises InvalidPackage with a message meant for the model."""
    if not isinstance(obj, dict):
        raise InvalidPackage("the reply must be one JSON object with keys files, superseded, notes")
    files = obj.get("files")
    if not isinstance(files, dict):
        raise InvalidPackage('the reply has no "files" object')
    unknown = sorted(set(files) - set(REQUIRED_FILES))
    if unknown:
        raise InvalidPackage(f"unexpected files {', '.join(unknown)}: give exactly {', '.join(REQUIRED_FILES)}")
    missing = [p for p in REQUIRED_FILES if p not in files]
    if missing:
        raise InvalidPackage(f"the reply lacks {', '.join(missing)}: give every file whole")
    out: dict[str, bytes] = {}
    for path in REQUIRED_FILES:
        value = files[path]
        if path == "tool.json" and isinstance(value, dict):
            value = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
        elif path == "tests/cases.jsonl" and isinstance(value, list):
            value = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in value)
        if not isinstance(value, str):
            raise InvalidPackage(f"{path} must be the file's text as a string")
        if len(value.encode()) > MAX_FILE:
            raise InvalidPackage(f"{path} is larger than {MAX_FILE} bytes")
        if path == "src/main.rs" and skeleton is not None and "fn main(" not in value:
            value = fill_skeleton(skeleton, value)
        out[path] = value.encode()
    superseded = []
    for item in obj.get("superseded") or []:
        if not (isinstance(item, dict) and isinstance(item.get("case"), str) and isinstance(item.get("reason"), str)):
            raise InvalidPackage('each "superseded" entry is {"case": NAME, "reason": TEXT}')
        if not item["reason"].strip():
            raise InvalidPackage(f"superseding case {item['case']!r} needs a reason")
        superseded.append(Supersede(item["case"], " ".join(item["reason"].split())))
    notes = obj.get("notes")
    return Reply(out, superseded, notes if isinstance(notes, str) else "")


#: The lines that mark the part of the skeleton the model writes.
BEGIN, END = "// ==== evogit: the tool's logic (write this part) ====", "// ==== evogit: end ===="


def fill_skeleton(skeleton: str, logic: str) -> str:
    """Put a reply that holds only the marked part (the `run` function and its tests) into the skeleton."""
    start, end = skeleton.index(BEGIN) + len(BEGIN), skeleton.index(END)
    inner = logic.strip("\n")
    if BEGIN in inner and END in inner:
        inner = inner[inner.index(BEGIN) + len(BEGIN):inner.index(END)].strip("\n")
    return skeleton[:start] + "\n" + inner + "\n" + skeleton[end:]


def inherit_cases(parent: Sequence[Case], reply_cases: bytes, superseded: Sequence[Supersede],
                  examples: Sequence[Case] = ()) -> tuple[bytes, list[Supersede], list[str]]:
    """The cases a mutation must pass: the reply's own, every parent case the reply does not supersede by name
    (a dropped one is put back, a changed one is restored to the parent's), and the caller's examples.

    Returns the cases file, the supersessions that apply (names the parent has), and notes on what was mended.
    """
    try:
        mine = parse_cases(reply_cases)
    except InvalidPackage:
        mine = []
    by_name = {c.name: c for c in mine}
    parents = {c.name for c in parent}
    applied = [s for s in superseded if s.case in parents]
    gone = {s.case for s in applied}
    notes = [f"superseded case {s.case!r} is not one of the parent's; ignored" for s in superseded if s.case not in parents]
    final: dict[str, Case] = {}
    for case in parent:
        if case.name in gone:
            continue
        if case.name not in by_name:
            notes.append(f"inherited case {case.name!r} was dropped without superseding it: put back")
        elif msgspec.to_builtins(by_name[case.name]) != msgspec.to_builtins(case):
            notes.append(f"inherited case {case.name!r} was changed without superseding it: the parent's is kept")
        final[case.name] = case
    for case in mine:
        final.setdefault(case.name, case)
    for case in examples:
        final[case.name] = case
    data = "".join(msgspec.json.encode(c).decode() + "\n" for c in final.values()).encode()
    return data, applied, notes


def example_cases(examples: Sequence[Any], prefix: str = "example") -> list[Case]:
    """A person's examples (`{"input", "expect"}`, optionally `"exit"`) as cases that must pass, each named by
    its input (`example-<hash>`), so the same example given twice is one case and a later one never renames it."""
    out = []
    for i, ex in enumerate(examples, 1):
        if not isinstance(ex, dict) or "input" not in ex or "expect" not in ex:
            raise InvalidPackage(f'example {i} must be {{"input": ..., "expect": ...}}')
        exit_code = ex.get("exit", 0)
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            raise InvalidPackage(f"example {i}: exit must be an integer")
        digest = hashlib.sha256(json.dumps(ex["input"], sort_keys=True).encode()).hexdigest()[:8]
        out.append(Case(f"{prefix}-{digest}", ex["input"], ex["expect"], exit_code))
    return out
