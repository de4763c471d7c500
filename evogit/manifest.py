"""A tool's source package: the manifest (`tool.json`), its cases, and the rules a package must follow.

The rules keep LLM-written code from reaching the host at *build* time: only allowlisted crates from the
offline registry, no build scripts, no own proc-macros, no custom target paths, and no source that reads a
file or the environment while it compiles. They are the second line: the build runs in a sandbox that cannot
see the host anyway (toolchain.py). The source rule works on Rust tokens (comments stripped; string, char and
raw-string literals skipped whole), over every file of the package but Cargo.toml/Cargo.lock (so a file
that is not named .rs cannot smuggle code in either; one that is not Rust tokens at all, like prose, could
not be compiled and is let be); the tool contract needs none of what it forbids:

- `include_str`, `include_bytes`, `option_env`: forbidden as identifiers anywhere (so also as a macro passed
  by name, renamed in a `use`, or behind a raw identifier `r#...`);
- `include`, `env`: forbidden as macros (`include!`, `env!`), and inside a macro's input or body or a `use`
  (where they could become one), except after `.` and in `env::name` paths (`std::env::args()`);
- `path`, `link`: forbidden inside attributes (so no `#[path]`, also not in `cfg_attr`, no `#[link]`), and
  inside a macro's input or body (where an attribute could be assembled) except after `.` or `::`.
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec

from . import schemas
from .errors import InvalidJSON, InvalidName, InvalidPackage
from .jsonio import decode

NAME_RE = re.compile(r"\A[a-z][a-z0-9]*(?:-[a-z0-9]+)*\Z")  # \Z: "$" would let a final newline through
MAX_NAME = 64

#: Crates a tool may depend on: all compile for wasm32-wasi from Debian's offline registry.
ALLOWED_CRATES = frozenset(
    {"serde", "serde_json", "regex", "csv", "chrono", "base64", "sha2", "hex", "url",
     "unicode-segmentation", "strsim"}
)
REQUIRED_FILES = ("tool.json", "Cargo.toml", "src/main.rs", "tests/cases.jsonl")
FORBIDDEN_PACKAGE_KEYS = ("build", "links", "workspace", "metabuild")
DEP_FORBIDDEN_KEYS = ("path", "git", "registry", "registry-index", "branch", "tag", "rev")
#: Files of a package that are not Rust source: cargo alone reads them, under check_cargo_toml's rules.
CARGO_FILES = frozenset({"Cargo.toml", "Cargo.lock"})
#: Identifiers that read the build host (files, environment) and that no tool needs under any name.
FORBIDDEN_IDENTS = frozenset({"include_str", "include_bytes", "option_env"})
#: Builtin macros with common names: forbidden as macros and wherever they could become one.
FORBIDDEN_MACROS = frozenset({"include", "env"})
#: Words no attribute may contain: `#[path = ...]` loads any file as a module, `#[link]` any file as a library.
FORBIDDEN_IN_ATTRIBUTES = frozenset({"path", "link"})
_IDENT = re.compile(r"[^\W\d]\w*")
_RAW_STR = re.compile(r'[bc]?r(#*)"')
_NUMBER = re.compile(r"\d\w*")


class ToolManifest(msgspec.Struct, forbid_unknown_fields=True):
    """`tool.json`: what the tool does and the JSON it takes and gives."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    tags: list[str] = []
    examples: list[str] = []  # tasks this tool is for, in users' words: retrieval learns from them

    def schema_text(self) -> str:
        """The schemas in words, for retrieval: each top-level property with the first clause of its
        description, e.g. "input: csv (the CSV text to parse), header (...); output: rows (...)"."""
        parts = []
        for side, schema in (("input", self.input_schema), ("output", self.output_schema)):
            props = schema.get("properties") if isinstance(schema, dict) else None
            if not isinstance(props, dict) or not props:
                continue
            words = []
            for name, spec in props.items():
                about = spec.get("description", "") if isinstance(spec, dict) else ""
                clause = re.split(r"(?<=\.)\s+(?=[A-Z])|;\s", str(about), maxsplit=1)[0].strip().rstrip(".")
                if len(clause) > 60:
                    clause = clause[:60].rsplit(" ", 1)[0] + "…"
                words.append(f"{name} ({clause})" if clause else str(name))
            parts.append(f"{side}: {', '.join(words)}")
        return "; ".join(parts)


class Case(msgspec.Struct, forbid_unknown_fields=True):
    """One behavioural case: running the tool on `input` must print exactly `expect` and exit with `exit`."""

    name: str
    input: Any
    expect: Any
    exit: int = 0


_SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z])")  # "e.g. \"a.b\"" and ". _ %" do not end a sentence


def first_sentence(text: str) -> str:
    """A description's first sentence, without its full stop (what a listing shows)."""
    return _SENTENCE_END.split(text, maxsplit=1)[0].rstrip(".")


def check_name(name: str) -> str:
    """Return `name` if it is a valid tool name (a lowercase slug), else raise `InvalidName`."""
    if not (NAME_RE.match(name) and len(name) <= MAX_NAME):
        raise InvalidName(f"invalid tool name {name!r}: use a lowercase slug like 'word-count' (at most {MAX_NAME} chars)")
    return name


def parse_manifest(data: bytes, *, check_schemas: bool = True) -> ToolManifest:
    """Decode and check `tool.json`. The schemas' own validity (the slow part: ~2 ms each) need not be checked
    again for a version that was built, whose tool.json passed these checks then (`check_schemas=False`)."""
    try:
        manifest = decode(data, what="tool.json", type=ToolManifest)
    except InvalidJSON as e:
        raise InvalidPackage(str(e)) from None
    check_name(manifest.name)
    if not manifest.description.strip():
        raise InvalidPackage("tool.json: description is empty")
    if check_schemas:
        _check_schemas(manifest)
    return manifest


def _check_schemas(manifest: ToolManifest) -> None:
    import jsonschema  # ~35 ms to import: only where a schema is checked

    for field in ("input_schema", "output_schema"):
        try:
            jsonschema.Draft202012Validator.check_schema(getattr(manifest, field))
        except jsonschema.SchemaError as e:
            raise InvalidPackage(f"tool.json: {field} is not a valid JSON Schema: {e.message}") from None
        except RecursionError:  # checking a schema recurses a dozen frames per level of it
            raise InvalidPackage(f"tool.json: {field} is nested too deeply to check") from None
        if (why := schemas.problem(getattr(manifest, field))) is not None:
            raise InvalidPackage(f"tool.json: {field}: {why}")


def parse_cases(data: bytes) -> list[Case]:
    """Decode `tests/cases.jsonl`: one case per non-blank line, names unique, at least one case."""
    cases: list[Case] = []
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cases.append(decode(line, what=f"tests/cases.jsonl line {lineno}", type=Case))
        except InvalidJSON as e:
            raise InvalidPackage(str(e)) from None
    if not cases:
        raise InvalidPackage("tests/cases.jsonl has no cases")
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise InvalidPackage(f"tests/cases.jsonl: duplicate case name {case.name!r}")
        seen.add(case.name)
    return cases


#: What a tool's Cargo.toml may hold, and nothing else: the package's identity, registry dependencies (in every
#: spelling cargo reads), and the same per target. Anything else, or a value of another type, is refused.
PACKAGE_KEYS = frozenset({"name", "version", "edition", "authors", "description", "license", "publish",
                          "rust-version"})
DEPENDENCY_TABLES = ("dependencies", "dev-dependencies", "dev_dependencies")
BUILD_TABLES = ("build-dependencies", "build_dependencies")
TOP_KEYS = frozenset({"package", "target", *DEPENDENCY_TABLES})
DEP_KEYS = {"version": str, "features": list, "default-features": bool, "default_features": bool,
            "optional": bool, "package": str}


def _check_dependencies(table: Any, where: str) -> None:
    if not isinstance(table, dict):
        raise InvalidPackage(f"Cargo.toml: [{where}] must be a table of crates")
    for crate, spec in table.items():
        if not isinstance(spec, (str, dict)):
            raise InvalidPackage(f"Cargo.toml: dependency {crate!r} in [{where}] must be a version or a table")
        package = spec.get("package", crate) if isinstance(spec, dict) else crate
        if package not in ALLOWED_CRATES:
            raise InvalidPackage(
                f"Cargo.toml: dependency {package!r} in [{where}] is not allowed "
                f"(allowed: {', '.join(sorted(ALLOWED_CRATES))})"
            )
        if isinstance(spec, dict):
            for key, value in spec.items():
                if key in DEP_FORBIDDEN_KEYS:
                    raise InvalidPackage(f"Cargo.toml: dependency {crate!r} uses '{key}'; only registry versions "
                                         "are allowed")
                kind: type | None = DEP_KEYS.get(key)
                if kind is None:
                    raise InvalidPackage(f"Cargo.toml: dependency {crate!r} has the key '{key}'; allowed: "
                                         f"{', '.join(DEP_KEYS)}")
                if not isinstance(value, kind) or (isinstance(value, list) and not all(isinstance(v, str) for v in value)):
                    raise InvalidPackage(f"Cargo.toml: dependency {crate!r}: '{key}' must be a "
                                         f"{'list of strings' if kind is list else kind.__name__}")


def check_cargo_toml(data: bytes) -> None:
    """Reject a Cargo.toml that could run or read anything on the host at build time: only the keys and types
    cargo needs for a tool (TOP_KEYS, PACKAGE_KEYS, DEP_KEYS), every dependency table in every spelling checked
    against the allowlist, registry versions only. Each refusal is one line (a package-stage error)."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InvalidPackage(f"Cargo.toml is not valid TOML: {e}") from None
    for key in doc:
        if key in BUILD_TABLES:
            raise InvalidPackage(f"Cargo.toml: [{key}] is not allowed (no build scripts)")
        if key not in TOP_KEYS:
            raise InvalidPackage(f"Cargo.toml: [{key}] is not allowed in a tool package (allowed: "
                                 f"{', '.join(sorted(TOP_KEYS))})")
    package = doc.get("package")
    if not isinstance(package, dict) or package.get("name") != "tool":
        raise InvalidPackage('Cargo.toml: [package] name must be "tool"')
    for key in package:
        if key in FORBIDDEN_PACKAGE_KEYS:
            raise InvalidPackage(f"Cargo.toml: [package] '{key}' is not allowed (no build scripts or native links)")
        if key not in PACKAGE_KEYS:
            raise InvalidPackage(f"Cargo.toml: [package] '{key}' is not allowed (allowed: "
                                 f"{', '.join(sorted(PACKAGE_KEYS))})")
    for where in DEPENDENCY_TABLES:
        if where in doc:
            _check_dependencies(doc[where], where)
    targets = doc.get("target", {})
    if not isinstance(targets, dict):
        raise InvalidPackage("Cargo.toml: [target] must be a table of targets")
    for target, spec in targets.items():
        if not isinstance(spec, dict):
            raise InvalidPackage(f"Cargo.toml: [target.{target}] must be a table")
        for where, table in spec.items():
            if where in BUILD_TABLES:
                raise InvalidPackage("Cargo.toml: build-dependencies are not allowed")
            if where not in DEPENDENCY_TABLES:
                raise InvalidPackage(f"Cargo.toml: [target.{target}.{where}] is not allowed")
            _check_dependencies(table, f"target.{target}.{where}")


class _Token(NamedTuple):
    kind: str  # ident, punct, literal, lifetime
    text: str
    pos: int


def _tokens(text: str) -> Iterator[_Token]:
    """Rust tokens, comments dropped and literals whole (enough of the lexer to find identifiers and
    brackets for sure). Raises ValueError on an unterminated comment or literal."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while depth:
                if j >= n:
                    raise ValueError("unterminated block comment")
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
        elif (m := _RAW_STR.match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = '"' + m.group(1)
            end = text.find(close, m.end())
            if end < 0:
                raise ValueError("unterminated raw string")
            yield _Token("literal", text[i:end + len(close)], i)
            i = end + len(close)
        elif c == '"' or (c in "bc" and text.startswith('"', i + 1)):
            j = i + (1 if c == '"' else 2)
            while True:
                if j >= n:
                    raise ValueError("unterminated string")
                if text[j] == "\\":
                    j += 2
                elif text[j] == '"':
                    break
                else:
                    j += 1
            yield _Token("literal", text[i:j + 1], i)
            i = j + 1
        elif c == "'" or (c == "b" and text.startswith("'", i + 1)):
            j = i + (1 if c == "'" else 2)
            if text.startswith("\\", j):
                end = text.find("'", j + 2)
                if end < 0:
                    raise ValueError("unterminated character literal")
                yield _Token("literal", text[i:end + 1], i)
                i = end + 1
            elif j + 1 < n and text[j + 1] == "'":
                yield _Token("literal", text[i:j + 2], i)
                i = j + 2
            elif c == "'" and (m := _IDENT.match(text, j)):
                yield _Token("lifetime", text[i:m.end()], i)
                i = m.end()
            else:
                raise ValueError("unterminated character literal")
        elif text.startswith("r#", i) and (m := _IDENT.match(text, i + 2)):
            yield _Token("ident", unicodedata.normalize("NFC", m.group()), i)  # raw identifier: the same name
            i = m.end()
        elif m := _IDENT.match(text, i):
            yield _Token("ident", unicodedata.normalize("NFC", m.group()), i)
            i = m.end()
        elif m := _NUMBER.match(text, i):
            yield _Token("literal", m.group(), i)
            i = m.end()
        elif text.startswith(("!=", "::"), i):
            yield _Token("punct", text[i:i + 2], i)
            i += 2
        else:
            yield _Token("punct", c, i)
            i += 1


_CLOSE = {"(": ")", "[": "]", "{": "}"}
#: Keywords that may stand before `!(`: there the `!` is a negation, not a macro call.
_KEYWORDS = frozenset({"as", "break", "const", "continue", "crate", "else", "enum", "extern", "fn", "for", "if",
                       "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static",
                       "struct", "super", "trait", "type", "unsafe", "use", "where", "while", "async", "await", "dyn"})


def check_source(path: str, text: str, *, must_lex: bool = True) -> None:
    """Reject source that could read host files or environment at compile time (the rules are in the module
    docstring). With `must_lex=False` (a file not named .rs) text that is not Rust tokens at all passes: no
    compiler could take it as code, and nothing may include it."""
    try:
        tokens = list(_tokens(text))
    except ValueError as e:
        if not must_lex:
            return
        raise InvalidPackage(f"{path}: cannot be read as Rust source: {e}") from None

    def refuse(tok: _Token, what: str) -> InvalidPackage:
        line = text.count("\n", 0, tok.pos) + 1
        return InvalidPackage(f"{path}:{line}: {what}: tool code may not read files or the environment at build time")

    def text_at(k: int) -> str:
        return tokens[k].text if 0 <= k < len(tokens) else ""

    # Open groups: (closing bracket, a macro's input or body, an attribute); `use` runs to its `;`.
    stack: list[tuple[str, bool, bool]] = []
    in_use = False
    for k, tok in enumerate(tokens):
        in_macro = in_use or bool(stack and stack[-1][1])
        in_attr = bool(stack and stack[-1][2])
        before, after = text_at(k - 1), text_at(k + 1)
        if tok.kind == "ident":
            name = tok.text
            if name in FORBIDDEN_IDENTS:
                raise refuse(tok, f"`{name}` is not allowed")
            if name in FORBIDDEN_MACROS:
                if after == "!":
                    raise refuse(tok, f"`{name}!` is not allowed")
                env_path = name == "env" and after == "::" and k + 2 < len(tokens) and \
                    tokens[k + 2].kind == "ident" and tokens[k + 2].text != "self"
                if in_macro and before not in (".", "$") and not env_path:
                    raise refuse(tok, f"`{name}` inside a macro or a `use` is not allowed")
            if name in FORBIDDEN_IN_ATTRIBUTES and (in_attr or (in_macro and before not in (".", "::", "$"))):
                raise refuse(tok, f"`{name}` in an attribute or a macro is not allowed")
            if name == "use" and not in_macro:
                in_use = True
        elif tok.text == ";" and not (stack and stack[-1][1]):
            in_use = False
        elif tok.text in _CLOSE:
            is_attr = tok.text == "[" and (before == "#" or (before == "!" and text_at(k - 2) == "#"))
            called = tokens[k - 2] if k >= 2 and before == "!" else None
            is_macro = (called is not None and called.kind == "ident" and called.text not in _KEYWORDS) or (
                k >= 3 and text_at(k - 2) == "!" and tokens[k - 1].kind == "ident" and text_at(k - 3) == "macro_rules")
            stack.append((_CLOSE[tok.text], in_macro or is_macro, in_attr or is_attr))
        elif stack and tok.text == stack[-1][0]:
            stack.pop()


def check_package(files: dict[str, bytes], symlinks: frozenset[str] | set[str] = frozenset(), *,
                  build_rules: bool = True) -> tuple[ToolManifest, list[Case]]:
    """Check a whole source tree (path -> content) and return its manifest and cases. `build_rules=False`
    checks only what the pipeline needs to read (manifest, cases), not the build-time safety rules."""
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        raise InvalidPackage(f"missing {', '.join(missing)}")
    if build_rules:
        check_build_rules(files, symlinks)
    return parse_manifest(files["tool.json"]), parse_cases(files["tests/cases.jsonl"])


def check_build_rules(files: dict[str, bytes], symlinks: frozenset[str] | set[str] = frozenset()) -> None:
    """The build-time safety rules: what a package may hold so that building it reads nothing of the host."""
    if symlinks:
        raise InvalidPackage(f"symbolic links are not allowed in a tool package: {', '.join(sorted(symlinks))}")
    for path in files:
        top = path.split("/", 1)[0]
        if path == "build.rs":
            raise InvalidPackage(f"{path}: build scripts are not allowed")
        if top == "build":
            raise InvalidPackage("build/ is reserved for build output and must not be in a source tree")
        if top == ".cargo":
            raise InvalidPackage(".cargo/ configuration is not allowed in a tool package")
    check_cargo_toml(files["Cargo.toml"])
    for path, data in files.items():
        if path in CARGO_FILES:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if path.endswith(".rs"):
                raise InvalidPackage(f"{path} is not UTF-8") from None
            continue  # not text, so not Rust either
        check_source(path, text, must_lex=path.endswith(".rs"))


def manifest_json(manifest: ToolManifest) -> bytes:
    """Serialise a manifest the way evogit writes tool.json (indented, stable)."""
    return (json.dumps(msgspec.to_builtins(manifest), indent=2, ensure_ascii=False) + "\n").encode()
