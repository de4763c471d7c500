"""The authoring wire formats: what a model replies with, read into a package ready to build.

One chat completion per attempt, no `tools`. The format the prompt asks for keeps code out of JSON strings
(a small model leaves a `"` unescaped inside a Rust string literal in nearly every reply that writes a file as
a JSON string — design note §10): a JSON header, the marked part of `src/main.rs`, the cases.

    ```json
    {"name": ..., "description": ..., "input_schema": {...}, "output_schema": {...}, "tags": [...],
     "examples": ["a task in a user's words", ...], "crates": ["regex"],
     "superseded": [{"case": NAME, "reason": TEXT}], "notes": TEXT}
    ```
    ```rust
    fn run(input: &Value) -> Result<Value, String> { ... }      (helpers, and the #[cfg(test)] tests module)
    ```
    ```jsonl
    {"name": ..., "input": {...}, "expect": {...}}               ("exit": 1 for an error case)
    ```

evogit assembles the package: the skeleton around the Rust part, `Cargo.toml` generated from the crates the
header names and the code uses (at the allowlisted versions), `tool.json` from the header. Read leniently —
prose around the blocks, missing or unlabelled fences, a whole `main.rs` instead of the marked part, doubled
braces, a cut-off cases block — and validated strictly afterwards (the package rules, the build).

The JSON format stays accepted (recordings and other people's scripted servers use it): the reply's content is
one JSON object,

    {"files": {"tool.json": "...", "Cargo.toml": "...", "src/main.rs": "...", "tests/cases.jsonl": "..."},
     "superseded": [{"case": NAME, "reason": TEXT}], "notes": TEXT}

with whole files; a `tool.json` given as an object, cases given as a list, and a `main.rs` that holds only the
marked part are mended.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Sequence
from typing import Any

import msgspec

from .. import jsonio
from ..errors import InvalidJSON, InvalidPackage
from ..manifest import ALLOWED_CRATES, REQUIRED_FILES, Case, parse_cases
from . import mend

#: How each allowlisted crate is asked for in a generated Cargo.toml: versions in Debian's offline registry
#: that this toolchain builds (the comment says which, for the model's eyes too).
DEPENDENCIES = {
    "serde": 'serde = { version = "1", features = ["derive"] }   # 1.0.152',
    "serde_json": 'serde_json = "1"   # 1.0.87',
    "regex": 'regex = "1"   # 1.7.1',
    "csv": 'csv = "1"   # 1.1.6',
    "chrono": 'chrono = { version = "0.4", default-features = false, features = ["std"] }   # 0.4.23, no clock',
    "base64": 'base64 = "0.13"   # 0.13.0: base64::encode / base64::decode / base64::encode_config',
    "sha2": 'sha2 = "0.10"   # 0.10.5',
    "hex": 'hex = "0.4"   # 0.4.3',
    "url": 'url = "2"   # 2.3.1',
    "unicode-segmentation": 'unicode-segmentation = "1"   # 1.9.0',
    "strsim": 'strsim = "0.10"   # 0.10.0',
}
assert set(DEPENDENCIES) == set(ALLOWED_CRATES)

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
    mended: list[str] = []  # what was mended in reading it (said in the result, and to the model if it stays red)


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
    notes = obj.get("notes")
    return Reply(out, _superseded(obj.get("superseded")), notes if isinstance(notes, str) else "")


def _superseded(items: Any) -> list[Supersede]:
    if items is not None and not isinstance(items, list):
        raise InvalidPackage('"superseded" is a list of {"case": NAME, "reason": TEXT}')
    superseded = []
    for item in items or []:
        if not (isinstance(item, dict) and isinstance(item.get("case"), str) and isinstance(item.get("reason"), str)):
            raise InvalidPackage('each "superseded" entry is {"case": NAME, "reason": TEXT}')
        if not item["reason"].strip():
            raise InvalidPackage(f"superseding case {item['case']!r} needs a reason")
        superseded.append(Supersede(item["case"], " ".join(item["reason"].split())))
    return superseded


#: The lines that mark the part of the skeleton the model writes.
BEGIN, END = "// ==== evogit: the tool's logic (write this part) ====", "// ==== evogit: end ===="


def fill_skeleton(skeleton: str, logic: str) -> str:
    """Put a reply that holds only the marked part (the `run` function and its tests) into the skeleton."""
    start, end = skeleton.index(BEGIN) + len(BEGIN), skeleton.index(END)
    inner = logic.strip("\n")
    if BEGIN in inner and END in inner:
        inner = inner[inner.index(BEGIN) + len(BEGIN):inner.index(END)].strip("\n")
    return skeleton[:start] + "\n" + inner + "\n" + skeleton[end:]


# -- the text format ---------------------------------------------------------------------------------------------
MAX_REPLY = 1024 * 1024  # characters of one reply
#: Header fields that go into tool.json as they are.
MANIFEST_FIELDS = ("name", "description", "input_schema", "output_schema", "tags", "examples")
# a fence may follow a list marker: small models number the three blocks as the prompt does ("1. ```json")
_OPEN = re.compile(r"^[ \t]*(?:(?:\d{1,2}[.)]|[-*])[ \t]*)?```+[ \t]*([\w+#.-]*)[^\n]*\n", re.M)
_CLOSE = re.compile(r"^[ \t]*```+[ \t]*$", re.M)
_MAIN = re.compile(r"^\s*fn\s+main\s*\(", re.M)
_RUN = re.compile(r"^\s*(?:pub\s+)?fn\s+run\s*\(", re.M)
_CODE_START = re.compile(r"^(?:use |fn |pub fn |#\[|struct |enum |impl |const |static |mod |//)", re.M)
_CRATE_USE = re.compile(r"\b(?:use\s+|extern\s+crate\s+|[^\w:])(regex|csv|chrono|base64|sha2|hex|url|"
                        r"unicode_segmentation|strsim|serde)(?=::|\s*;|\s+as\b)")


class Block(msgspec.Struct, frozen=True):
    """One fenced block of a reply (`closed` False: the reply ended inside it)."""

    lang: str
    body: str
    closed: bool
    start: int
    end: int


def blocks(text: str) -> list[Block]:
    """The fenced blocks of `text`, in order."""
    out, at = [], 0
    while (m := _OPEN.search(text, at)) is not None:
        close = _CLOSE.search(text, m.end())
        if close is None:
            out.append(Block(m.group(1).lower(), text[m.end():], False, m.start(), len(text)))
            break
        out.append(Block(m.group(1).lower(), text[m.end():close.start()], True, m.start(), close.end()))
        at = close.end()
    return out


def read_reply(text: str, skeleton: str, base: dict[str, bytes] | None = None, *, cut: bool = False) -> Reply:
    """A reply in either format, as a package. Raises InvalidPackage with a message meant for the model.

    `base` is the package the reply changes (the last attempt's, or a mutation's parent): a text-format block
    the reply leaves out is taken from it (a small model asked to fix the code sends only the code) and said.
    `cut`: the reply was cut off (max_tokens), so code that ends inside its block is not built."""
    if len(text) > MAX_REPLY:
        raise InvalidPackage(f"the reply is longer than {MAX_REPLY:,} characters")
    stripped = text.strip()
    if not stripped:
        raise InvalidPackage("the reply is empty")
    if stripped.startswith("{") or '"files"' in stripped[:2000]:
        from ..llm.reply import json_object

        obj = json_object(stripped)
        if isinstance(obj, dict) and isinstance(obj.get("files"), dict):
            return parse_reply(obj, skeleton)
    return _read_text(text, skeleton, base or {}, cut)


def _read_text(text: str, skeleton: str, base: dict[str, bytes], cut: bool) -> Reply:
    mended: list[str] = []
    found = blocks(text)
    header: dict[str, Any] | None = None
    code: Block | None = None
    cases: list[Any] = []
    crates: set[str] = set()
    for b in found:
        kind = _kind(b)
        if kind == "rust" and (code is None or not code.closed):
            code = b if code is None or len(b.body) > len(code.body) else code
        elif kind == "header" and header is None:
            header = _object(b.body)
        elif kind == "cases":
            for case in _case_lines(b.body, mended):
                if header is None and isinstance(case, dict) and {"input_schema", "output_schema"} & set(case):
                    header = case  # the header written into the cases block
                else:
                    cases.append(case)
        elif kind == "toml":
            crates |= _toml_crates(b.body)
    if header is None:
        header = _header_in_prose(text, found)
    if code is None:
        code = _code_in_prose(text, found)
    if base and (header is None or code is None or not cases) and (header is not None or code is not None):
        kept: list[str] = []
        if header is None:
            header, kept = _base_header(base), kept + ["the header"]
        if code is None and "src/main.rs" in base:
            main_rs = base["src/main.rs"].decode("utf-8", "replace")
            code, kept = Block("rust", main_rs, True, 0, 0), kept + ["the code"]
        if not cases and "tests/cases.jsonl" in base:
            cases, kept = _case_lines(base.get("tests/cases.jsonl", b"").decode("utf-8", "replace"), mended), \
                kept + ["the cases"]
        if kept:
            mended.append(f"{' and '.join(kept)} left out of the reply: kept as they were")
    if header is None:
        raise InvalidPackage("the ```json header (name, description, input_schema, output_schema, crates) is missing")
    if code is None:
        raise InvalidPackage("the ```rust block (the part of src/main.rs between the markers: fn run and its tests) "
                             "is missing")
    if not code.closed and cut:
        raise InvalidPackage("the reply ended inside the ```rust block")
    if not code.closed:
        mended.append("the ```rust block was not closed")
    if not cases and isinstance(header.get("cases"), list):
        cases = header["cases"]
    logic = code.body
    if _doubled(logic):
        logic = logic.replace("{{", "{").replace("}}", "}")
        mended.append("doubled braces {{ }} in the code were halved")
    if BEGIN in logic and END in logic:
        logic = logic[logic.index(BEGIN) + len(BEGIN):logic.index(END)]
    if _MAIN.search(logic) and not _RUN.search(logic):  # a whole program of its own (as the starter tools are)
        main_rs, notes = mend.program(logic)
    else:
        logic, notes = mend.logic(logic)
        glued = mend.glue(logic, header.get("input_schema"), header.get("output_schema"))
        if glued is not None:
            logic = glued[0] + "\n" + logic
            notes.append(glued[1])
        main_rs = fill_skeleton(skeleton, logic)
    mended += notes
    crates |= _named_crates(header.get("crates"), mended) | _used_crates(logic)
    files = {
        "tool.json": _manifest(header, mended),
        "Cargo.toml": cargo_toml(crates),
        "src/main.rs": main_rs.encode(),
        "tests/cases.jsonl": _cases_file(cases, mended),
    }
    for path, data in files.items():
        if len(data) > MAX_FILE:
            raise InvalidPackage(f"{path} is larger than {MAX_FILE} bytes")
    notes_text = header.get("notes")
    return Reply(files, _superseded(header.get("superseded")), notes_text if isinstance(notes_text, str) else "",
                 mended)


def _base_header(base: dict[str, bytes]) -> dict[str, Any]:
    """The header of a package: its tool.json and the crates its Cargo.toml names."""
    try:
        header = json.loads(base.get("tool.json", b"{}"))
    except ValueError:
        header = {}
    header = header if isinstance(header, dict) else {}
    header["crates"] = sorted(_toml_crates(base.get("Cargo.toml", b"").decode("utf-8", "replace")))
    return header


def _kind(b: Block) -> str:
    """What a block holds: rust, header, cases, toml or other (by its label, else by its content)."""
    if b.lang in ("rust", "rs"):
        return "rust"
    if b.lang in ("jsonl", "ndjson", "jsonlines"):
        return "cases"
    if b.lang == "toml":
        return "toml"
    body = b.body.strip()
    if body.startswith(("{", "[")):
        value = _object(body)
        if value is not None and (set(value) & {"input_schema", "output_schema", "description", "crates"}):
            return "header"
        return "cases" if b.lang in ("json", "jsonc", "") and ('"input"' in body or '"expect"' in body) else "other"
    if b.lang == "" and re.search(r"\bfn\s+\w+\s*\(", body):
        return "rust"
    return "other"


def _object(text: str) -> dict[str, Any] | None:
    """`text` as one JSON object (also when its braces are doubled, `{{...}}`), or None."""
    text = text.strip()
    outer = text[1:-1] if text.startswith("{{") and text.endswith("}}") else text  # `{{...}}` around one object
    for candidate in (text, outer, text.replace("{{", "{").replace("}}", "}")):
        try:
            value = jsonio.decode(candidate, what="the header")
        except InvalidJSON:
            continue
        if isinstance(value, dict):
            return value
    return None


def _header_in_prose(text: str, found: list[Block]) -> dict[str, Any] | None:
    """A header written without a fence: the first JSON object outside the blocks that has a schema."""
    from ..llm.reply import json_object

    outside, at = [], 0
    for b in found:
        outside.append(text[at:b.start])
        at = b.end
    outside.append(text[at:])
    for part in outside:
        value = json_object(part) or json_object(part.replace("{{", "{").replace("}}", "}"))
        if value is not None and ("input_schema" in value or "description" in value):
            return value
    return None


def _code_in_prose(text: str, found: list[Block]) -> Block | None:
    """Code written without a fence: from the first line that starts like Rust to the next block or the end."""
    at = 0
    spans = [(b.start, b.end) for b in found] + [(len(text), len(text))]
    for start, end in spans:
        chunk = text[at:start]
        m = _CODE_START.search(chunk)
        if m is not None and re.search(r"\bfn\s+\w+\s*\(", chunk[m.start():]):
            return Block("rust", chunk[m.start():], True, at + m.start(), start)
        at = end
    return None


def _doubled(code: str) -> bool:
    """Whether a part's braces are doubled throughout, as a template's are (`fn run(...) -> ... {{`)."""
    return bool(re.search(r"\)\s*(?:->[^{\n]*)?\{\{[ \t]*$", code, re.M)) and "\n}}" in code


def _case_lines(body: str, mended: list[str]) -> list[Any]:
    """The cases of a jsonl block (or a JSON list); a line that is no JSON object is skipped and said."""
    whole = body.strip()
    if whole.startswith("["):
        try:
            value = jsonio.decode(whole, what="cases")
            if isinstance(value, list):
                return value
        except InvalidJSON:
            pass
    out = []
    for n, line in enumerate(body.splitlines(), 1):
        line = line.strip().rstrip(",")
        if not line or line.startswith(("//", "#")):
            continue
        value = _object(line)
        if value is None:
            mended.append(f"cases line {n} is not one JSON object and was left out: {line[:80]}")
            continue
        out.append(value)
    return out


def _cases_file(cases: list[Any], mended: list[str]) -> bytes:
    """The cases as `tests/cases.jsonl`: each named (`case-N` when it is not), unknown keys dropped."""
    lines, names = [], set()
    for i, case in enumerate(cases, 1):
        if not isinstance(case, dict) or "input" not in case or "expect" not in case:
            mended.append(f"case {i} has no input and expect and was left out")
            continue
        name = case.get("name") if isinstance(case.get("name"), str) and case["name"].strip() else f"case-{i}"
        name = " ".join(str(name).split())[:80]
        while name in names:
            name += f"-{i}"
        names.add(name)
        exit_code = case.get("exit")
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):  # {"error": ...} is what fail() prints
            exit_code = 1 if isinstance(case["expect"], dict) and list(case["expect"]) == ["error"] else 0
        entry = {"name": name, "input": case["input"], "expect": case["expect"], **({"exit": exit_code} if exit_code else {})}
        lines.append(jsonio.encode(entry) + "\n")
    return "".join(lines).encode()


def _manifest(header: dict[str, Any], mended: list[str]) -> bytes:
    """tool.json from the header's fields; examples that are not tasks in words are left out."""
    manifest = {k: header[k] for k in MANIFEST_FIELDS if k in header}
    examples = manifest.get("examples")
    if examples is not None:
        words = [e for e in examples if isinstance(e, str) and " " in e.strip()] if isinstance(examples, list) else []
        if len(words) != (len(examples) if isinstance(examples, list) else -1):
            mended.append("tool.json examples that were not tasks in a user's words were left out")
        manifest["examples"] = words
    tags = manifest.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        manifest["tags"] = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()


def _named_crates(value: Any, mended: list[str]) -> set[str]:
    names = list(value) if isinstance(value, (list, dict)) else []
    out = set()
    for name in names:
        crate = str(name).strip().replace("_", "-") if isinstance(name, str) else ""
        crate = "serde_json" if crate == "serde-json" else crate
        if crate in DEPENDENCIES:
            out.add(crate)
        elif crate:
            mended.append(f"crate {str(name)[:40]!r} is not available here and was left out")
    return out


def _used_crates(code: str) -> set[str]:
    return {m.group(1).replace("_", "-") for m in _CRATE_USE.finditer(code)}


def _toml_crates(body: str) -> set[str]:
    try:
        deps = tomllib.loads(body).get("dependencies", {})
    except tomllib.TOMLDecodeError:
        return set()
    return {name for name in deps if name in DEPENDENCIES} if isinstance(deps, dict) else set()


def show_package(files: dict[str, bytes]) -> str:
    """A package as the three blocks of the text format (what the model sees of an existing tool or of its last
    attempt): the header (tool.json and the crates beyond serde_json), the marked part of src/main.rs (the whole
    file when it has no markers), the cases."""
    def text(path: str) -> str:
        return files.get(path, b"").decode("utf-8", "replace")

    header = _base_header(files)
    header["crates"] = [c for c in header["crates"] if c != "serde_json"]
    main_rs = text("src/main.rs")
    if BEGIN in main_rs and END in main_rs:
        main_rs = main_rs[main_rs.index(BEGIN) + len(BEGIN):main_rs.index(END)].strip("\n") + "\n"
    return (f"```json\n{json.dumps(header, ensure_ascii=False)}\n```\n```rust\n{main_rs.rstrip()}\n```\n"
            f"```jsonl\n{text('tests/cases.jsonl').rstrip()}\n```")


def cargo_toml(crates: set[str] | frozenset[str] = frozenset()) -> bytes:
    """The package's Cargo.toml: serde_json (the skeleton needs it) and `crates`, at the allowlisted versions."""
    deps = sorted({"serde_json", *(c for c in crates if c in DEPENDENCIES)})
    return ('[package]\nname = "tool"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
            + "".join(DEPENDENCIES[c].split("   #")[0] + "\n" for c in deps)).encode()


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
