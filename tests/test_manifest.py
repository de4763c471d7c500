"""Package rules: every forbidden shape is rejected with a message that names the problem."""

from __future__ import annotations

import json

import pytest

from evogit.errors import InvalidName, InvalidPackage
from evogit.manifest import check_name, check_package, parse_cases

from .conftest import tool_files


def test_valid_package_passes():
    manifest, cases = check_package(tool_files())
    assert manifest.name == "echo-tool"
    assert [c.name for c in cases] == ["plain", "upper", "bad"]
    assert cases[2].exit == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"build.rs": b"fn main() {}"}, "build.rs: build scripts are not allowed"),
        ({".cargo/config.toml": b""}, ".cargo/ configuration is not allowed"),
        ({"build/tool.wasm": b""}, "build/ is reserved"),
        ({"Cargo.toml": b'[package]\nname = "tool"\nversion = "0.1.0"\nbuild = "gen.rs"\n'}, "[package] 'build' is not allowed"),
        ({"Cargo.toml": b'[package]\nname = "tool"\nversion = "0.1.0"\n[build-dependencies]\ncc = "1"\n'}, "[build-dependencies] is not allowed"),
        ({"Cargo.toml": b'[package]\nname = "tool"\nversion = "0.1.0"\n[dependencies]\nserde_json = { path = "/tmp/x" }\n'}, "uses 'path'"),
        ({"Cargo.toml": b'[package]\nname = "tool"\nversion = "0.1.0"\n[dependencies]\nregex = { git = "https://x/y" }\n'}, "uses 'git'"),
        ({"Cargo.toml": b'[package]\nname = "tool"\nversion = "0.1.0"\n[dependencies]\nlibc = "0.2"\n'}, "dependency 'libc' in [dependencies] is not allowed"),
        ({"Cargo.toml": b'[package]\nname = "tool"\nversion = "0.1.0"\n[dependencies]\nj = { package = "libc", version = "0.2" }\n'}, "dependency 'libc'"),
        ({"Cargo.toml": b'[package]\nname = "tool"\nversion = "0.1.0"\n[lib]\nproc-macro = true\n'}, "[lib] is not allowed"),
        ({"Cargo.toml": b'[package]\nname = "tool"\nversion = "0.1.0"\n[[bin]]\nname = "x"\npath = "/etc/x.rs"\n'}, "[bin] is not allowed"),
        ({"Cargo.toml": b'[package]\nname = "tool"\nversion = "0.1.0"\n[patch.crates-io]\nregex = { path = "/x" }\n'}, "[patch] is not allowed"),
        ({"Cargo.toml": b'[package]\nname = "other"\nversion = "0.1.0"\n'}, 'name must be "tool"'),
        ({"Cargo.toml": b"not toml ["}, "Cargo.toml is not valid TOML"),
        ({"src/main.rs": b'const P: &str = include_str!("/etc/passwd"); fn main() {}'}, '`include_str` is not allowed'),
        ({"src/main.rs": b'const P: &[u8] = include_bytes!("../../secret"); fn main() {}'}, "`include_bytes` is not allowed"),
        ({"src/main.rs": b'const P: &str = include_str!(concat!("/et", "c/passwd")); fn main() {}'}, "`include_str` is not allowed"),
        ({"src/main.rs": b'#[path = "/etc/evil.rs"] mod evil; fn main() {}'}, "src/main.rs:1: `path` in an attribute"),
        ({"src/main.rs": b'const H: &str = env!("HOME"); fn main() {}'}, "`env!` is not allowed"),
        ({"src/main.rs": b'const H: Option<&str> = option_env!("AWS_SECRET"); fn main() {}'}, "`option_env` is not allowed"),
    ],
)
def test_forbidden_shapes_are_rejected(change, message):
    files = tool_files()
    files.update(change)
    with pytest.raises(InvalidPackage) as err:
        check_package(files)
    assert message in str(err.value)


def test_symlinks_and_missing_files_are_rejected():
    with pytest.raises(InvalidPackage, match="symbolic links are not allowed"):
        check_package(tool_files(), symlinks={"src/lib.rs"})
    files = tool_files()
    del files["tests/cases.jsonl"]
    with pytest.raises(InvalidPackage, match="missing tests/cases.jsonl"):
        check_package(files)


def test_manifest_errors_are_clear():
    files = tool_files()
    m = json.loads(files["tool.json"])
    m["input_schema"] = {"type": "nonsense"}
    files["tool.json"] = json.dumps(m).encode()
    with pytest.raises(InvalidPackage, match="input_schema is not a valid JSON Schema"):
        check_package(files)
    files["tool.json"] = b"{"
    with pytest.raises(InvalidPackage, match="tool.json is not valid JSON"):
        check_package(files)
    m["input_schema"] = {"type": "object"}
    m["surprise"] = 1
    files["tool.json"] = json.dumps(m).encode()
    with pytest.raises(InvalidPackage, match="surprise"):
        check_package(files)


def test_cases_errors_are_clear():
    with pytest.raises(InvalidPackage, match="has no cases"):
        parse_cases(b"\n\n")
    with pytest.raises(InvalidPackage, match="line 2"):
        parse_cases(b'{"name": "a", "input": 1, "expect": 2}\n{"name": "b"}\n')
    with pytest.raises(InvalidPackage, match="duplicate case name 'a'"):
        parse_cases(b'{"name": "a", "input": 1, "expect": 2}\n{"name": "a", "input": 1, "expect": 2}\n')


@pytest.mark.parametrize("name", ["word-count", "a", "x2", "csv-to-json"])
def test_good_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "Word", "a_b", "-a", "a-", "a--b", "a/b", "1a", "a" * 65, "../x"])
def test_bad_names(name):
    with pytest.raises(InvalidName):
        check_name(name)


def test_schema_text_puts_the_schemas_in_words():
    from evogit.manifest import ToolManifest

    m = ToolManifest(name="t", description="d", input_schema={"type": "object", "properties": {
        "csv": {"type": "string", "description": "The CSV text to parse. Line endings may be CRLF."},
        "delimiter": {"type": "string", "description": "One character, e.g. \";\". Not a quote."},
        "header": {"type": "boolean", "description": "long words " * 20}}},
        output_schema={"type": "object", "properties": {"rows": {"type": "array"}}})
    text = m.schema_text()
    assert text.startswith('input: csv (The CSV text to parse), delimiter (One character, e.g. ";"), header (long')
    assert text.endswith("…); output: rows")
    assert ToolManifest(name="t", description="d", input_schema={}, output_schema={"type": "string"}).schema_text() == ""


@pytest.mark.parametrize("source", [
    'fn main() { println!("include_str!(\\"/etc/hostname\\") and env!(\\"HOME\\")"); } // include!("/x")',
    '/* nested /* include_str!("/etc/passwd") */ still a comment */ fn main() {}',
    'fn main() { let include = 1; let env = 2; let path = include + env; let q = \'"\'; let s: &\'static str = r#"a"b"#; }',
    'fn main() { let args: Vec<String> = std::env::args().collect(); println!("{:?}", std::env::args()); }',
    'fn main() { let url = url::Url::parse("a:b").unwrap(); let _ = serde_json::json!({"path": url.path()}); }',
    'macro_rules! twice { ($path:expr) => { $path * 2 } } fn main() { if !(twice!(1) == 2) { panic!() } }',
])
def test_source_that_only_mentions_the_forbidden_names_passes(source):
    from evogit.manifest import check_source

    check_source("src/main.rs", source)


def test_a_file_not_named_rs_is_checked_too():
    with pytest.raises(InvalidPackage, match=r"src/data\.txt:1: `include_str` is not allowed"):
        check_package(tool_files(extra={"src/data.txt": b'include_str!("/etc/passwd")'}))
    # Prose that is not Rust tokens (a byte literal b' never closed) could not be compiled: it passes.
    check_package(tool_files(extra={"README.md": b"b's version, don't \"quote\n", "logo.png": b"\x89PNG\xff"}))
    with pytest.raises(InvalidPackage, match="src/main.rs: cannot be read as Rust source"):
        check_package(tool_files(main_rs="fn main() { let b = b's; }"))


def test_a_name_with_a_final_newline_is_not_a_name():
    for bad in ("abc\n", "abc\r\n", "\nabc", "a b"):
        with pytest.raises(InvalidName):
            check_name(bad)
    assert check_name("abc-1") == "abc-1"
