"""Bad input, tried as an attacker and as a careless user would: strict JSON everywhere, depth and size limits
checked before decoding, argument bytes that are not UTF-8, limit values out of range. Every one ends in a
clean error (exit 1, or 2 for usage), never a traceback or exit 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from evogit import jsonio
from evogit.cli import main
from evogit.contract import Contract
from evogit.errors import InvalidInput, InvalidJSON, InvalidLimit, InvalidPackage
from evogit.manifest import ToolManifest, check_package
from evogit.runtime import Runtime
from evogit.sandbox import Sandbox
from evogit.worker import WorkerPool

from .conftest import tool_files

DEEP = "[" * 100_000 + "]" * 100_000
ROOT = Path(__file__).resolve().parent.parent

# A WASI module that copies stdin to stdout: whatever the input is, the tool prints it (no cargo needed).
CAT_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (loop $copy
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 65536))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (i32.gt_u (i32.load (i32.const 8)) (i32.const 0))
        (then
          (i32.store (i32.const 4) (i32.load (i32.const 8)))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
          (br $copy))))))
"""

# A library tool that prints its input's "raw" field verbatim and exits with "exit".
PARROT_RS = r'''
use serde_json::Value;
use std::io::Read;
fn main() {
    let mut raw = String::new();
    std::io::stdin().read_to_string(&mut raw).unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    print!("{}", v.get("raw").and_then(Value::as_str).unwrap_or(""));
    std::process::exit(v.get("exit").and_then(Value::as_i64).unwrap_or(0) as i32);
}
'''


def invoke(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def _one_error_line(result, code: int) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert [ln for ln in result.output.splitlines() if ln.startswith("Error: ")], result.output


def _strict(text: str):
    """Decode as RFC 8259 allows only (Python's json would take NaN and Infinity)."""
    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def parrot_files(cases: list[dict] | None = None) -> dict[str, bytes]:
    files = tool_files("parrot", main_rs=PARROT_RS, cases=cases or [
        {"name": "echo", "input": {"raw": '{"a": [1, 2]}'}, "expect": {"a": [1, 2]}}])
    manifest = json.loads(files["tool.json"])
    manifest["description"] = "Print the 'raw' field verbatim."
    manifest["input_schema"] = {"type": "object", "properties": {"raw": {"type": "string"}, "exit": {"type": "integer"}}}
    manifest["output_schema"] = {}
    files["tool.json"] = json.dumps(manifest).encode()
    return files


@pytest.fixture(scope="module")
def parrot(tmp_path_factory) -> Runtime:
    rt, _ = Runtime.init(tmp_path_factory.mktemp("parrot") / "skills", starter=False)
    outcome = rt.commit("parrot", parrot_files(), "A tool that prints what it is told to")
    assert outcome.ok, outcome.error
    return rt


@pytest.fixture(scope="module")
def cat_wasm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cat") / "cat.wasm"
    path.write_bytes(wasmtime.wat2wasm(CAT_WAT))
    return path


# -- strict JSON -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"x": NaN}', "[1e400]", '"\\ud800"', "[1,]",
                                  "\ufeff{}", '{"a": 1} {"b": 2}'])
def test_json_that_rfc_8259_refuses_is_refused(text: str):
    with pytest.raises(InvalidJSON, match="input is not valid JSON"):
        jsonio.decode(text.encode(), what="input")


def test_invalid_utf8_in_json_is_refused():
    with pytest.raises(InvalidJSON, match="not valid JSON"):
        jsonio.decode(b'{"text": "\xff"}')


def test_evogit_never_prints_nan():
    with pytest.raises(ValueError):
        jsonio.encode({"x": float("nan")})


@pytest.mark.parametrize("printed", ["NaN", "Infinity", "-Infinity", '{"x": NaN}', "[1e400]"])
def test_tool_printing_nan_or_infinity_is_invalid_output(cat_wasm: Path, printed: str):
    result = invoke("run", "--wasm", str(cat_wasm), "--", printed)
    _one_error_line(result, 1)
    assert "invalid_output: output is not valid JSON" in result.output
    result = invoke("run", "--wasm", str(cat_wasm), "--json", "--", printed)  # the envelope itself is strict JSON
    assert result.exit_code == 1
    envelope = _strict(result.stdout)
    assert envelope["ok"] is False and envelope["error"]["kind"] == "invalid_output" and envelope["output"] is None


@pytest.mark.slow
@pytest.mark.parametrize("printed", ["NaN", '{"x": -Infinity}'])
def test_library_tool_printing_nan_is_invalid_output_and_json_stays_strict(parrot: Runtime, printed: str):
    outcome = parrot.run("parrot", json.dumps({"raw": printed}).encode())
    assert outcome.error == "invalid_output" and "not valid JSON" in outcome.detail
    result = invoke("run", "parrot", json.dumps({"raw": printed}), "--json", "--repo", str(parrot.repo.path))
    assert _strict(result.stdout)["error"]["kind"] == "invalid_output"


@pytest.mark.slow
@pytest.mark.parametrize("given", [b'{"raw": NaN}', b'{"raw": "x", "exit": Infinity}', b'{"raw": "x", "exit": 1e999}'])
def test_nan_or_infinity_input_is_invalid_input(parrot: Runtime, given: bytes):
    outcome = parrot.run("parrot", given)
    assert outcome.error == "invalid_input" and "input is not valid JSON" in outcome.detail


@pytest.mark.parametrize("where, text", [
    ("tests/cases.jsonl", '{"name": "n", "input": {"text": NaN}, "expect": {"text": "x"}}\n'),
    ("tests/cases.jsonl", '{"name": "n", "input": {"text": "x"}, "expect": {"n": Infinity}}\n'),
    ("tool.json", '{"name": "echo-tool", "description": "d", "input_schema": {"maximum": NaN}, "output_schema": {}}'),
])
def test_nan_in_a_case_file_or_tool_json_breaks_the_package(where: str, text: str):
    files = tool_files()
    files[where] = text.encode()
    with pytest.raises(InvalidPackage, match=f"{where}.*not valid JSON"):
        check_package(files)


def test_invalid_utf8_in_a_case_file_breaks_the_package():
    files = tool_files()
    files["tests/cases.jsonl"] = b'{"name": "n", "input": {"text": "\xff"}, "expect": {"text": "x"}}\n'
    with pytest.raises(InvalidPackage, match="tests/cases.jsonl line 1"):
        check_package(files)


# -- depth -----------------------------------------------------------------------------------------------------
def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


_tricky_text = st.text(alphabet='[]{}"\\ a\n\u00e9', max_size=8)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_tricky_text, inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=_json_values, limit=st.integers(0, 12), ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_depth_prescan_counts_brackets_outside_strings_only(value, limit: int, ascii_only: bool, indent):
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode()
    assert jsonio.too_deep(text, limit) == (_depth(value) > limit)


def test_depth_limit_is_exact():
    at_limit = "[" * jsonio.MAX_DEPTH + "]" * jsonio.MAX_DEPTH
    assert _depth(jsonio.decode(at_limit)) == jsonio.MAX_DEPTH
    for deeper in ("[" + at_limit + "]", '{"a": ' * 129 + "1" + "}" * 129, DEEP, "[" * 100_000):
        with pytest.raises(InvalidJSON, match="nests arrays or objects deeper than 128 levels"):
            jsonio.decode(deeper, what="input")
    assert jsonio.decode(json.dumps({"text": DEEP})) == {"text": DEEP}  # brackets in a string are text


def test_100k_deep_output_is_invalid_output(cat_wasm: Path):
    result = invoke("run", "--wasm", str(cat_wasm), DEEP)
    _one_error_line(result, 1)
    assert "invalid_output: output nests arrays or objects deeper than 128 levels" in result.output


@pytest.mark.slow
def test_100k_deep_input_or_output_is_a_clean_error_in_process_in_the_cli_and_in_a_worker(parrot: Runtime, tmp_path):
    deep_input, deep_output = DEEP.encode(), json.dumps({"raw": DEEP}).encode()
    assert parrot.run("parrot", deep_input).error == "invalid_input"
    assert parrot.run("parrot", deep_output).error == "invalid_output"
    repo = str(parrot.repo.path)
    result = invoke("run", "parrot", DEEP, "--repo", repo)
    _one_error_line(result, 1)
    assert "invalid_input: input nests arrays or objects deeper than 128 levels" in result.output
    batch = tmp_path / "batch.jsonl"
    batch.write_bytes(deep_input + b"\n" + deep_output + b"\n" + b'{"raw": "[1]"}\n')
    result = invoke("run", "parrot", "--batch", str(batch), "--repo", repo)
    kinds = [(e["error"] or {}).get("kind") for e in map(json.loads, result.stdout.splitlines())]
    assert kinds == ["invalid_input", "invalid_output", None]
    with WorkerPool(parrot.repo.path, workers=1) as pool:
        assert pool.run("parrot", deep_input).error == "invalid_input"
        assert pool.run("parrot", deep_output).error == "invalid_output"
        assert pool.run("parrot", b'{"raw": "[1]"}').output == [1]
        assert pool.restarts == 0  # no worker crashed


@pytest.mark.slow
def test_case_whose_output_is_100k_deep_gives_a_red_build_with_a_record(parrot: Runtime):
    cases = [{"name": "deep", "input": {"raw": DEEP}, "expect": []}]
    outcome = parrot.commit("parrot", parrot_files(cases), "A case whose output nests 100,000 levels")
    assert not outcome.ok and outcome.record is not None
    assert outcome.record.stage == "cases"
    assert "invalid_output: output nests arrays or objects deeper than 128 levels" in outcome.record.message
    assert parrot.builder.last_record(outcome.commit) is not None  # the record is kept
    assert parrot.run("parrot", b'{"raw": "1"}').output == 1  # the green version still runs


@pytest.mark.parametrize("where, text", [
    ("tests/cases.jsonl", json.dumps({"name": "deep", "input": {"text": "x"}, "expect": {"text": "x"}})[:-1]
     + ', "deeper": ' + DEEP + "}\n"),
    ("tests/cases.jsonl", '{"name": "deep", "input": ' + DEEP + ', "expect": 1}\n'),
    ("tool.json", '{"name": "echo-tool", "description": "d", "input_schema": ' + '{"items": ' * 100_000
     + "{}" + "}" * 100_000 + ', "output_schema": {}}'),
])
def test_100k_deep_case_file_or_schema_breaks_the_package(where: str, text: str):
    files = tool_files()
    files[where] = text.encode()
    with pytest.raises(InvalidPackage, match="nests arrays or objects deeper than 128 levels"):
        check_package(files)


def test_schema_nested_within_the_limit_but_too_deep_to_check_breaks_the_package():
    schema: dict = {}
    for _ in range(125):  # 127 levels of JSON in tool.json: within the limit, but jsonschema's check recurses
        schema = {"items": schema}
    files = tool_files()
    manifest = json.loads(files["tool.json"])
    manifest["input_schema"] = schema
    files["tool.json"] = json.dumps(manifest).encode()
    with pytest.raises(InvalidPackage, match="input_schema is nested too deeply to check"):
        check_package(files)


def test_nested_schema_that_fastjsonschema_cannot_compile_still_validates():
    schema: dict = {"type": "string"}
    for _ in range(40):  # fastjsonschema's generated code is then too deeply nested for Python's compiler
        schema = {"type": "object", "properties": {"a": schema}}
    manifest = ToolManifest("nested", "Nested.", input_schema=schema, output_schema={})
    contract = Contract(manifest)
    value: object = "leaf"
    for _ in range(40):
        value = {"a": value}
    assert contract.input_problem(value) is None
    bad: object = 5
    for _ in range(40):
        bad = {"a": bad}
    assert "is not of type 'string'" in (contract.input_problem(bad) or "")


# -- limits and size -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, value", [
    ("--timeout", "-1"), ("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "0"), ("--timeout", "3601"),
    ("--timeout", "soon"), ("--fuel", "-5"), ("--fuel", "1e24"), ("--fuel", "0"), ("--fuel", str(2**63)),
    ("--memory", "0"), ("--memory", "4097"), ("--memory", "-1"), ("--max-output", "0"), ("--max-output", "-1"),
    ("--max-output", "2g"), ("--max-input", "0"), ("--max-input", "1.5"),
])
def test_bad_limit_values_are_usage_errors(flag: str, value: str, tmp_path: Path):
    result = invoke("run", "word-count", "{}", flag, value, "--repo", str(tmp_path / "nowhere"))
    _one_error_line(result, 2)
    assert f"Invalid value for '{flag}': must be" in result.output


@pytest.mark.parametrize("key, value", [
    ("evogit.timeout", "-1"), ("evogit.timeout", "nan"), ("evogit.timeout", "inf"), ("evogit.fuel", "-5"),
    ("evogit.fuel", "1e24"), ("evogit.memory", "0"), ("evogit.maxOutput", "0"), ("evogit.maxInput", "lots"),
])
def test_bad_limits_in_git_config_are_an_error_naming_the_key(empty_rt: Runtime, key: str, value: str):
    empty_rt.repo.git.config[key] = value
    with pytest.raises(InvalidLimit, match=f"git config {key} is {value!r}: it must be"):
        empty_rt.default_limits()
    result = invoke("run", "word-count", "{}", "--repo", str(empty_rt.repo.path))
    _one_error_line(result, 1)
    assert f"git config {key} is" in result.output


def test_limits_in_git_config_take_git_suffixes(empty_rt: Runtime):
    config = empty_rt.repo.git.config
    config["evogit.maxInput"], config["evogit.timeout"], config["evogit.memory"] = "64m", "2.5", "128"
    limits = empty_rt.default_limits()
    assert (limits.max_input, limits.timeout, limits.memory) == (64 << 20, 2.5, 128 << 20)


def _peak_rss_mb_of(args: list[str], stdin=None) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI in a fresh process; its peak resident memory in MB. VmHWM (KiB) belongs to the process's own
    address space; ru_maxrss would carry over the size of a large parent (a pytest worker) across fork and exec."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = ("import os, sys\nfrom evogit.cli import main\ncode = 0\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\nsys.stdout.flush()\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
            "print('peak', hwm, file=sys.stderr, flush=True)\n"
            "os._exit(code if isinstance(code, int) else 1)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=env, stdin=stdin, timeout=120)
    peak = [ln for ln in done.stderr.decode().splitlines() if ln.startswith("peak ")]
    return done, int(peak[-1].split()[1]) / 1024


@pytest.mark.parametrize("how", ["-i", "stdin"])
def test_200mb_input_is_refused_without_being_held(cat_wasm: Path, tmp_path: Path, how: str):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: 200 MB of zeros, no disk used
        f.truncate(200 << 20)
    args = ["run", "--wasm", str(cat_wasm), *(["-i", str(big)] if how == "-i" else ["-"])]
    with open(big, "rb") as stdin:
        done, peak = _peak_rss_mb_of(args, stdin=stdin if how == "stdin" else subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr
    assert b"invalid_input: input is larger than 16,777,216 bytes (raise --max-input" in done.stderr
    assert peak < 150, f"peak RSS {peak:.0f} MB for a refused 200 MB input"


@pytest.mark.slow
def test_200mb_batch_line_is_refused_without_being_held(parrot: Runtime, tmp_path: Path):
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as f:
        f.write(b'{"raw": "1"}\n')
        f.truncate(200 << 20)  # then one 200 MB line of zeros
    done, peak = _peak_rss_mb_of(["run", "parrot", "--batch", str(big), "--repo", str(parrot.repo.path)])
    envelopes = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["ok"] for e in envelopes] == [True, False]
    assert envelopes[1]["error"]["message"].startswith("input is larger than 16,777,216 bytes")
    assert peak < 150, f"peak RSS {peak:.0f} MB for a refused 200 MB line"


def test_max_input_flag_raises_the_limit(cat_wasm: Path):
    text = json.dumps({"text": "x" * 100})
    result = invoke("run", "--wasm", str(cat_wasm), text, "--max-input", "50")
    assert result.exit_code == 1 and "input is larger than 50 bytes" in result.output
    assert invoke("run", "--wasm", str(cat_wasm), text, "--max-input", "1k").exit_code == 0



def test_stdin_reaches_the_tool_byte_for_byte(cat_wasm: Path):
    """The sandbox copies stdin straight from the bytes object (one copy, not two); nothing may be lost."""
    sandbox = Sandbox()
    loaded = sandbox.load(cat_wasm.read_bytes(), cache=False)
    for data in (b"", b"a\x00b", bytes(range(256)) * 1000):
        assert sandbox.run(loaded, data).stdout == data



# -- arguments -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["run", "word-count", "\udcff"],
    ["search", "\udcff"],
    ["run", "word-count", "{}", "--task", "\udcff"],
    ["feedback", "word-count", "--task", "caf\udce9", "--solved"],
    ["describe", "\udcff"],
    ["fork", "word-count", "x", "--description", "\udcff"],
])
def test_non_utf8_argument_is_a_usage_error(args: list[str], tmp_path: Path):
    result = invoke(*args, "--repo", str(tmp_path / "nowhere"))
    _one_error_line(result, 2)
    assert "is not UTF-8 text" in result.output


@pytest.mark.parametrize("args", [[b"search", b"\xff"], [b"run", b"word-count", b"\xff"],
                                  [b"run", b"word-count", b"{}", b"--task", b"\xff"]])
def test_non_utf8_bytes_in_argv_give_one_line_not_a_traceback(args: list[bytes], tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EVOGIT_REPO": str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable.encode(), b"-m", b"evogit", *args], capture_output=True, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    assert b"Traceback" not in done.stderr
    assert b"Error: Invalid value" in done.stderr and b"b'\\xff' is not UTF-8 text" in done.stderr


def test_a_path_that_is_not_utf8_is_still_a_path(tmp_path: Path):
    path = os.fsdecode(os.fsencode(tmp_path) + b"/lib\xff")
    result = invoke("init", path, "--no-starter")
    assert result.exit_code == 0, result.output
    assert invoke("list", "--repo", path).exit_code == 0


@pytest.mark.parametrize("args", [["search", "x", "-k", "0"], ["search", "x", "-k", "-1"],
                                  ["search", "x", "-k", "100000000000000000000"], ["log", "-n", "0"],
                                  ["log", "-n", "-3"]])
def test_bad_counts_are_usage_errors(args: list[str], tmp_path: Path):
    _one_error_line(invoke(*args, "--repo", str(tmp_path / "nowhere")), 2)


def test_init_under_a_file_is_a_one_line_error(tmp_path: Path):
    (tmp_path / "file").write_text("not a directory")
    result = invoke("init", str(tmp_path / "file" / "x"), "--no-starter")
    _one_error_line(result, 1)
    assert "Not a directory" in result.output
    assert (tmp_path / "file").read_text() == "not a directory"


@pytest.mark.parametrize("args", [["--task", "", "--solved"], ["--task", "   ", "--failed"],
                                  ["--task", "x", "--solved", "--failed"], ["--task", "x"]])
def test_feedback_blank_task_or_both_verdicts_is_a_usage_error(empty_rt: Runtime, args: list[str]):
    _one_error_line(invoke("feedback", "word-count", *args, "--repo", str(empty_rt.repo.path)), 2)
    assert not [e for _, _, e in empty_rt.log.read({}) if type(e).__name__ == "Feedback"]  # nothing recorded


def test_blank_task_from_the_library_is_invalid_input(empty_rt: Runtime):
    with pytest.raises(InvalidInput, match="the task is blank"):
        empty_rt.feedback("word-count", "  ", True)
    with pytest.raises(InvalidInput, match="the task is blank"):
        empty_rt.run("word-count", b"{}", task="")


@pytest.mark.parametrize("command", ["push", "pull"])
def test_empty_remote_is_a_usage_error_not_the_current_directory(empty_rt: Runtime, command: str, tmp_path: Path,
                                                                 monkeypatch):
    here = tmp_path / "here"
    subprocess.run(["git", "init", "-q", str(here)], check=True)
    monkeypatch.chdir(here)  # `Path('')` is the current directory: the refs would have gone here
    _one_error_line(invoke(command, "", "--repo", str(empty_rt.repo.path)), 2)
    refs = subprocess.run(["git", "-C", str(here), "for-each-ref"], capture_output=True, text=True).stdout
    assert refs == ""


@pytest.mark.parametrize("args", [["init", ""], ["init", "--repo", ""], ["list", "--repo", ""], ["--repo", "", "list"]])
def test_blank_repo_or_init_path_is_a_usage_error_not_the_current_directory(args: list[str], tmp_path: Path,
                                                                          monkeypatch):
    here = tmp_path / "project"
    subprocess.run(["git", "init", "-q", str(here)], check=True)
    hooks_before = sorted(p.name for p in (here / ".git" / "hooks").iterdir())
    monkeypatch.chdir(here)  # `evogit init ""` would have adopted this repository: hooks, tool branches
    _one_error_line(invoke(*args), 2)
    assert sorted(p.name for p in (here / ".git" / "hooks").iterdir()) == hooks_before
    assert not (here / ".git" / "evogit").exists()


def test_fork_with_a_blank_description_is_a_usage_error(empty_rt: Runtime):
    _one_error_line(invoke("fork", "word-count", "x", "--description", " ", "--repo", str(empty_rt.repo.path)), 2)


@pytest.mark.parametrize("rev", ["a" * 5000, "a b", "~", "HEAD^{tree}", "x\\"])
def test_build_of_a_rev_that_cannot_be_a_ref_is_one_line(empty_rt: Runtime, rev: str):
    result = invoke("build", rev, "--repo", str(empty_rt.repo.path))
    _one_error_line(result, 1)
    assert "no commit" in result.output


@pytest.mark.parametrize("spec", ["a@zz", "@", "@@", "", "word-count@", "a" * 5000, "word-count@" + "a" * 5000])
@pytest.mark.parametrize("command", ["describe", "lineage", "stats", "run"])
def test_odd_tool_specs_are_one_line_errors(empty_rt: Runtime, command: str, spec: str):
    _one_error_line(invoke(command, spec, *(["{}"] if command == "run" else []), "--repo", str(empty_rt.repo.path)), 1)


def test_input_that_is_a_directory_or_missing_is_a_usage_error(tmp_path: Path):
    for path in (tmp_path, tmp_path / "missing.json"):
        _one_error_line(invoke("run", "word-count", "-i", str(path), "--repo", str(tmp_path / "nowhere")), 2)


def test_run_wasm_dev_zero_reads_at_most_the_input_limit():
    """Found (issue 17): `run --wasm /dev/zero` reached 9.2 GB RSS."""
    result = invoke("run", "--wasm", "/dev/zero", "{}")
    _one_error_line(result, 1)
    assert "the module is larger than 67,108,864 bytes" in result.output


def test_run_wasm_with_dash_and_empty_stdin_is_one_line(cat_wasm: Path):
    result = invoke("run", "--wasm", str(cat_wasm), "-", input=b"")
    _one_error_line(result, 1)
    assert "invalid_output: no output" in result.output  # --wasm has no schema: the tool runs, prints nothing


@pytest.mark.slow
def test_run_with_dash_and_empty_stdin_is_invalid_input(parrot: Runtime):
    result = invoke("run", "parrot", "-", "--repo", str(parrot.repo.path), input=b"")
    _one_error_line(result, 1)
    assert "invalid_input: input is empty" in result.output


@pytest.mark.slow
def test_batch_of_binary_garbage_is_invalid_input_line_by_line(parrot: Runtime, tmp_path: Path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 8 + b"\n\xff\xfe{\n" + b'{"raw": "true"}\n')
    result = invoke("run", "parrot", "--batch", str(garbage), "--repo", str(parrot.repo.path))
    assert result.exit_code == 1 and "Traceback" not in result.output
    envelopes = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["error"]["kind"] if e["error"] else None for e in envelopes][-1] is None
    assert all(e["error"]["kind"] == "invalid_input" for e in envelopes[:-1]) and len(envelopes) >= 3


def test_push_of_branches_no_tool_can_be_named_after_is_reported_by_the_hub_not_a_crash(tmp_path: Path):
    hub = tmp_path / "hub.git"
    Runtime.init(hub, starter=False, bare=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GIT_AUTHOR_NAME": "Ann", "GIT_AUTHOR_EMAIL": "ann@example.org",
           "GIT_COMMITTER_NAME": "Ann", "GIT_COMMITTER_EMAIL": "ann@example.org"}
    src = tmp_path / "src"
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    (src / "README").write_text("x")
    subprocess.run(["git", "-C", str(src), "add", "README"], check=True)
    subprocess.run(["git", "-C", str(src), "commit", "-qm", "x"], check=True, env=env)
    done = subprocess.run([b"git", b"-C", os.fsencode(src), b"push", os.fsencode(hub),
                           b"HEAD:refs/heads/tools/\xff", b"HEAD:refs/heads/tools/UPPER"],
                          capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(b"invalid tool name") == 2, done.stderr
    assert b"unexpected" not in done.stderr and b"Traceback" not in done.stderr
