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


def test_system_prompt_states_the_contract_rules_crates_and_an_example():
    text = prompt.system_prompt()
    for needle in ("Rust 1.63", "let-else", "read_to_string", 'serde_json = "1"   # 1.0.87', "base64 = \"0.13\"",
                   "include_str!", "[build-dependencies]", wire.BEGIN, "word-count", '"superseded"'):
        assert needle in text, needle


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
