"""Authoring through the real `openai` client over HTTP against our scripted model server: create, repair
from the compiler's and the cases' own words, mutate with inherited cases, supersede with reasons, teach."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import msgspec
import pytest
from click.testing import CliRunner

from evogit import events as ev
from evogit.agent.author import Author
from evogit.agent.prompt import SKELETON
from evogit.agent.wire import BEGIN, END
from evogit.cli import main
from evogit.llm.client import ModelClient
from evogit.llm.config import ModelConfig
from evogit.runtime import Runtime, Supersession
from evogit.runtime.results import AuthorReport

pytestmark = pytest.mark.slow

KEY = "sk-test-0123456789abcdef"

MANIFEST = {
    "name": "reverse-text",
    "description": "Reverse a text by Unicode scalar values.",
    "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
                     "additionalProperties": False},
    "output_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
                      "additionalProperties": False},
    "tags": ["text"], "examples": ["reverse this string", "write the text backwards"],
}
CARGO = '[package]\nname = "tool"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nserde_json = "1"\n'
CASES = [
    {"name": "plain", "input": {"text": "abc"}, "expect": {"text": "cba"}},
    {"name": "unicode", "input": {"text": "héllo"}, "expect": {"text": "olléh"}},
    {"name": "empty", "input": {"text": ""}, "expect": {"text": ""}},
    {"name": "bad", "input": {"text": 1}, "expect": {"error": '"text" must be a string'}, "exit": 1},
]
REVERSE = '''fn run(input: &Value) -> Result<Value, String> {
    let text = input.get("text").and_then(Value::as_str).ok_or("\\"text\\" must be a string")?;
    Ok(json!({ "text": text.chars().rev().collect::<String>() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn reverses() { assert_eq!(run(&json!({"text": "ab"})).unwrap(), json!({"text": "ba"})); }
}
'''
WORDS = '''fn run(input: &Value) -> Result<Value, String> {
    let text = input.get("text").and_then(Value::as_str).ok_or("\\"text\\" must be a string")?;
    let words: Vec<&str> = text.split(' ').rev().collect();
    Ok(json!({ "text": words.join(" ") }))
}
'''
UPPER = REVERSE.replace("text.chars().rev().collect::<String>()", "text.to_uppercase()").replace(
    'json!({"text": "ba"})', 'json!({"text": "AB"})')
BROKEN = REVERSE.replace("text.chars().rev()", "txet.chars().rev()")


def package(logic: str = REVERSE, cases: list | None = None, manifest: dict | None = None, whole: bool = False,
            superseded: list | None = None, notes: str = "") -> dict:
    main_rs = (SKELETON[:SKELETON.index(BEGIN) + len(BEGIN)] + "\n" + logic + SKELETON[SKELETON.index(END):]
               if whole else logic)
    return {"reply": {"json": {"files": {
        "tool.json": json.dumps(manifest or MANIFEST, indent=2),
        "Cargo.toml": CARGO,
        "src/main.rs": main_rs,
        "tests/cases.jsonl": "".join(json.dumps(c) + "\n" for c in (cases if cases is not None else CASES)),
    }, "superseded": superseded or [], "notes": notes}}, "usage": {"prompt_tokens": 1000, "completion_tokens": 300}}


def words_package(plain: str, unicode: str) -> dict:
    """reverse-text turned into reverse-words: the character cases superseded (with these reasons), a words case."""
    words = [*CASES[2:], {"name": "words", "input": {"text": "a b c"}, "expect": {"text": "c b a"}}]
    sup = [{"case": "plain", "reason": plain}, {"case": "unicode", "reason": unicode}]
    return package(WORDS, cases=words, superseded=sup)


@pytest.fixture(autouse=True)
def _close_clients(monkeypatch):
    """Close every model client a test made (the CLI closes its own)."""
    made: list[ModelClient] = []
    original = ModelClient.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ModelClient, "__init__", init)
    yield
    for client in made:
        client.close()


@pytest.fixture
def model(scripted_model, monkeypatch):
    """Start a scripted server for a list of steps; the environment points evogit at it."""
    def start(steps: list, **script) -> object:
        server = scripted_model({"model": "scripted-coder", "steps": steps, **script})
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("EVOGIT_MODEL", "scripted-coder")
        return server
    return start


def author(rt: Runtime, server, rounds: int = 3, timeout: float = 60.0) -> Author:
    config = ModelConfig(model="scripted-coder", base_url=server.base_url, api_key=KEY, timeout=timeout, retries=2)
    return Author(rt, ModelClient(config, sink=rt.log.append), rounds=rounds)


def attempts(rt: Runtime) -> list[ev.AuthorAttempt]:
    return [e for _, _, e in rt.log.read() if isinstance(e, ev.AuthorAttempt)]


def git(rt: Runtime, *args: str) -> str:
    return subprocess.run(["git", "-C", str(rt.repo.path), *args], check=True, capture_output=True, text=True).stdout


def _create(rt: Runtime, model) -> None:
    server = model([package(whole=True)])
    result = author(rt, server).create("Reverse a text.", name="reverse-text")
    assert result.ok, result.message


def test_create_green_first_time(empty_rt: Runtime, model):
    server = model([package()])
    result = author(empty_rt, server).create("Reverse a text, character by character.")
    assert result.ok and result.tool == "reverse-text" and result.version is not None, result.message
    assert len(result.attempts) == 1 and result.tokens == 1300 and result.model == "scripted-coder"
    assert empty_rt.run("reverse-text", b'{"text": "evogit"}').output == {"text": "tigove"}
    message = git(empty_rt, "log", "-1", "--format=%B", "tools/reverse-text")
    assert message.startswith("Reverse a text, character by character.")
    assert "Evogit-Model: scripted-coder" in message and "Evogit-Attempts: 1" in message
    assert git(empty_rt, "tag", "-l", "tools/reverse-text/*").strip() == f"tools/reverse-text/{result.version.fingerprint}"
    (green,) = attempts(empty_rt)
    assert (green.stage, green.round, green.prompt_tokens, green.fingerprint) == ("green", 1, 1000, result.version.fingerprint)
    called = [e for _, _, e in empty_rt.log.read() if isinstance(e, ev.ModelCalled)]
    assert len(called) == 1 and called[0].outcome == "ok"
    body = server.requests[0].body
    assert "tools" not in body or not body["tools"]
    assert "response_format" not in body  # code never travels inside a JSON string a grammar could cut
    assert body["stream"] is True and body["max_tokens"] == 2048 and body["temperature"] == 0.2
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_create_that_fails_to_compile_is_repaired_from_the_diagnostics(empty_rt: Runtime, model):
    server = model([package(BROKEN), package()])
    result = author(empty_rt, server).create("Reverse a text.", name="reverse-text")
    assert result.ok, result.message
    assert [a.stage for a in result.attempts] == ["compile", "green"]
    repair = server.requests[1].body["messages"][-1]["content"]
    assert "E0425" in repair and "txet" in repair  # rustc's own words, with its error code
    assert "attempt 1: stage compile: compilation failed: error[E0425]" in repair
    assert len(server.requests[1].body["messages"]) == 2  # a summary, not the whole growing chat
    assert [(a.stage, a.error) for a in attempts(empty_rt)] == [("compile", "compile_failed"), ("green", None)]
    assert "Evogit-Attempts: 2" in git(empty_rt, "log", "-1", "--format=%B", "tools/reverse-text")


def test_rustcs_own_suggestions_are_applied_before_a_model_round_is_spent(empty_rt: Runtime, model):
    # the real model's most common slip (gcd-lcm, live): `Err("literal")` where run returns Result<_, String>;
    # rustc suggests `.to_string()`, evogit applies it and builds again, the model is not asked twice
    slip = REVERSE.replace("let text =", 'if input.get("text").map_or(false, Value::is_null) {\n'
                           '        return Err("\\"text\\" must be a string");\n    }\n    let text =')
    server = model([package(slip)])
    result = author(empty_rt, server).create("Reverse a text.", name="reverse-text")
    assert result.ok and len(server.requests) == 1, result.message
    assert any("rustc's suggestions were applied" in m and ".to_string()" in m for m in result.mended), result.mended
    source = git(empty_rt, "show", "tools/reverse-text:src/main.rs")
    assert 'return Err("\\"text\\" must be a string".to_string());' in source


def test_what_rustc_cannot_fix_goes_to_the_model_with_what_it_fixed(empty_rt: Runtime, model):
    broken = BROKEN.replace("let text =", 'let n: u64 = 5i64;\n    let text =')
    server = model([package(broken), package()])
    result = author(empty_rt, server).create("Reverse a text.", name="reverse-text")
    assert result.ok and [a.stage for a in result.attempts] == ["compile", "green"], result.message
    repair = server.requests[1].body["messages"][-1]["content"]
    assert "txet" in repair  # the error rustc has no fix for, in rustc's words
    assert "5u64" in repair and "rustc's suggestions were applied" in repair  # the fixed one, said


def test_schemas_that_reject_the_users_examples_are_fitted_to_them(empty_rt: Runtime, model):
    # live (fizzbuzz): the header said "items": {"type": "string"} for the list the user's examples show, and
    # every round went red on the schema while the code was right
    wrong = {**MANIFEST, "output_schema": {"type": "object", "properties": {"text": {"type": "integer",
             "description": "the text reversed"}}, "required": ["text", "length"], "additionalProperties": False}}
    server = model([package(manifest=wrong)])
    examples = [{"input": {"text": "ab"}, "expect": {"text": "ba"}}]
    result = author(empty_rt, server).create("Reverse a text.", examples=examples)
    assert result.ok and len(server.requests) == 1, result.message
    assert any("output_schema did not accept the user's examples" in m for m in result.mended), result.mended
    manifest = json.loads(git(empty_rt, "show", f"tools/{result.tool}:tool.json"))
    assert manifest["output_schema"]["properties"]["text"] == {"description": "the text reversed", "type": "string"}
    assert manifest["output_schema"]["required"] == ["text"]
    assert manifest["input_schema"] == MANIFEST["input_schema"]  # it accepted them: left as written


def test_create_whose_cases_fail_then_pass(empty_rt: Runtime, model):
    server = model([package(UPPER), package()])
    result = author(empty_rt, server).create("Reverse a text.")
    assert result.ok and [a.stage for a in result.attempts] == ["cases", "green"], result.message
    repair = server.requests[1].body["messages"][-1]["content"]
    assert "plain" in repair and '"ABC"' in repair and '"cba"' in repair  # the case, what it got, what it wanted


def test_create_that_never_goes_green_tags_nothing_and_records_every_attempt(empty_rt: Runtime, model):
    model([{**package(BROKEN), "times": 4}])
    result = CliRunner().invoke(main, ["create", "Reverse a text.", "--name", "reverse-text",
                                       "--repo", str(empty_rt.repo.path)])
    assert result.exit_code == 1, result.output
    assert "no green version after 4 attempts" in result.output
    assert empty_rt.repo.tools() == [] and empty_rt.repo.versions() == []
    rt = Runtime(empty_rt.repo.path)
    assert [(a.round, a.stage) for a in attempts(rt)] == [(1, "compile"), (2, "compile"), (3, "compile"), (4, "compile")]


def test_model_reply_with_json_in_a_fenced_block_on_a_server_without_json_schema(empty_rt: Runtime, model):
    reply = package()["reply"]["json"]
    fenced = {"reply": {"content": "Here it is:\n```json\n" + json.dumps(reply) + "\n```\n"}}
    server = model([fenced, fenced, fenced], refuse_json_schema=True)
    result = author(empty_rt, server).create("Reverse a text.")
    assert result.ok, result.message
    assert len(server.requests) == 1 and "response_format" not in server.requests[0].body


def test_429_then_success(empty_rt: Runtime, model):
    server = model([{"status": 429, "error": "slow down", "retry_after": 0.1}, package()])
    result = author(empty_rt, server).create("Reverse a text.")
    assert result.ok and len(server.requests) == 2, result.message


def test_a_server_that_hangs_is_ended_by_the_calls_time_limit(empty_rt: Runtime, model):
    server = model([{"hang": True, "times": 4}])
    result = author(empty_rt, server, timeout=1.0).create("Reverse a text.")
    assert not result.ok and [a.error for a in result.attempts] == ["timeout"] * 4, result.message
    assert "evogit.modelTimeout" in result.message and empty_rt.repo.tools() == []
    assert all(0.9 < a.model_seconds < 5 for a in attempts(empty_rt))


def test_a_timeout_is_a_round_not_the_end(empty_rt: Runtime, model):
    server = model([{"hang": True}, package()])
    result = author(empty_rt, server, timeout=2.0).create("Reverse a text.")
    assert result.ok and [a.stage for a in result.attempts] == ["model", "green"], result.message
    repair = server.requests[1].body["messages"][-1]["content"]
    assert "cut off by the time limit" in repair and "evogit.modelTimeout" in repair
    called = [e for _, _, e in empty_rt.log.read() if isinstance(e, ev.ModelCalled)]
    assert [c.outcome for c in called] == ["timeout", "ok"] and called[0].latency_ms >= 1900


TEXT_HEADER = {k: v for k, v in MANIFEST.items()}
TEXT_CASES = "".join(json.dumps(c) + "\n" for c in CASES)


def text_package(logic: str = REVERSE, header: dict | None = None, cases: str = TEXT_CASES, **reply: object) -> dict:
    """A reply in the text format: the JSON header, the Rust part, the cases."""
    content = (f"Here is the tool.\n```json\n{json.dumps(header or TEXT_HEADER)}\n```\n```rust\n{logic}```\n"
               f"```jsonl\n{cases}```\n")
    return {"reply": {"content": content, **reply}, "usage": {"prompt_tokens": 900, "completion_tokens": 400}}


def test_create_in_the_text_format(empty_rt: Runtime, model):
    server = model([text_package()])
    result = author(empty_rt, server).create("Reverse a text, character by character.")
    assert result.ok and result.tool == "reverse-text" and result.tokens == 1300, result.message
    assert empty_rt.run("reverse-text", b'{"text": "evogit"}').output == {"text": "tigove"}
    files, _ = empty_rt.repo.files(empty_rt.repo.commit(result.version.build_commit).tree)
    assert files["Cargo.toml"].decode().endswith('[dependencies]\nserde_json = "1"\n')
    assert BEGIN in files["src/main.rs"].decode()


def test_a_reply_cut_off_by_max_tokens_is_a_round_with_evidence(empty_rt: Runtime, model):
    cut = text_package()
    cut["reply"]["content"] = cut["reply"]["content"][:300]
    cut["reply"]["finish_reason"] = "length"
    server = model([cut, text_package()])
    result = author(empty_rt, server).create("Reverse a text.")
    assert result.ok and [(a.stage, a.error) for a in result.attempts] == [("reply", "cut_off"), ("green", None)]
    repair = server.requests[1].body["messages"][-1]["content"]
    assert "cut off after 400 tokens" in repair and "evogit.maxTokens" in repair
    assert "The last reply began" not in repair  # a small model copies a cut reply, cut where it was (seen live)


def test_an_unreadable_reply_is_a_round_with_evidence(empty_rt: Runtime, model):
    server = model([{"reply": {"content": "I would write it in Rust with a loop over the characters."}},
                    text_package()])
    result = author(empty_rt, server).create("Reverse a text.")
    assert result.ok and [(a.stage, a.error) for a in result.attempts] == [("reply", "invalid_reply"), ("green", None)]
    assert "```json header" in server.requests[1].body["messages"][-1]["content"]


def test_a_repair_that_sends_only_the_code_is_built_with_the_rest_of_the_last_attempt(empty_rt: Runtime, model):
    server = model([text_package(BROKEN), {"reply": {"content": f"Typo fixed.\n```rust\n{REVERSE}```"}}])
    result = author(empty_rt, server).create("Reverse a text.")
    assert result.ok and [a.stage for a in result.attempts] == ["compile", "green"], result.message
    assert {c["name"] for c in empty_rt.describe("reverse-text").cases} == {c["name"] for c in CASES}
    assert server.requests[1].body["temperature"] == 0.4  # a repair round asks a little warmer


def test_a_reply_repeated_word_for_word_warms_the_next_call_a_step_more(empty_rt: Runtime, model):
    # live (is-palindrome): the same wrong code three rounds running at 0.2, 0.4, 0.6
    server = model([{**package(BROKEN), "times": 3}, package()])
    result = author(empty_rt, server).create("Reverse a text.", name="reverse-text")
    assert result.ok, result.message
    assert [r.body["temperature"] for r in server.requests] == [0.2, 0.4, 0.8, 1.0]
    # and after a repeat the model is asked afresh: the first request again, not its code a third time
    first = server.requests[0].body["messages"][-1]["content"]
    assert [r.body["messages"][-1]["content"] == first for r in server.requests] == [True, False, True, True]


def test_a_repair_that_gets_no_further_is_followed_by_a_fresh_warm_request(empty_rt: Runtime, model):
    # live: 4 of 18 red first attempts repaired in 3 rounds; the model answers its errors with the same mistake
    server = model([text_package(UPPER), text_package(BROKEN), text_package()])  # cases, then back to compile
    result = author(empty_rt, server).create("Reverse a text.")
    assert result.ok and [a.request for a in result.attempts] == ["first", "repair", "fresh"], result.message
    assert [r.body["temperature"] for r in server.requests] == [0.2, 0.4, 0.8]
    first = server.requests[0].body["messages"][-1]["content"]
    assert server.requests[2].body["messages"][-1]["content"] == first


def test_a_repair_that_gets_further_is_repaired_again(empty_rt: Runtime, model):
    server = model([text_package(BROKEN), text_package(UPPER), text_package()])  # compile, then cases: further
    result = author(empty_rt, server).create("Reverse a text.")
    assert result.ok and [a.request for a in result.attempts] == ["first", "repair", "repair"], result.message
    assert [a.request for a in result.to_json().attempts] == ["first", "repair", "repair"]


def test_value_methods_a_small_model_invents_are_renamed_before_a_model_round(empty_rt: Runtime, model):
    # live (chunk-list, run 4): `as_integer` twice running; rustc suggests nothing for it
    invented = REVERSE.replace("    Ok(json!(", "    let _times = input.get(\"times\").and_then(|v| v.as_integer()).unwrap_or(1);\n    Ok(json!(")
    server = model([text_package(invented)])
    result = author(empty_rt, server).create("Reverse a text.")
    assert result.ok and len(result.attempts) == 1, result.message
    assert any("has no as_integer; its method is: `as_i64`" in m for m in result.mended), result.mended


def test_compiler_evidence_names_each_error_once(empty_rt: Runtime, model):
    server = model([text_package(BROKEN), text_package()])
    assert author(empty_rt, server).create("Reverse a text.").ok
    repair = server.requests[1].body["messages"][-1]["content"]
    why = repair[repair.index("Why it failed"):]
    assert why.count("error[E0425]: cannot find value `txet`") == 2  # the headline, then rustc's rendering
    assert "more errors" not in why  # the bin and the test build both said it: one error


def test_mutation_that_breaks_an_inherited_case_is_rejected(empty_rt: Runtime, model):
    _create(empty_rt, model)
    before = empty_rt.repo.resolve("reverse-text")
    words = [{"name": "words", "input": {"text": "a b c"}, "expect": {"text": "c b a"}}]
    server = model([{**package(WORDS, cases=words), "times": 4}])
    result = author(empty_rt, server).mutate("reverse-text", "Reverse the order of the words instead.")
    assert not result.ok and {a.stage for a in result.attempts} == {"cases"}
    assert any("'plain' was dropped" in m for m in result.mended)
    assert empty_rt.repo.resolve("reverse-text") == before and len(empty_rt.repo.versions("reverse-text")) == 1
    assert "plain" in server.requests[1].body["messages"][-1]["content"]


def test_a_mutation_inside_a_solve_that_supersedes_cases_becomes_a_new_tool(empty_rt: Runtime, model):
    # the attack, live: a model solving an unrelated task mutated word-count and superseded its cases as
    # "obsolete"; the next solve was served the weakened tool by the fast path
    from evogit.agent.catalog import Catalog

    _create(empty_rt, model)
    parent = empty_rt.repo.resolve("reverse-text")
    server = model([words_package("obsolete", "obsolete")])
    catalog = Catalog(empty_rt, author(empty_rt, server).client, solving="reverse the words of a sentence")
    out = json.loads(catalog.call("mutate_binary", json.dumps(
        {"parent_id": "reverse-text", "task_description": "Reverse the order of the words instead."})))
    assert out["ok"] and out["version"].startswith("reverse-text-2@"), out
    assert [(s["case"], s["reason"]) for s in out["superseded"]] == [("plain", "obsolete"), ("unicode", "obsolete")]
    assert catalog.superseded == [{"version": out["version"], "case": c, "reason": "obsolete"} for c in ("plain", "unicode")]
    assert empty_rt.repo.resolve("reverse-text") == parent  # the tool everyone uses is unchanged
    # a fork with lineage: its source commit's parent is the parent's
    forked = empty_rt.repo.resolve("reverse-text-2")
    assert git(empty_rt, "rev-parse", f"{forked.source_commit}^").strip() == parent.source_commit


def test_writes_inside_a_solve_are_bounded(empty_rt: Runtime, model):
    from evogit.agent.catalog import Catalog

    server = model([package(), package()])
    catalog = Catalog(empty_rt, author(empty_rt, server).client, solving="reverse a text", max_writes=1)
    first = json.loads(catalog.call("create_binary", json.dumps({"task_description": "Reverse a text."})))
    assert first["ok"], first
    second = json.loads(catalog.call("create_binary", json.dumps({"task_description": "Reverse a text again."})))
    assert second["ok"] is False and second["error"]["kind"] == "write_limit", second
    assert len(server.requests) == 1
    late = Catalog(empty_rt, author(empty_rt, server).client, solving="x", deadline=0.0)
    out = json.loads(late.call("create_binary", json.dumps({"task_description": "Reverse a text."})))
    assert out["error"]["kind"] == "deadline" and len(server.requests) == 1


def test_mutation_that_supersedes_cases_with_reasons_is_accepted(empty_rt: Runtime, model):
    _create(empty_rt, model)
    parent = empty_rt.repo.resolve("reverse-text")
    server = model([words_package("one word stays as it is", "a word is not reversed")])
    result = author(empty_rt, server).mutate("reverse-text", "Reverse the order of the words instead.")
    assert result.ok, result.message
    v = result.version
    assert v.name == "reverse-text" and v.fingerprint != parent.fingerprint
    assert empty_rt.repo.resolve("reverse-text") == v
    assert empty_rt.run("reverse-text", b'{"text": "one two"}').output == {"text": "two one"}
    d = empty_rt.describe("reverse-text")
    assert Supersession("plain", "one word stays as it is") in d.superseded
    log = git(empty_rt, "log", "--format=%B", "-1", "tools/reverse-text")
    assert "Evogit-Supersedes: plain: one word stays as it is" in log
    assert f"Evogit-Parent: reverse-text@{parent.fingerprint}" in log
    # lineage is ancestry: the new source commit's parent is the old one
    assert git(empty_rt, "rev-parse", f"{v.source_commit}^").strip() == parent.source_commit
    mutate_prompt = server.requests[0].body["messages"][-1]["content"]
    assert "inherited" in mutate_prompt and '"plain"' in mutate_prompt and "chars().rev()" in mutate_prompt
    assert "```rust" in mutate_prompt and "fn main" not in mutate_prompt  # the parent as the three blocks


def test_mutation_with_a_name_forks_a_new_tool_at_the_parents_source_commit(empty_rt: Runtime, model):
    _create(empty_rt, model)
    parent = empty_rt.repo.resolve("reverse-text")
    shout = REVERSE.replace("text.chars().rev().collect::<String>()",
                            "text.chars().rev().collect::<String>().to_uppercase()").replace('"ba"', '"BA"')
    server = model([package(shout,
                            cases=[{"name": "shout", "input": {"text": "ab"}, "expect": {"text": "BA"}}],
                            superseded=[{"case": c["name"], "reason": "upper-cased now"} for c in CASES[:2]])])
    result = author(empty_rt, server).mutate("reverse-text", "Reverse and upper-case.", name="reverse-shout")
    assert result.ok, result.message
    assert sorted(empty_rt.repo.tools()) == ["reverse-shout", "reverse-text"]
    assert empty_rt.repo.resolve("reverse-text") == parent
    history = git(empty_rt, "log", "--format=%H", "tools/reverse-shout").split()
    assert parent.source_commit in history


def test_teach_adds_examples_as_cases_that_must_pass(empty_rt: Runtime, model):
    _create(empty_rt, model)
    in_place = REVERSE.replace("text.chars().rev().collect::<String>()",
                               "text.split(' ').map(|w| w.chars().rev().collect::<String>()).collect::<Vec<_>>().join(\" \")")
    cases = [*CASES, {"name": "spaces", "input": {"text": "ab cd"}, "expect": {"text": "ba dc"}}]
    server = model([package(in_place, cases=cases)])
    result = CliRunner().invoke(main, ["teach", "reverse-text", "Reverse each word where it stands.",
                                       "--example", '{"input": {"text": "xy z"}, "expect": {"text": "yx z"}}',
                                       "--repo", str(empty_rt.repo.path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ok"] and out["kind"] == "teach"
    jsonschema.validate(out, msgspec.json.schema(AuthorReport))  # the typed boundary: what the schema says
    assert msgspec.convert(out, AuthorReport).attempts[-1].stage == "green"
    rt = Runtime(empty_rt.repo.path)
    d = rt.describe("reverse-text")
    assert any(c["input"] == {"text": "xy z"} and c["expect"] == {"text": "yx z"} for c in d.cases)
    assert {c["name"] for c in d.cases} >= {"plain", "unicode", "empty", "bad", "spaces"}
    assert rt.run("reverse-text", b'{"text": "ab c"}').output == {"text": "ba c"}
    assert "xy z" in server.requests[0].body["messages"][-1]["content"]


def test_the_models_key_never_reaches_a_build_or_a_run(empty_rt: Runtime, model):
    snoop = '''fn run(input: &Value) -> Result<Value, String> {
    let _ = input;
    let key = std::env::var("OPENAI_API_KEY").unwrap_or_else(|_| "none".to_string());
    Ok(json!({ "text": key }))
}
'''
    cases = [{"name": "key", "input": {"text": ""}, "expect": {"text": "none"}}]
    server = model([package(snoop, cases=cases)])
    result = author(empty_rt, server).create("Print the environment's key.", name="snoop")
    assert result.ok, result.message  # in the sandbox the variable does not exist, at build time or at run time
    assert empty_rt.run("snoop", b'{"text": ""}').output == {"text": "none"}
    state = empty_rt.repo.state_dir
    for path in [*state.rglob("*.json"), *state.rglob("*.log"), *state.rglob("*.msgpack")]:
        assert KEY.encode() not in path.read_bytes(), path


def test_no_model_configured_is_a_one_line_error(empty_rt: Runtime, monkeypatch):
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "EVOGIT_MODEL"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(main, ["create", "Reverse a text.", "--repo", str(empty_rt.repo.path)])
    assert result.exit_code == 1 and result.output.startswith("Error: no model configured")
    assert result.output.strip().count("\n") == 0


def test_stats_cost_counts_tokens_per_tool_and_model(empty_rt: Runtime, model):
    server = model([package(BROKEN), package()])
    assert author(empty_rt, server).create("Reverse a text.").ok
    result = CliRunner().invoke(main, ["stats", "--cost", "--json", "--repo", str(empty_rt.repo.path)])
    assert result.exit_code == 0, result.output
    cost = json.loads(result.stdout)
    assert cost["tools"]["reverse-text"]["tokens"] == 2600 and cost["tools"]["reverse-text"]["attempts"] == 2
    assert cost["models"]["scripted-coder"]["calls"] == 2


def test_created_tool_lineage_with_plain_git(empty_rt: Runtime, model, tmp_path: Path):
    _create(empty_rt, model)
    graph = git(empty_rt, "log", "--graph", "--oneline", "--all")
    assert "Reverse a text." in graph and "Build reverse-text@" in graph


def test_the_parent_of_a_bare_name_is_the_version_with_the_best_record_for_similar_tasks(empty_rt: Runtime, model):
    _create(empty_rt, model)
    first = empty_rt.repo.resolve("reverse-text")
    server = model([words_package("words now", "words now")])
    assert author(empty_rt, server).mutate("reverse-text", "Reverse the words.").ok
    newest = empty_rt.repo.resolve("reverse-text")
    assert newest != first
    a = author(empty_rt, server)
    v, why = a.parent_for("reverse-text", "reverse the characters of a name")
    assert v == newest and "newest" in why  # no record yet: the newest
    for task in ("reverse the characters of my name", "reverse the characters of a word"):
        empty_rt.feedback(f"reverse-text@{first.fingerprint}", task, solved=True)
    v, why = a.parent_for("reverse-text", "reverse the characters of a name")
    assert v == first and "best record for similar tasks: net 2 solved" in why
    v, why = a.parent_for(f"reverse-text@{newest.fingerprint[:8]}", "reverse the characters of a name")
    assert v == newest and why == "named by the caller"
    result = CliRunner().invoke(main, ["mutate", "reverse-text", "reverse the characters of a name", "--explain",
                                       "--repo", str(empty_rt.repo.path)])
    assert first.short in result.output and "similar tasks solved (net)   2" in result.output


def test_the_replys_own_wrong_cases_do_not_hold_a_tool_that_passes_the_users_examples(empty_rt: Runtime, model):
    wrong = [{"name": "copied", "input": {"text": "a b c"}, "expect": {"text": "a b c"}}]  # its own, and wrong
    server = model([text_package(cases="".join(json.dumps(c) + "\n" for c in [*CASES, *wrong]))])
    result = author(empty_rt, server).create("Reverse a text.", examples=[{"input": {"text": "ab"}, "expect": {"text": "ba"}}])
    assert result.ok and len(result.attempts) == 1, result.message
    assert any("own cases copied were left out" in m for m in result.mended)
    names = {c["name"] for c in empty_rt.describe("reverse-text").cases}
    assert "copied" not in names and {"plain", "unicode"} <= names


def test_a_schema_that_is_no_json_schema_is_read_off_the_users_examples(empty_rt: Runtime, model):
    # live (merge-intervals, run 4): the tuple form of an old draft, `"items": [{...}, {...}]`, twice running
    header = {**TEXT_HEADER, "input_schema": {"type": "object", "properties": {
        "text": {"type": "string", "items": [{"type": "number"}, {"type": "number"}]}}}}
    server = model([text_package(header=header)])
    result = author(empty_rt, server).create("Reverse a text.", examples=[{"input": {"text": "ab"}, "expect": {"text": "ba"}}])
    assert result.ok and len(result.attempts) == 1, result.message
    assert "input_schema was not a valid JSON Schema; read off the user's examples instead" in result.mended
    assert empty_rt.describe("reverse-text").input_schema["properties"] == {"text": {"type": "string"}}


def test_the_replys_own_cases_count_when_no_case_was_given(empty_rt: Runtime, model):
    wrong = [{"name": "copied", "input": {"text": "a b c"}, "expect": {"text": "a b c"}}]
    server = model([{**text_package(cases="".join(json.dumps(c) + "\n" for c in [*CASES, *wrong])), "times": 2}])
    result = author(empty_rt, server, rounds=1).create("Reverse a text.")
    assert not result.ok and [a.stage for a in result.attempts] == ["cases", "cases"]


def test_a_create_whose_replies_leave_out_the_header_builds_on_the_users_examples(empty_rt: Runtime, model):
    code_only = {"reply": {"content": f"Here is the code.\n```rust\n{REVERSE}```"}}
    server = model([{"hang": True}, code_only])  # the first round timed out, so no attempt had a header
    result = author(empty_rt, server, timeout=2.0).create(
        "Reverse the text character by character", examples=[{"input": {"text": "ab"}, "expect": {"text": "ba"}}])
    assert result.ok and result.tool == "reverse-the-text-character", result.message
    described = empty_rt.describe("reverse-the-text-character")
    assert described.input_schema == {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    assert described.description == "Reverse the text character by character"
    repair = server.requests[1].body["messages"][-1]["content"]
    assert "The last reply began" not in repair  # a reply cut short is not shown again (a small model copies it)
