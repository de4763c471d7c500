"""A tool's source package: the manifest (`tool.json`), its cases, and the rules a package must follow.

The rules keep LLM-written code from reaching the host at *build* time: only allowlisted crates from the
offline registry, no build scripts, no own proc-macros, no custom target paths, no includes outside the package.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import msgspec

from .errors import InvalidJSON, InvalidName, InvalidPackage
from .jsonio import decode

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
MAX_NAME = 64

#: Crates a tool may depend on: all compile for wasm32-wasi from Debian's offline registry.
ALLOWED_CRATES = frozenset(
    {"serde", "serde_json", "regex", "csv", "chrono", "base64", "sha2", "hex", "url",
     "unicode-segmentation", "strsim"}
)
REQUIRED_FILES = ("tool.json", "Cargo.toml", "src/main.rs", "tests/cases.jsonl")
#: Cargo.toml tables that could run code at build time, redirect sources, or point targets outside the package.
FORBIDDEN_TABLES = ("build-dependencies", "patch", "replace", "workspace", "lib", "bin", "test", "example",
                    "bench", "profile")
FORBIDDEN_PACKAGE_KEYS = ("build", "links", "workspace", "metabuild")
DEP_FORBIDDEN_KEYS = ("path", "git", "registry", "registry-index", "branch", "tag", "rev")
_INCLUDE_RE = re.compile(r"\b(include_str|include_bytes|include)\s*!\s*\(\s*([^)]*)\)")
_PATH_ATTR_RE = re.compile(r"#\s*!?\s*\[\s*path\s*=\s*\"([^\"]*)\"")
_ENV_RE = re.compile(r"\b(env|option_env)\s*!\s*\(\s*\"([^\"]*)\"")
_SAFE_REL = re.compile(r'^"(?!/)(?!.*\.\.)[A-Za-z0-9_./-]+"$')


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


def _check_dependencies(table: dict[str, Any], where: str) -> None:
    for crate, spec in table.items():
        package = spec.get("package", crate) if isinstance(spec, dict) else crate
        if package not in ALLOWED_CRATES:
            raise InvalidPackage(
                f"Cargo.toml: dependency {package!r} in [{where}] is not allowed "
                f"(allowed: {', '.join(sorted(ALLOWED_CRATES))})"
            )
        if isinstance(spec, dict):
            for key in DEP_FORBIDDEN_KEYS:
                if key in spec:
                    raise InvalidPackage(f"Cargo.toml: dependency {crate!r} uses '{key}'; only registry versions are allowed")


def check_cargo_toml(data: bytes) -> None:
    """Reject a Cargo.toml that could run or read anything on the host at build time."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InvalidPackage(f"Cargo.toml is not valid TOML: {e}") from None
    package = doc.get("package")
    if not isinstance(package, dict) or package.get("name") != "tool":
        raise InvalidPackage('Cargo.toml: [package] name must be "tool"')
    for key in FORBIDDEN_PACKAGE_KEYS:
        if key in package:
            raise InvalidPackage(f"Cargo.toml: [package] '{key}' is not allowed (no build scripts or native links)")
    for table in FORBIDDEN_TABLES:
        if table in doc:
            raise InvalidPackage(f"Cargo.toml: [{table}] is not allowed in a tool package")
    for where in ("dependencies", "dev-dependencies"):
        _check_dependencies(doc.get(where, {}), where)
    for target, spec in doc.get("target", {}).items():
        for where in ("dependencies", "dev-dependencies", "build-dependencies"):
            if where in spec:
                if where == "build-dependencies":
                    raise InvalidPackage("Cargo.toml: build-dependencies are not allowed")
                _check_dependencies(spec[where], f"target.{target}.{where}")


def check_source(path: str, text: str) -> None:
    """Reject Rust source that reads host files or environment at compile time."""
    for m in _INCLUDE_RE.finditer(text):
        if not _SAFE_REL.match(m.group(2).strip()):
            raise InvalidPackage(
                f"{path}: {m.group(1)}!({m.group(2).strip()}) may only name a relative path inside the package"
            )
    for m in _PATH_ATTR_RE.finditer(text):
        if m.group(1).startswith("/") or ".." in m.group(1):
            raise InvalidPackage(f"{path}: #[path = {m.group(1)!r}] points outside the package")
    for m in _ENV_RE.finditer(text):
        if not m.group(2).startswith("CARGO_PKG_"):
            raise InvalidPackage(f"{path}: {m.group(1)}!({m.group(2)!r}) reads the build host's environment")


def check_package(files: dict[str, bytes], symlinks: frozenset[str] | set[str] = frozenset()) -> tuple[ToolManifest, list[Case]]:
    """Check a whole source tree (path -> content) and return its manifest and cases."""
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        raise InvalidPackage(f"missing {', '.join(missing)}")
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
        if path.endswith(".rs"):
            try:
                check_source(path, data.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidPackage(f"{path} is not UTF-8") from None
    return parse_manifest(files["tool.json"]), parse_cases(files["tests/cases.jsonl"])


def manifest_json(manifest: ToolManifest) -> bytes:
    """Serialise a manifest the way evogit writes tool.json (indented, stable)."""
    return (json.dumps(msgspec.to_builtins(manifest), indent=2, ensure_ascii=False) + "\n").encode()
