"""The authoring wire format and prompts (evogit/agent/wire.py, prompt.py): what a reply may be, how it is
mended, how a mutation inherits its parent's cases, and that the skeleton the model fills really builds."""

from __future__ import annotations

import json

import pytest

from evogit.agent import prompt, wire
from evogit.errors import InvalidPackage
from evogit.manifest import Case, parse_cases
from evogit.runtime import Runtime

from .conftest import tool_files


def _reply(**files) -> dict:
    base = {k: v.decode() for k, v in tool_files("echo-tool").items()}
    base.update(files)
    return {"files": base, "superseded": [], "notes": "n"}


def test_a_whole_reply_parses_to_files():
    reply = wire.parse_reply(_reply())
    assert reply.files == tool_files("echo-tool") and reply.notes == "n" and reply.superseded == []


def test_reply_with_objects_for_tool_json_and_cases_is_mended():
    files = _reply()["files"]
    files["tool.json"] = json.loads(files["tool.json"])
    files["tests/cases.jsonl"] = [json.loads(line) for line in files["tests/cases.jsonl"].splitlines()]
    reply = wire.parse_reply({"files": files, "superseded": [], "notes": ""})
    assert json.loads(reply.files["tool.json"]) == files["tool.json"]
    assert [c.name for c in parse_cases(reply.files["tests/cases.jsonl"])] == ["plain", "upper", "bad"]


@pytest.mark.parametrize("bad, message", [
    ([], "one JSON object"),
    ({"files": "x"}, 'no "files"'),
    ({"files": {"tool.json": "{}"}}, "lacks Cargo.toml"),
    ({"files": {**_reply()["files"], "build.rs": "fn main(){}"}}, "unexpected files build.rs"),
    ({"files": {**_reply()["files"], "src/main.rs": 3}}, "must be the file's text"),
    ({"files": _reply()["files"], "superseded": [{"case": "plain", "reason": " "}]}, "needs a reason"),
    ({"files": _reply()["files"], "superseded": ["plain"]}, '{"case": NAME'),
    ({"files": {**_reply()["files"], "src/main.rs": "x" * (wire.MAX_FILE + 1)}}, "larger than"),
])
def test_malformed_replies_get_a_message_for_the_model(bad, message):
    with pytest.raises(InvalidPackage, match=message):
        wire.parse_reply(bad)


def test_a_main_rs_with_only_the_marked_part_goes_into_the_skeleton():
    logic = 'fn run(input: &Value) -> Result<Value, String> { Ok(input.clone()) }\n'
    reply = wire.parse_reply(_reply(**{"src/main.rs": logic}), skeleton=prompt.SKELETON)
    main = reply.files["src/main.rs"].decode()
    assert "fn main()" in main and logic.strip() in main and "counts_characters" not in main
    marked = f"{wire.BEGIN}\n{logic}{wire.END}\n"
    assert wire.parse_reply(_reply(**{"src/main.rs": marked}), skeleton=prompt.SKELETON).files["src/main.rs"] == main.encode()


def _cases(*cases: Case) -> bytes:
    return "".join(json.dumps({"name": c.name, "input": c.input, "expect": c.expect, "exit": c.exit}) + "\n"
                   for c in cases).encode()


PARENT = [Case("a", {"x": 1}, {"y": 1}), Case("b", {"x": 2}, {"y": 2}), Case("c", {"x": 3}, {"y": 3})]


def test_inherited_cases_dropped_without_superseding_are_put_back():
    data, applied, notes = wire.inherit_cases(PARENT, _cases(PARENT[0], Case("new", {"x": 9}, {"y": 9})), [])
    assert [c.name for c in parse_cases(data)] == ["a", "b", "c", "new"] and applied == []
    assert any("'b' was dropped" in n for n in notes) and any("'c' was dropped" in n for n in notes)


def test_inherited_case_changed_without_superseding_keeps_the_parents():
    data, _, notes = wire.inherit_cases(PARENT, _cases(Case("a", {"x": 1}, {"y": 100}), PARENT[1], PARENT[2]), [])
    assert parse_cases(data)[0].expect == {"y": 1} and any("'a' was changed" in n for n in notes)


def test_superseded_cases_leave_with_their_reason_and_unknown_ones_are_ignored():
    sup = [wire.Supersede("b", "b's rule changed"), wire.Supersede("zz", "no such case")]
    data, applied, notes = wire.inherit_cases(PARENT, _cases(PARENT[0], Case("b", {"x": 2}, {"y": 20})), sup)
    cases = {c.name: c for c in parse_cases(data)}
    assert applied == [sup[0]] and cases["b"].expect == {"y": 20} and "c" in cases
    assert any("'zz' is not one of the parent's" in n for n in notes)


def test_examples_become_cases_named_by_their_input():
    ex = wire.example_cases([{"input": {"x": 5}, "expect": {"y": 5}}, {"input": {"x": 6}, "expect": {"error": "no"}, "exit": 1}])
    assert ex[0].name.startswith("example-") and ex[0].name != ex[1].name and ex[1].exit == 1
    assert wire.example_cases([{"input": {"x": 5}, "expect": {"y": 0}}])[0].name == ex[0].name
    data, _, _ = wire.inherit_cases(PARENT, _cases(*PARENT), [], ex)
    assert len(parse_cases(data)) == 5
    with pytest.raises(InvalidPackage, match="example 1"):
        wire.example_cases([{"input": 1}])


def test_system_prompt_states_the_contract_the_format_and_an_example_in_skeleton_form():
    text = prompt.system_prompt()
    for needle in ("Rust 1.63", "let-else", "fn run(input: &Value) -> Result<Value, String>", "```json", "```rust",
                   "```jsonl", '"crates"', "regex", "base64", wire.BEGIN, wire.END, "word-count", '"exit": 1'):
        assert needle in text, needle
    assert "fn main()" not in text.split("Example.")[1]  # the example is the marked part, not a whole program
    assert len(text) < 4200  # processed on every call of a CPU model (the JSON-format prompt was 9,119)


def test_the_system_prompts_example_reads_as_a_package():
    text = prompt.system_prompt()
    reply = wire.read_reply(text[text.index("```json", text.index("Example.")):], prompt.SKELETON)
    assert json.loads(reply.files["tool.json"])["name"] == "word-count" and reply.mended == []
    assert reply.files["Cargo.toml"] == wire.cargo_toml() and b'serde_json = "1"' in reply.files["Cargo.toml"]
    main_rs = reply.files["src/main.rs"].decode()
    assert main_rs.count("fn main()") == 1 and "split_whitespace" in main_rs and main_rs.index(wire.BEGIN) < main_rs.index("fn run(")
    assert len(parse_cases(reply.files["tests/cases.jsonl"])) == 5


@pytest.mark.slow
def test_the_skeleton_builds_green(empty_rt: Runtime):
    files = tool_files("length", main_rs=prompt.SKELETON, cases=[
        {"name": "ascii", "input": {"text": "abc"}, "expect": {"length": 3}},
        {"name": "bad", "input": {"text": 1}, "expect": {"error": '"text" must be a string'}, "exit": 1},
    ])
    manifest = json.loads(files["tool.json"])
    manifest["name"] = "length"
    manifest["input_schema"] = {"type": "object", "properties": {"text": {}}, "required": ["text"]}
    manifest["output_schema"] = {"type": "object", "properties": {"length": {"type": "integer"}}}
    files["tool.json"] = json.dumps(manifest).encode()
    outcome = empty_rt.commit("length", files, "the skeleton as a tool")
    assert outcome.ok, outcome.error
    assert outcome.record is None and empty_rt.builder.last_record(outcome.commit).unit_tests["passed"] == 1


# -- the text format: a JSON header, the Rust part, the cases -----------------------------------------------------
HEADER = {"name": "shout", "description": "Upper-case a text.",
          "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
          "output_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
          "tags": ["text"], "examples": ["make this text upper case", "shout it"], "crates": []}
SHOUT = '''fn run(input: &Value) -> Result<Value, String> {
    let text = input.get("text").and_then(Value::as_str).ok_or("\\"text\\" must be a string")?;
    Ok(json!({ "text": text.to_uppercase() }))
}
'''
CASE_LINES = ('{"name": "plain", "input": {"text": "ab"}, "expect": {"text": "AB"}}\n'
              '{"name": "bad", "input": {"text": 1}, "expect": {"error": "\\"text\\" must be a string"}, "exit": 1}\n')


def text_reply(header: object = None, code: str = SHOUT, cases: str = CASE_LINES, lang: str = "rust") -> str:
    head = header if isinstance(header, str) else json.dumps(header or HEADER)
    return f"```json\n{head}\n```\n```{lang}\n{code}```\n```jsonl\n{cases}```\n"


def logic_of(reply: wire.Reply) -> str:
    main = reply.files["src/main.rs"].decode()
    return main[main.index(wire.BEGIN) + len(wire.BEGIN):main.index(wire.END)].strip("\n") + "\n"


def test_text_reply_keeps_code_byte_for_byte_quotes_and_backslashes_included():
    code = SHOUT.replace("text.to_uppercase()", 'format!("\\"{}\\" \\\\ {}", text, r#"raw "q""#)')
    reply = wire.read_reply("Here you go:\n" + text_reply(code=code) + "\nThat's it.", prompt.SKELETON)
    assert logic_of(reply) == code and reply.mended == []
    assert [c.name for c in parse_cases(reply.files["tests/cases.jsonl"])] == ["plain", "bad"]
    manifest = json.loads(reply.files["tool.json"])
    assert "crates" not in manifest and manifest["examples"] == HEADER["examples"]


def test_text_reply_without_fence_labels_or_without_fences_for_the_code():
    unlabelled = text_reply(lang="")
    assert logic_of(wire.read_reply(unlabelled, prompt.SKELETON)) == SHOUT
    bare = f"```json\n{json.dumps(HEADER)}\n```\n\nThe code:\n\n{SHOUT}\n```jsonl\n{CASE_LINES}```"
    assert logic_of(wire.read_reply(bare, prompt.SKELETON)) == SHOUT
    no_header_fence = f"{json.dumps(HEADER)}\n```rust\n{SHOUT}```\n```jsonl\n{CASE_LINES}```"
    assert json.loads(wire.read_reply(no_header_fence, prompt.SKELETON).files["tool.json"])["name"] == "shout"


def test_fences_after_list_markers_are_fences():
    """Seen live (primes-up-to, luhn-check): the model numbered its blocks as the prompt does, "1. ```json"."""
    numbered = text_reply().replace("```json\n", "1. ```json\n").replace("```rust\n", "2. ```rust\n")
    reply = wire.read_reply(numbered.replace("```jsonl\n", "- ```jsonl\n"), prompt.SKELETON)
    assert logic_of(reply) == SHOUT and json.loads(reply.files["tool.json"])["name"] == "shout"
    assert [c.name for c in parse_cases(reply.files["tests/cases.jsonl"])] == ["plain", "bad"]


def test_text_reply_with_a_whole_main_rs_keeps_only_its_part():
    whole = prompt.SKELETON.replace(wire.BEGIN + "\n", "").replace(wire.END + "\n", "")
    reply = wire.read_reply(text_reply(code=whole), prompt.SKELETON)
    main = reply.files["src/main.rs"].decode()
    assert main.count("fn main()") == 1 and main.count("fn fail(") == 1 and main.count("use std::io::Read;") == 1
    assert any("fn main() was dropped" in m for m in reply.mended)
    marked = wire.read_reply(text_reply(code=prompt.SKELETON), prompt.SKELETON)
    assert marked.files["src/main.rs"] == prompt.SKELETON.encode() and marked.mended == []


def test_a_whole_program_without_run_stays_whole():
    program = 'use std::io::Read;\nfn main() {\n    let mut s = String::new();\n    std::io::stdin().read_to_string(&mut s).unwrap();\n    println!("{}", s);\n}\n'
    reply = wire.read_reply(text_reply(code=program), prompt.SKELETON)
    assert reply.files["src/main.rs"].decode() == program


def test_text_reply_with_doubled_braces_in_header_and_code():
    doubled_header = "{" + json.dumps(HEADER) + "}"
    doubled_code = SHOUT.replace("{", "{{").replace("}", "}}")
    reply = wire.read_reply(text_reply(header=doubled_header, code=doubled_code), prompt.SKELETON)
    assert logic_of(reply) == SHOUT and json.loads(reply.files["tool.json"])["name"] == "shout"
    assert any("doubled braces" in m for m in reply.mended)


def test_text_reply_cut_off_inside_the_cases_keeps_the_whole_lines():
    cut = text_reply()[:-len('must be a string"}, "exit": 1}\n```\n')]
    reply = wire.read_reply(cut, prompt.SKELETON)
    assert [c.name for c in parse_cases(reply.files["tests/cases.jsonl"])] == ["plain"]
    assert any("cases line 2" in m for m in reply.mended)


def test_text_reply_cases_as_a_json_list_unnamed_and_with_unknown_keys():
    cases = json.dumps([{"input": {"text": "a"}, "expect": {"text": "A"}, "why": "simple"},
                        {"name": "bad", "input": {"text": 1}, "expect": {"error": "no"}}])
    reply = wire.read_reply(text_reply(cases=cases + "\n").replace("```jsonl", "```json"), prompt.SKELETON)
    got = parse_cases(reply.files["tests/cases.jsonl"])
    assert [(c.name, c.exit) for c in got] == [("case-1", 0), ("bad", 1)]  # an {"error"} case exits 1


def test_cargo_toml_is_generated_from_the_crates_named_and_used():
    code = "use regex::Regex;\n" + SHOUT.replace("text.to_uppercase()", 'Regex::new("a").unwrap().replace_all(text, "b")')
    reply = wire.read_reply(text_reply({**HEADER, "crates": ["chrono", "tokio"]}, code=code), prompt.SKELETON)
    cargo = reply.files["Cargo.toml"].decode()
    assert 'regex = "1"' in cargo and "chrono = {" in cargo and 'serde_json = "1"' in cargo and "tokio" not in cargo
    assert any("'tokio' is not available" in m for m in reply.mended)


def test_test_functions_named_after_cases_become_identifiers():
    code = SHOUT + '#[cfg(test)]\nmod tests {\n    use super::*;\n    #[test]\n    fn text-not-string() { assert!(run(&json!({"text": 1})).is_err()); }\n}\n'
    reply = wire.read_reply(text_reply(code=code), prompt.SKELETON)
    assert "fn text_not_string()" in logic_of(reply)


def test_run_is_written_from_the_schemas_around_a_typed_function():
    header = {**HEADER, "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
              "output_schema": {"type": "object", "properties": {"is_palindrome": {"type": "boolean"}}}}
    code = "fn is_palindrome(text: &str) -> bool {\n    let t: Vec<char> = text.chars().collect();\n    t.iter().eq(t.iter().rev())\n}\n"
    reply = wire.read_reply(text_reply(header, code=code), prompt.SKELETON)
    logic = logic_of(reply)
    assert "fn run(input: &Value)" in logic and "is_palindrome(text)" in logic and '"is_palindrome": result' in logic
    assert any("written from the schemas" in m for m in reply.mended)


def test_a_reply_missing_a_block_says_which():
    with pytest.raises(InvalidPackage, match="```rust block"):
        wire.read_reply(f"```json\n{json.dumps(HEADER)}\n```\n```jsonl\n{CASE_LINES}```", prompt.SKELETON)
    with pytest.raises(InvalidPackage, match="```json header"):
        wire.read_reply(f"```rust\n{SHOUT}```", prompt.SKELETON)
    with pytest.raises(InvalidPackage, match="empty"):
        wire.read_reply("  \n", prompt.SKELETON)


def test_the_json_format_is_still_read():
    files = {"tool.json": json.dumps(HEADER), "Cargo.toml": wire.cargo_toml().decode(), "src/main.rs": SHOUT,
             "tests/cases.jsonl": CASE_LINES}
    reply = wire.read_reply(json.dumps({"files": files, "superseded": [], "notes": "n"}), prompt.SKELETON)
    assert logic_of(reply) == SHOUT and reply.notes == "n"
    fenced = "Here:\n```json\n" + json.dumps({"files": files, "superseded": [], "notes": ""}) + "\n```"
    assert logic_of(wire.read_reply(fenced, prompt.SKELETON)) == SHOUT


def test_show_package_is_read_back_as_the_same_package():
    reply = wire.read_reply(text_reply({**HEADER, "crates": ["regex"]}), prompt.SKELETON)
    again = wire.read_reply(wire.show_package(reply.files), prompt.SKELETON)
    assert again.files == reply.files


def test_a_fix_that_sends_only_the_code_keeps_the_rest_of_the_package_it_fixes():
    base = wire.read_reply(text_reply({**HEADER, "crates": ["regex"]}), prompt.SKELETON).files
    fixed = SHOUT.replace("to_uppercase", "to_lowercase")
    reply = wire.read_reply(f"The bug was the case.\n```rust\n{fixed}```\n", prompt.SKELETON, base)
    assert logic_of(reply) == fixed and reply.files["tool.json"] == base["tool.json"]
    assert reply.files["tests/cases.jsonl"] == base["tests/cases.jsonl"] and b"regex" in reply.files["Cargo.toml"]
    assert reply.mended == ["the header and the cases left out of the reply: kept as they were"]
    with pytest.raises(InvalidPackage, match="```json header"):
        wire.read_reply(f"```rust\n{fixed}```\n", prompt.SKELETON)  # nothing to keep them from
    with pytest.raises(InvalidPackage, match="```json header"):
        wire.read_reply("I fixed it.", prompt.SKELETON, base)  # a reply with nothing in it is no fix


def test_a_header_written_into_the_cases_block_is_the_header():
    reply = wire.read_reply(f"```rust\n{SHOUT}```\n```jsonl\n{json.dumps(HEADER)}\n{CASE_LINES}```", prompt.SKELETON)
    assert json.loads(reply.files["tool.json"])["name"] == "shout"
    assert [c.name for c in parse_cases(reply.files["tests/cases.jsonl"])] == ["plain", "bad"]


def test_compiler_evidence_leaves_out_the_lists_a_small_model_cannot_use():
    from evogit.agent.author import _focused

    rendered = ("error[E0277]: cannot subtract `char` from `u8`\n  --> src/main.rs:15:36\n   |\n15 |  let s = c as u8 - base;\n"
                "   |                  ^ no implementation for `u8 - char`\n   |\n"
                "   = help: the trait `Sub<char>` is not implemented for `u8`\n"
                "   = help: the following other types implement trait `Sub<Rhs>`:\n             <&'a f32 as Sub<f32>>\n")
    focused = _focused(rendered)
    assert "no implementation for `u8 - char`" in focused and "Sub<char>` is not implemented" in focused
    assert "f32" not in focused


@pytest.mark.parametrize("text", ["{" * 1_000_000, "x { " * 250_000, "```json\n" + "[" * 500_000])
def test_a_hostile_reply_is_refused_whole(text: str):
    with pytest.raises(InvalidPackage):  # before the prose search was bounded, the first took minutes (n squared)
        wire.read_reply(text, prompt.SKELETON)


def test_repair_rounds_ask_warmer_but_never_cooler_than_configured():
    from types import SimpleNamespace

    from evogit.agent.author import Author

    def at(configured: float, rnd: int) -> float:
        fake = SimpleNamespace(client=SimpleNamespace(config=SimpleNamespace(temperature=configured)))
        return Author._temperature(fake, rnd)  # type: ignore[arg-type]

    assert [at(0.2, r) for r in (1, 2, 3, 4, 5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert [at(1.5, r) for r in (1, 2)] == [1.5, 1.5]
