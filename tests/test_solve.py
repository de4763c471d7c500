"""Solving tasks: the fast path with zero model requests, and the tool-calling loop through the real `openai`
client against the scripted server — a vague task, create then use, mutate in the loop, a model's mistakes,
the step limit, no model configured, calls written as text by a model whose server does not parse them, and
replays of a real small model's sessions — plus the tool functions' catalog and what reuse saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import evogit
from evogit import events as ev
from evogit.agent.catalog import FUNCTIONS, Catalog, answer_fields
from evogit.agent.prompt import SOLVE_EMPTY
from evogit.agent.solve import Solver
from evogit.cli import main
from evogit.errors import InvalidInput
from evogit.llm.client import ModelClient
from evogit.llm.config import ModelConfig
from evogit.llm.reply import MAX_TEXT_CALLS_CHARS, text_tool_calls
from evogit.runtime import Runtime

from .conftest import starter_subset
from .test_author import KEY, git, package, words_package

MODEL_ENV = ("EVOGIT_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY")


@pytest.fixture
def starter_rt(tmp_path: Path) -> Runtime:
    rt, outcomes = Runtime.init(tmp_path / "skills")
    assert all(o.ok for o in outcomes)
    return rt


@pytest.fixture
def three_rt(tmp_path: Path) -> Runtime:
    return starter_subset(tmp_path, ("word-count", "url-parse", "slugify"))


@pytest.fixture
def clients():
    made: list[ModelClient] = []
    yield made
    for c in made:
        c.close()


@pytest.fixture
def model(scripted_model, monkeypatch, clients):
    """A scripted server for a list of steps, with the environment pointing evogit at it; `.solver(rt)` makes
    a Solver whose client talks to it over HTTP."""
    def start(steps: list):
        server = scripted_model({"model": "scripted-coder", "steps": steps})
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("EVOGIT_MODEL", "scripted-coder")

        def solver(rt: Runtime, **kw) -> Solver:
            config = ModelConfig(model="scripted-coder", base_url=server.base_url, api_key=KEY, timeout=60)
            clients.append(ModelClient(config, sink=rt.log.append))
            return Solver(rt, clients[-1], **kw)

        server.solver = solver
        return server
    return start


def call(name: str, **arguments) -> dict:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def solved(rt: Runtime) -> list[ev.Solved]:
    return [e for _, _, e in rt.log.read() if isinstance(e, ev.Solved)]


def tool_results(request) -> list[dict]:
    return [json.loads(m["content"]) for m in request.messages if m["role"] == "tool"]


# -- the catalog ---------------------------------------------------------------------------------------------------
def test_definitions_are_strict_with_the_proposal_parameter_names():
    tools = evogit.openai_tools()
    params = {t["function"]["name"]: list(t["function"]["parameters"]["properties"]) for t in tools}
    assert params == {
        "list_tools": [], "search_tools": ["query"], "describe_binary": ["binary_id"],
        "run_binary": ["binary_id", "input_json"], "mutate_binary": ["parent_id", "task_description"],
        "create_binary": ["task_description"], "feedback": ["binary_id", "task_description", "solved"]}
    for t in tools:
        assert t["type"] == "function" and t["function"]["strict"] is True
        p = t["function"]["parameters"]
        assert p["type"] == "object" and p["additionalProperties"] is False
        assert p["required"] == list(p["properties"])
        assert all(set(s) == {"type", "description"} and s["description"] for s in p["properties"].values())
    assert json.loads(json.dumps(tools)) == tools  # plain JSON, as sent


def test_call_tool_runs_describes_and_reports_errors_as_json(three_rt: Runtime, monkeypatch):
    for var in MODEL_ENV:
        monkeypatch.delenv(var, raising=False)
    path = three_rt.repo.path

    def call_tool(name: str, arguments: object) -> dict:
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        out = evogit.call_tool(name, text, repo=path)
        assert "\n" not in out and "Traceback" not in out
        return json.loads(out)

    listed = call_tool("list_tools", {})
    assert listed["ok"] and {t["version"].split("@")[0] for t in listed["tools"]} == {"word-count", "url-parse",
                                                                                       "slugify"}
    ran = call_tool("run_binary", {"binary_id": "word-count", "input_json": '{"text": "a b c"}'})
    fp = three_rt.repo.resolve("word-count").fingerprint
    assert ran["ok"] and ran["version"] == f"word-count@{fp}" and ran["output"]["words"] == 3
    d = call_tool("describe_binary", {"binary_id": f"word-count@{fp[:7]}"})
    assert d["version"] == f"word-count@{fp}" and d["input_schema"]["required"] == ["text"] and d["examples"]
    assert d["record"]["runs"] == 1
    found = call_tool("search_tools", {"query": "slugify a title for a URL"})
    assert found["tools"][0]["version"].startswith("slugify@") and "input_schema" in found["tools"][0]
    assert call_tool("feedback", {"binary_id": "slugify", "task_description": "make a slug", "solved": True})["ok"]
    kinds = {
        "unknown_function": call_tool("rm_rf", {}),
        "bad_arguments": call_tool("run_binary", "{not json"),
        "tool_not_found": call_tool("describe_binary", {"binary_id": "no-such-tool"}),
        "invalid_input": call_tool("run_binary", {"binary_id": "word-count", "input_json": '{"txt": 1}'}),
        "model_not_configured": call_tool("create_binary", {"task_description": "reverse a text"}),
    }
    for kind, out in kinds.items():
        assert out["ok"] is False and out["error"]["kind"] == kind, (kind, out)
        assert out["error"]["message"] and "\n" not in out["error"]["message"]
    extra = call_tool("run_binary", {"binary_id": "word-count", "input_json": "{}", "sudo": True})
    missing = call_tool("run_binary", {"binary_id": "word-count"})
    wrong = call_tool("feedback", {"binary_id": "slugify", "task_description": "x", "solved": "yes"})
    for out, word in ((extra, "sudo"), (missing, "input_json"), (wrong, "solved")):
        assert out["error"]["kind"] == "bad_arguments" and word in out["error"]["message"], out
    assert "run_binary" in kinds["unknown_function"]["error"]["message"]  # it names the functions there are
    deep = call_tool("run_binary", {"binary_id": "word-count", "input_json": "[" * 100_000})
    assert deep["error"]["kind"] == "invalid_input"


def test_a_long_output_is_cut_for_the_model(three_rt: Runtime):
    catalog = Catalog(three_rt)
    text = "word " * 20_000
    out = catalog.call("run_binary", json.dumps({"binary_id": "slugify", "input_json": json.dumps({"text": text})}))
    result = json.loads(out)
    assert len(out) <= 16_000 and result["ok"] and result["truncated"] is True
    assert catalog.last is not None and isinstance(catalog.last.output, dict)  # the whole output stays with the caller


def test_every_function_has_a_handler():
    assert all(hasattr(Catalog, f"_{f.name}") for f in FUNCTIONS)


# -- the fast path -------------------------------------------------------------------------------------------------
def test_fast_path_serves_with_zero_model_requests(starter_rt: Runtime, model):
    server = model([{"repeat": True, "reply": {"content": "should not be asked"}}])
    r = CliRunner().invoke(main, ["solve", "count the words in this text", "--input", '{"text": "the cat sat"}',
                                  "--repo", str(starter_rt.repo.path), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    fp = starter_rt.repo.resolve("word-count").fingerprint
    assert out["answer"]["words"] == 3 and out["served_by"] == f"word-count@{fp}"
    assert out["model_used"] is False and out["tokens"] == 0 and out["fast_path"] is True
    assert [s["kind"] for s in out["steps"]] == ["search", "fast_path", "run"]
    assert server.requests == []
    (e,) = solved(starter_rt)
    assert (e.outcome, e.served_by, e.fast_path, e.model_used) == ("answered", f"word-count@{fp}", True, False)
    runs = [x for _, _, x in starter_rt.log.read() if isinstance(x, ev.ToolRun)]
    assert runs[-1].task == "count the words in this text" and runs[-1].ok
    cost = starter_rt.cost().solves
    assert cost.runs_without_model == 1 and cost.fast_path == 1 and cost.tokens == 0


def test_the_model_is_connected_only_when_the_fast_path_does_not_serve(starter_rt: Runtime):
    asked: list[str] = []

    def connect() -> None:  # the configured model may be the embedded one: connecting starts its server
        asked.append("connect")

    served = Solver(starter_rt, connect).solve("count the words in this text", b'{"text": "the cat sat"}')
    assert served.ok and served.fast_path and asked == []
    unserved = Solver(starter_rt, connect).solve("count the words in this text", b'{"words": 3}')
    assert unserved.outcome == "no_model" and asked == ["connect"]


def test_input_that_breaks_the_schema_is_not_run_on_the_fast_path(starter_rt: Runtime):
    result = Solver(starter_rt, None).solve("count the words in this text", b'{"words": 3}')
    assert not result.ok and result.outcome == "no_model" and not result.fast_path
    assert "input does not match" in result.steps[1].text
    assert "word-count" in result.message and "EVOGIT_MODEL" in result.message
    assert not [x for _, _, x in starter_rt.log.read() if isinstance(x, ev.ToolRun)]


def test_a_fast_path_run_that_fails_goes_to_the_model_with_its_words(starter_rt: Runtime, model):
    task, given = "how many days are there between these two dates", b'{"start": "2026-02-30", "end": "2026-03-01"}'
    none = Solver(starter_rt, None).solve(task, given)
    assert not none.ok and none.message.startswith("date-diff@") and "not a valid calendar date" in none.message
    assert "EVOGIT_MODEL" in none.message
    server = model([{"reply": {"content": "2026-02-30 is not a date: February 2026 has 28 days."}}])
    result = server.solver(starter_rt).solve(task, given)
    assert result.ok and result.model_used and result.served_by is None and not result.fast_path
    (request,) = server.requests
    assert "The fast path ran date-diff@" in request.messages[1]["content"]
    assert "not a valid calendar date" in request.messages[1]["content"]
    assert solved(starter_rt)[-1].served_by == "" and starter_rt.cost().solves.unserved == 2


def test_no_model_configured_says_which_tool_is_likely_and_how_to_configure(three_rt: Runtime, monkeypatch):
    for var in MODEL_ENV:
        monkeypatch.delenv(var, raising=False)
    r = CliRunner().invoke(main, ["solve", "split this address into host and path", "--repo",
                                  str(three_rt.repo.path)])
    assert r.exit_code == 1
    (line,) = r.stderr.strip().splitlines()[-1:]
    assert line.startswith("Error: ") and "url-parse@" in line and "EVOGIT_MODEL" in line and "confidence" in line
    assert "Traceback" not in r.output
    assert solved(three_rt)[-1].outcome == "no_model"


# -- the tool-calling loop -----------------------------------------------------------------------------------------
def test_vague_task_model_runs_a_tool_and_sees_its_real_output(three_rt: Runtime, model):
    task = "How many words are in: the quick brown fox jumps"
    server = model([
        {"match": {"last": "tool"}, "reply": {"content": '{"words": 5}'}},
        {"match": {"purpose": "solve", "last": "user"},
         "reply": call("run_binary", binary_id="word-count", input_json='{"text": "the quick brown fox jumps"}')},
    ])
    result = server.solver(three_rt).solve(task)
    assert result.ok and result.model_used and result.answer == {"words": 5}, result.message
    fp = three_rt.repo.resolve("word-count").fingerprint
    assert result.served_by == f"word-count@{fp}"
    first, second = server.requests
    body = first.body
    assert body["tool_choice"] == "auto" and {t["function"]["name"] for t in body["tools"]} >= {"run_binary",
                                                                                              "create_binary"}
    user = body["messages"][1]["content"]
    assert f"word-count@{fp[:12]}:" in user and '"required":["text"]' in user and "Input: none given" in user
    # the second request carries the assistant's tool call and the real output as a role: tool message
    assistant, tool = second.messages[-2:]
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["function"]["name"] == "run_binary"
    assert "content" not in assistant  # null content: llama-cpp-python's server refuses the request (HTTP 500)
    assert tool["role"] == "tool" and tool["tool_call_id"] == assistant["tool_calls"][0]["id"]
    assert json.loads(tool["content"])["output"] == {"chars": 25, "lines": 1, "words": 5}
    assert result.tokens == result.prompt_tokens + result.completion_tokens > 0
    (credit,) = [x for _, _, x in three_rt.log.read() if isinstance(x, ev.Feedback)]
    assert (credit.tool, credit.fingerprint, credit.task, credit.solved) == ("word-count", fp, task, True)
    (e,) = solved(three_rt)
    assert e.served_by == f"word-count@{fp}" and e.model_used and not e.fast_path and e.steps == 2
    assert e.prompt_tokens + e.completion_tokens == result.tokens
    s = three_rt.cost().solves
    assert s.model_run == 1 and s.reused["word-count"].reused == 1


def test_what_the_model_served_is_learnt_and_then_served_without_it(three_rt: Runtime, model):
    task = "break this web address into its parts"
    given = b'{"url": "https://example.com:8080/a/b?x=1#top"}'
    server = model([
        {"match": {"last": "tool"}, "reply": {"content": "done"}},
        {"match": {"last": "user"}, "reply": call("run_binary", binary_id="url-parse", input_json=given.decode())},
    ])
    first = server.solver(three_rt).solve(task, given, fast_path=False)
    assert first.ok and first.served_by.startswith("url-parse@") and len(server.requests) == 2
    again = server.solver(three_rt).solve(task, given)
    assert again.ok and again.fast_path and not again.model_used, [s.text for s in again.steps]
    assert again.served_by == first.served_by and again.answer["host"] == "example.com"
    assert len(server.requests) == 2  # no new request


def test_only_the_version_that_answered_is_credited_with_the_task(three_rt: Runtime, model):
    task = "make a slug of: Hello World"
    server = model([
        {"reply": call("run_binary", binary_id="word-count", input_json='{"text": "Hello World"}')},
        {"reply": call("run_binary", binary_id="slugify", input_json='{"text": "Hello World"}')},
        {"reply": {"content": '{"slug": "hello-world"}'}},
    ])
    result = server.solver(three_rt).solve(task)
    assert result.ok and result.served_by.startswith("slugify@")
    served = three_rt.projections().state.served
    assert [k.split("@")[0] for k, tasks in served.items() if task in tasks] == ["slugify"]
    runs = [x for _, _, x in three_rt.log.read() if isinstance(x, ev.ToolRun)]
    assert [r.tool for r in runs] == ["word-count", "slugify"] and all(r.ok and r.task is None for r in runs)


def test_the_models_mistakes_come_back_as_tool_errors_and_the_loop_goes_on(three_rt: Runtime, model):
    server = model([
        {"reply": call("delete_everything")},
        {"reply": {"tool_calls": [{"name": "run_binary", "arguments": "{not json"}]}},
        {"reply": call("run_binary", binary_id="word-count")},
        {"reply": call("run_binary", binary_id="word-count", input_json='{"txt": 1}')},
        {"reply": call("describe_binary", binary_id="Not A Name")},
        {"reply": {"tool_calls": [{"name": "run_binary", "arguments": {"binary_id": "word-count",
                                                                      "input_json": '{"text": "a b"}'}},
                                  {"name": "list_tools", "arguments": ""}]}},
        {"reply": {"content": "It has 2 words."}},
    ])
    result = server.solver(three_rt).solve("count the words of 'a b'")
    assert result.ok and result.answer == "It has 2 words." and result.served_by.startswith("word-count@")
    kinds = [(r["error"]["kind"] if not r["ok"] else "ok") for r in tool_results(server.requests[-1])]
    assert kinds == ["unknown_function", "bad_arguments", "bad_arguments", "invalid_input", "invalid_name", "ok",
                     "ok"]
    assert all("message" in r["error"] for r in tool_results(server.requests[-1]) if not r["ok"])


def test_step_limit_ends_the_loop(three_rt: Runtime, model):
    server = model([{"repeat": True, "reply": call("list_tools")}])
    r = CliRunner().invoke(main, ["solve", "do something vague", "--max-steps", "3", "--repo",
                                  str(three_rt.repo.path)])
    assert r.exit_code == 1 and "--max-steps" in r.stderr.strip().splitlines()[-1]
    assert len(server.requests) == 3
    assert solved(three_rt)[-1].outcome == "step_limit" and solved(three_rt)[-1].steps == 3


def test_a_failing_model_is_a_clear_error(three_rt: Runtime, model):
    model([{"status": 401, "error": "bad key"}])
    r = CliRunner().invoke(main, ["solve", "do something vague", "--repo", str(three_rt.repo.path), "--json"])
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["outcome"] == "model_error" and "401" in out["error"]
    assert KEY not in r.output


@pytest.mark.slow
def test_create_then_use_then_mutate_in_the_loop(empty_rt: Runtime, model):
    server = model([
        # solve 1: no tool fits (the library is empty): create, run the new tool, answer
        {"match": {"text": "tigove"}, "reply": {"content": '{"text": "tigove"}'}},
        {"match": {"purpose": "solve", "user": "evogit", "last": "tool"},
         "reply": call("run_binary", binary_id="reverse-text", input_json='{"text": "evogit"}')},
        {"match": {"purpose": "solve", "user": "evogit", "last": "user"},
         "reply": call("create_binary", task_description="Reverse a text by Unicode scalar values.")},
        {"match": {"purpose": "create"}, **package()},
        # solve 2: the tool is close: mutate it, run the new version, answer
        {"match": {"text": '"c b a"'}, "reply": {"content": '{"text": "c b a"}'}},
        {"match": {"purpose": "solve", "user": "words", "last": "tool"},
         "reply": call("run_binary", binary_id="reverse-text-2", input_json='{"text": "a b c"}')},
        {"match": {"purpose": "solve", "user": "words", "last": "user"},
         "reply": call("mutate_binary", parent_id="reverse-text", task_description="Reverse the order of words.")},
        {"match": {"purpose": "mutate"}, **words_package("one word stays as it is", "words stay")},
    ])
    first = server.solver(empty_rt).solve("Reverse the text 'evogit'")
    assert first.ok and first.answer == {"text": "tigove"}, (first.message, [s.text for s in first.steps])
    created = empty_rt.repo.resolve("reverse-text")
    assert first.served_by == f"reverse-text@{created.fingerprint}" and first.written == [first.served_by]
    assert first.author_tokens == 1300 and first.tokens > 1300

    second = server.solver(empty_rt).solve("Reverse the order of the words in 'a b c'")
    assert second.ok and second.answer == {"text": "c b a"}, (second.message, [s.text for s in second.steps])
    # the mutation supersedes two of reverse-text's cases: inside a solve it is a new tool, forked with lineage,
    # and reverse-text itself is unchanged for everyone else
    assert empty_rt.repo.resolve("reverse-text") == created
    child = empty_rt.repo.resolve("reverse-text-2")
    assert child.fingerprint != created.fingerprint and second.served_by == f"reverse-text-2@{child.fingerprint}"
    assert git(empty_rt, "rev-parse", f"{child.source_commit}^").strip() == created.source_commit
    mutated = tool_results(server.requests[-1])[0]
    assert mutated["ok"] and mutated["parent"] == f"reverse-text@{created.fingerprint}"
    assert second.superseded == [{"version": second.served_by, "case": "plain", "reason": "one word stays as it is"},
                                 {"version": second.served_by, "case": "unicode", "reason": "words stay"}]
    assert {s["case"] for s in mutated["superseded"]} == {"plain", "unicode"}

    s = empty_rt.cost().solves
    assert (s.solves, s.written, s.model_run, s.author_tokens) == (2, 2, 0, 2600)
    r = CliRunner().invoke(main, ["stats", "--cost", "--repo", str(empty_rt.repo.path)])
    assert r.exit_code == 0 and "solves: 2" in r.output and "tokens saved" in r.output


@pytest.mark.slow
def test_when_the_model_stops_without_a_tool_that_does_the_task_the_solve_asks_for_one(empty_rt: Runtime, model):
    """Live (every bench run so far): the 1.5B model ran tools that did not do the task, or none, and never called
    create_binary from inside a solve; its turn ended with empty replies. The solve then calls create_binary for
    the task itself, once, with the input's shape, and runs the new tool on the input."""
    server = model([{"match": {"purpose": "solve"}, "reply": {"content": ""}, "times": 2},
                    {"match": {"purpose": "create"}, **package()}])
    result = server.solver(empty_rt).solve("Reverse this text", b'{"text": "evogit"}')
    assert result.ok and result.answer == {"text": "tigove"}, (result.message, [s.text for s in result.steps])
    created = empty_rt.repo.resolve("reverse-text")
    assert result.served_by == f"reverse-text@{created.fingerprint}" and result.written == [result.served_by]
    assert [s.kind for s in result.steps if s.kind in ("empty", "create", "written", "run", "answer")] == [
        "empty", "create", "written", "run", "answer"]
    asked = server.requests[2]
    assert asked.body["messages"][-1]["role"] == "user" and '{"text": "evogit"}' in asked.body["messages"][-1]["content"]
    (fb,) = [e for _, _, e in empty_rt.log.read() if isinstance(e, ev.Feedback)]
    assert fb.tool == "reverse-text" and fb.solved and fb.task == "Reverse this text"


def test_a_solve_asks_for_a_tool_only_with_an_input_and_nothing_written(three_rt: Runtime, model):
    server = model([{"reply": {"content": ""}, "times": 2}])
    result = server.solver(three_rt, max_writes=0).solve("Reverse this text", b'{"text": "evogit"}')
    assert not result.ok and "neither an answer" in result.message and len(server.requests) == 2
    assert "create" not in [s.kind for s in result.steps]


# -- the command line ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, code, words", [
    (["solve", ""], 2, "blank"),
    (["solve", "x", "--input", "{nope"], 1, "not valid JSON"),
    (["solve", "x", "--input", "{}", "-i", "-"], 2, "not both"),
    (["solve", "x", "--max-steps", "0"], 2, "0"),
    (["solve", "x", "--input", '{"a": "' + "x" * 2000 + '"}', "--max-input", "1k"], 1, "larger than"),
    (["solve", "x", "--input", "[" * 50_000], 1, "deeper"),
])
def test_bad_input_is_one_line(three_rt: Runtime, args, code, words, monkeypatch):
    for var in MODEL_ENV:
        monkeypatch.delenv(var, raising=False)
    r = CliRunner().invoke(main, [*args, "--repo", str(three_rt.repo.path)])
    assert r.exit_code == code, r.output
    assert words in r.stderr and "Traceback" not in r.output
    if code == 1:
        assert len(r.stderr.strip().splitlines()) == 1


# -- what a hostile model or a careless caller can do -----------------------------------------------------------------
def test_a_models_feedback_is_only_about_its_solve_and_the_tools_it_ran(three_rt: Runtime, model):
    server = model([
        {"reply": call("feedback", binary_id="word-count", task_description="compute the sha-256 of a text",
                       solved=True)},
        {"reply": call("run_binary", binary_id="slugify", input_json='{"text": "A joke"}')},
        {"reply": call("feedback", binary_id="slugify", task_description="slug a title", solved=False)},
        {"reply": {"content": "Why did the slug cross the road?"}},
    ])
    assert server.solver(three_rt).solve("tell me a joke").ok
    refused, _, recorded = tool_results(server.requests[-1])
    assert refused["error"]["kind"] == "feedback_refused" and "did not run" in refused["error"]["message"]
    assert recorded["ok"] and recorded["task"] == "tell me a joke"
    feedback = [x for _, _, x in three_rt.log.read() if isinstance(x, ev.Feedback)]
    assert [(f.tool, f.task, f.solved) for f in feedback][:1] == [("slugify", "tell me a joke", False)]
    assert "slug a title" in feedback[0].note
    assert all(f.tool != "word-count" for f in feedback)


def test_a_callers_invalid_inputs_do_not_count_against_the_tool(starter_rt: Runtime):
    catalog = Catalog(starter_rt)
    for _ in range(10):
        assert json.loads(catalog.call("run_binary", '{"binary_id": "word-count", "input_json": "not json"}'))[
            "error"]["kind"] == "invalid_input"
    (m,) = starter_rt.stats("word-count").values()
    assert m.runs == 10 and m.refused == 10 and m.success_rate is None
    result = Solver(starter_rt, None).solve("count the words in this text", b'{"text": "a b"}')
    assert result.fast_path and result.ok


def test_the_last_steps_calls_are_not_carried_out_and_calls_per_reply_are_capped(three_rt: Runtime, model):
    many = {"tool_calls": [{"name": "list_tools", "arguments": {}} for _ in range(40)]}
    server = model([{"reply": many},
                    {"reply": call("run_binary", binary_id="word-count", input_json='{"text": "x"}')}])
    result = server.solver(three_rt, max_steps=2).solve("do something")
    assert result.outcome == "step_limit" and result.served_by is None and not result.ok
    kinds = [r.get("error", {}).get("kind", "ok") for r in tool_results(server.requests[1])]
    assert kinds == ["ok"] * 16 + ["too_many_calls"] * 24
    assert not [x for _, _, x in three_rt.log.read() if isinstance(x, ev.ToolRun)]  # the step-2 run never ran


def test_an_empty_reply_is_not_an_answer(three_rt: Runtime, model):
    server = model([{"reply": {"content": "   "}, "times": 2}])  # asked again once, then the solve ends
    result = server.solver(three_rt).solve("do something")
    assert not result.ok and result.outcome == "failed" and "neither an answer" in result.message
    assert [s.kind for s in result.steps].count("empty") == 1 and server.left() == 0


def test_an_empty_reply_is_asked_again_once(three_rt: Runtime, model):
    server = model([{"reply": {"content": ""}},
                    {"reply": call("run_binary", binary_id="word-count", input_json='{"text": "a b"}')},
                    {"reply": {"content": '{"chars": 3, "lines": 1, "words": 2}'}}])
    result = server.solver(three_rt).solve("count the words in 'a b'")
    assert result.ok and result.answer == {"chars": 3, "lines": 1, "words": 2} and result.served_by, result.message
    second = server.requests[1].messages
    assert [m["role"] for m in second] == ["system", "user", "user"] and second[-1]["content"] == SOLVE_EMPTY


def test_json_output_on_every_failure_and_limits_on_text(three_rt: Runtime, monkeypatch):
    for var in MODEL_ENV:
        monkeypatch.delenv(var, raising=False)
    r = CliRunner().invoke(main, ["solve", "x", "--input", "{nope", "--json", "--repo", str(three_rt.repo.path)])
    assert r.exit_code == 1 and json.loads(r.stdout)["ok"] is False and "not valid JSON" in json.loads(r.stdout)["error"]
    r = CliRunner().invoke(main, ["solve", "count " * 3000, "--repo", str(three_rt.repo.path)])
    assert r.exit_code == 1 and "at most 10,000" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    out = json.loads(evogit.call_tool("search_tools", json.dumps({"query": "q" * 20_000}), repo=three_rt.repo.path))
    assert out["error"]["kind"] == "invalid_input"
    out = json.loads(evogit.call_tool("list_tools", "{}", repo="/tmp/\x00nul"))
    assert out["ok"] is False and "\n" not in out["error"]["message"]


def test_cost_is_the_same_after_replay(three_rt: Runtime, model):
    server = model([{"reply": call("run_binary", binary_id="word-count", input_json='{"text": "a"}')},
                    {"reply": {"content": "done"}}])
    assert server.solver(three_rt).solve("count it").ok
    three_rt.log.append([ev.ModelCalled(purpose="create", model="scripted-coder", outcome="ok", prompt_tokens=5)])
    path = str(three_rt.repo.path)
    before = CliRunner().invoke(main, ["stats", "--cost", "--json", "--repo", path]).stdout
    assert CliRunner().invoke(main, ["replay", "--repo", path]).exit_code == 0
    assert CliRunner().invoke(main, ["stats", "--cost", "--json", "--repo", path]).stdout == before



# -- calls written as text (servers whose tool calling is weak) -------------------------------------------------------
RUN_ARGS = {"binary_id": "word-count", "input_json": '{"text": "a b c"}'}
RUN_JSON = json.dumps({"name": "run_binary", "arguments": RUN_ARGS})


@pytest.mark.parametrize("text, calls", [
    (f"<tool_call>\n{RUN_JSON}\n</tool_call>", [("run_binary", RUN_ARGS)]),
    (f"I will count them.\n<tool_call>\n{RUN_JSON}\n</tool_call>\n<tool_call>\n"
     '{"name": "list_tools", "arguments": {}}\n</tool_call>', [("run_binary", RUN_ARGS), ("list_tools", {})]),
    (f"<tool_call>\n{RUN_JSON}", [("run_binary", RUN_ARGS)]),  # unclosed (the server's stop token ate it)
    ('<tool_call>{"name": "list_tools"}</tool_call>', [("list_tools", {})]),
    ("{" + RUN_JSON + "}", [("run_binary", RUN_ARGS)]),  # doubled braces, as the chat template shows them
    ('{{"name": "run_binary", "arguments": {{"binary_id": "word-count", "input_json": "{\\"text\\": \\"a b c\\"}"}}}}',
     [("run_binary", RUN_ARGS)]),
    (f"<tool_call>\n{{{RUN_JSON}}}\n</tool_call>", [("run_binary", RUN_ARGS)]),
    (RUN_JSON, [("run_binary", RUN_ARGS)]),
    (json.dumps({"name": "run_binary", "parameters": RUN_ARGS}), [("run_binary", RUN_ARGS)]),
    (json.dumps({"name": "run_binary", "arguments": json.dumps(RUN_ARGS)}), [("run_binary", RUN_ARGS)]),
    (f"```json\n{RUN_JSON}\n```", [("run_binary", RUN_ARGS)]),
    (f"To count the words I call the tool:\n\n```\n{RUN_JSON}\n```\nThen I will answer.", [("run_binary", RUN_ARGS)]),
    (f"Calling it: {RUN_JSON} and then done.", [("run_binary", RUN_ARGS)]),
    (json.dumps({"type": "function", "function": {"name": "run_binary", "arguments": RUN_ARGS}}),
     [("run_binary", RUN_ARGS)]),
    (json.dumps([{"name": "list_tools", "arguments": {}}, {"name": "run_binary", "arguments": RUN_ARGS}]),
     [("list_tools", {}), ("run_binary", RUN_ARGS)]),
    (json.dumps({"tool_calls": [{"name": "run_binary", "arguments": RUN_ARGS}]}), [("run_binary", RUN_ARGS)]),
    (json.dumps({"name": "word-count", "arguments": {"text": "a b"}}), [("word-count", {"text": "a b"})]),
    # input_json's document written into the string without escaping its quotes, in single quotes, escaped
    # twice; arguments as a string likewise: the document takes the string's place
    ('```json\n{\n  "name": "run_binary",\n  "arguments": {\n    "binary_id": "word-count",\n    "input_json": '
     '"{"text": "a b c"}"\n  }\n}\n```', [("run_binary", {**RUN_ARGS, "input_json": {"text": "a b c"}})]),
    ('{"name": "run_binary", "arguments": {"binary_id": "word-count", "input_json": \'{"text": "a b c"}\'}}',
     [("run_binary", {**RUN_ARGS, "input_json": {"text": "a b c"}})]),
    ('{"name": "run_binary", "arguments": {"binary_id": "word-count", "input_json": "{\\\\"text\\\\": \\\\"a b c\\\\"}"}}',
     [("run_binary", {**RUN_ARGS, "input_json": {"text": "a b c"}})]),
    ('{"name": "word-count", "arguments": "{"text": "a b", "deep": {"x": [1]}}"}',
     [("word-count", {"text": "a b", "deep": {"x": [1]}})]),
])
def test_calls_written_as_text_are_read(text, calls):
    found = text_tool_calls(text, id_prefix="t")
    assert found.problem is None
    assert [(c.name, json.loads(c.arguments)) for c in found.calls] == calls
    assert [c.id for c in found.calls] == [f"t_{i}" for i in range(len(calls))]


def test_a_function_name_on_a_line_then_its_arguments_is_a_call_never_an_answer():
    """The real 1.5B model, in a live bench solve, answered `feedback\\n{"binary_id": …}` and `feedback\\nsolved
    false`: both were taken as the answer."""
    names = ["run_binary", "feedback"]
    found = text_tool_calls('feedback\n{"binary_id": "x@1", "task_description": "t", "solved": false}', functions=names)
    assert [(c.name, json.loads(c.arguments)) for c in found.calls] == [
        ("feedback", {"binary_id": "x@1", "task_description": "t", "solved": False})]
    found = text_tool_calls("feedback\nsolved false", functions=names)
    assert found.calls == [] and found.problem is not None and "names the function feedback first" in found.problem
    assert text_tool_calls("feedback is welcome\n{}", functions=names) == ([], None)  # prose, not a name alone
    # live, after the fix above (bench solve new-minutes-split): the name and its arguments on one line, the
    # arguments' inner quotes unescaped
    found = text_tool_calls('feedback {"binary_id": "x@1", "solved": false}', functions=names)
    assert [(c.name, json.loads(c.arguments)) for c in found.calls] == [("feedback", {"binary_id": "x@1",
                                                                                       "solved": False})]
    live = ('feedback {"binary_id": "regex-extract@c14a3a67", "task_description": "Split a number of \\"minutes\\" '
            'into whole hours, answering {"hours": h, "minutes": m}.", "solved": false}')
    found = text_tool_calls(live, functions=names)
    assert found.calls == [] and "names the function feedback first" in (found.problem or "")
    found = text_tool_calls('feedback{"binary_id": "x@1", "solved": false}', functions=names)  # live, no space
    assert [c.name for c in found.calls] == ["feedback"]




@pytest.mark.parametrize("text", [
    "", "   ", "It has 3 words.", '{"words": 3}', '{"name": "Ada", "age": 36}', "[1, 2, 3]",
    '```json\n{"slug": "hello-world"}\n```', "The function run_binary ran word-count: 3 words.",
    '{"name": "Ada", "arguments": "none", "extra": 1}',  # other keys: an answer that happens to have these two
])
def test_answers_are_not_calls(text):
    assert text_tool_calls(text, functions=["run_binary"]) == ([], None)


@pytest.mark.parametrize("text, words", [
    ("<tool_call>\n{not json}\n</tool_call>", "<tool_call> block"),
    ("<tool_call>\n" + RUN_JSON[:40], "<tool_call> block"),  # cut off inside the call
    ('{"name": "run_binary", "arguments": {"binary_id": "word-count", "input_json": {"text": }}', "no call"),
    ('run_binary(binary_id="word-count", input_json=\'{"text": "a"}\')', "no call"),
    ('{"name": "run_binary", "arguments": ' + "[" * 200 + "]" * 200 + "}", "no call"),  # deeper than jsonio allows
    ('{"name": "run_binary", "arguments": {"x": "' + "y" * MAX_TEXT_CALLS_CHARS + '"}}', "more than"),
])
def test_an_unreadable_call_is_a_problem_not_an_answer(text, words):
    found = text_tool_calls(text, functions=["run_binary", "list_tools"])
    assert found.calls == [] and found.problem is not None and words in found.problem, found


def test_a_tool_call_written_as_text_is_carried_out(three_rt: Runtime, model):
    """The real model's miss: `<tool_call>` content the server did not parse. It is carried out, and sent
    back as the assistant's tool call with its result as a `role: tool` message."""
    server = model([
        {"match": {"last": "tool"}, "reply": {"content": '{"chars": 5, "lines": 1, "words": 3}'}},
        {"reply": {"content": f"<tool_call>\n{RUN_JSON}\n</tool_call>"}},
    ])
    result = server.solver(three_rt).solve("count the words in 'a b c'")
    assert result.ok and result.outcome == "answered" and result.answer["words"] == 3, result.message
    assert result.served_by == f"word-count@{three_rt.repo.resolve('word-count').fingerprint}"
    assistant, tool = server.requests[1].messages[-2:]
    assert assistant == {"role": "assistant", "tool_calls": [
        {"id": "text1_0", "type": "function", "function": {"name": "run_binary", "arguments": json.dumps(RUN_ARGS)}}]}
    assert tool["role"] == "tool" and tool["tool_call_id"] == "text1_0" and json.loads(tool["content"])["ok"]
    assert [s.data.get("written_as_text") for s in result.steps if s.kind == "model"] == [True, False]
    assert "written as text" in result.steps[2].text


def test_doubled_braces_and_input_json_as_an_object(three_rt: Runtime, model):
    doubled = '{{"name": "run_binary", "arguments": {"binary_id": "word-count", "input_json": {"text": "a b"}}}}'
    server = model([{"reply": {"content": doubled}}, {"reply": {"content": "It has 2 words."}}])
    result = server.solver(three_rt).solve("how many words in 'a b'")
    assert result.ok and result.answer == "It has 2 words." and result.served_by.startswith("word-count@")
    (ran,) = tool_results(server.requests[1])
    assert ran["ok"] and ran["output"]["words"] == 2


def test_a_tools_name_as_the_function_name_runs_that_tool(three_rt: Runtime, model):
    server = model([
        {"reply": {"content": '{"name": "word-count", "arguments": {"text": "one two three four"}}'}},
        {"reply": {"tool_calls": [{"name": "slugify", "arguments": {"input_json": '{"text": "Hello World"}'}}]}},
        {"reply": {"content": "4 words; slug hello-world"}},
    ])
    result = server.solver(three_rt).solve("count the words and make a slug")
    assert result.ok and result.served_by.startswith("slugify@")
    counted, slugged = tool_results(server.requests[2])
    assert counted["ok"] and counted["output"]["words"] == 4 and "not a function" in counted["note"]
    assert slugged["ok"] and slugged["output"]["slug"] == "hello-world"


def test_catalog_leniency_input_json_as_a_value_and_a_tools_name(three_rt: Runtime):
    path = three_rt.repo.path
    fp = three_rt.repo.resolve("word-count").fingerprint

    def call_tool(name: str, arguments: object) -> dict:
        return json.loads(evogit.call_tool(name, json.dumps(arguments), repo=path))

    assert call_tool("run_binary", {"binary_id": "word-count", "input_json": {"text": "a b"}})["output"]["words"] == 2
    assert call_tool("run_binary", {"binary_id": "word-count", "input_json": ["a"]})["error"]["kind"] == \
        "invalid_input"
    for name in ("word-count", f"word-count@{fp[:7]}", "word_count"):
        out = call_tool(name, {"text": "x y z"})
        assert out["ok"] and out["version"] == f"word-count@{fp}" and out["output"]["words"] == 3, (name, out)
    assert call_tool("word-count", {"binary_id": "word-count", "input_json": '{"text": "a"}'})["output"]["words"] == 1
    assert call_tool("word-count", {"txt": 1})["error"]["kind"] == "invalid_input"
    assert call_tool("no-such-tool", {})["error"]["kind"] == "unknown_function"


def test_an_unreadable_call_is_told_to_the_model_and_the_loop_goes_on(three_rt: Runtime, model):
    server = model([
        {"reply": {"content": '<tool_call>\n{"name": "run_binary", "arguments": {"binary_id": word-count}}\n'
                              "</tool_call>"}},
        {"reply": call("run_binary", binary_id="word-count", input_json='{"text": "a b"}')},
        {"reply": {"content": '{"words": 2}'}},
    ])
    result = server.solver(three_rt).solve("count the words in 'a b'")
    assert result.ok and result.answer == {"words": 2} and result.served_by.startswith("word-count@")
    told = server.requests[1].messages[-1]
    assert told["role"] == "user" and "not carried out and is not an answer" in told["content"]
    assert "<tool_call> block" in told["content"] and "real tool call" in told["content"]
    assert server.requests[1].messages[-2]["role"] == "assistant"  # its reply as it was
    assert [s.kind for s in result.steps].count("unread") == 1


def test_a_pseudo_call_never_ends_as_an_answer(three_rt: Runtime, model):
    server = model([{"repeat": True, "reply": {"content": "<tool_call>\n{oops}\n</tool_call>"}}])
    result = server.solver(three_rt, max_steps=3).solve("count the words in 'a b'")
    # live (bench solve new-minutes-split): the same unreadable call 7 times running; the second ends the turn
    assert not result.ok and result.outcome == "failed" and "the same unreadable call twice" in result.message
    assert len(server.requests) == 2 and solved(three_rt)[-1].outcome == "failed"
    server = model([{"reply": {"content": "<tool_call>\n{oops}\n</tool_call>"}},
                    {"repeat": True, "reply": {"content": "<tool_call>\n{oops, again}\n</tool_call>"}}])
    result = server.solver(three_rt, max_steps=2).solve("count the words in 'a b'")
    assert not result.ok and result.outcome == "step_limit" and "could not be read" in result.message
    # a call written as text on the last step is not carried out either
    server = model([{"repeat": True, "reply": {"content": RUN_JSON}}])
    result = server.solver(three_rt, max_steps=1).solve("count the words in 'a b c'")
    assert not result.ok and result.outcome == "step_limit"
    assert not [x for _, _, x in three_rt.log.read() if isinstance(x, ev.ToolRun)]


def test_a_cut_off_reply_is_not_an_answer(three_rt: Runtime, model):
    server = model([{"reply": {"content": "The text has", "finish_reason": "length"}}])
    result = server.solver(three_rt).solve("count the words in 'a b'")
    assert not result.ok and result.outcome == "failed" and "cut off" in result.message
    assert solved(three_rt)[-1].outcome == "failed"


def test_an_answer_from_the_models_own_head_is_ok_but_served_by_none(three_rt: Runtime, model):
    server = model([{"reply": {"content": "Paris"}}])
    result = server.solver(three_rt).solve("what is the capital of France")
    assert result.ok and result.answer == "Paris" and result.served_by is None
    assert result.steps[-1].kind == "answer" and "own answer" in result.steps[-1].text


def test_an_output_that_looks_like_a_call_is_still_the_answer(three_rt: Runtime, model, monkeypatch):
    """The serving run's output echoed as the answer is the answer, whatever keys it has."""
    from evogit.agent import catalog as catalog_mod

    output = {"name": "run_binary", "arguments": {"x": 1}}
    key = f"word-count@{three_rt.repo.resolve('word-count').fingerprint}"

    def run(self, args) -> dict:
        self.last = catalog_mod.Served(key, output)
        return {"ok": True, "version": key, "output": output}

    monkeypatch.setattr(catalog_mod.Catalog, "_run_binary", run)
    server = model([{"reply": call("run_binary", binary_id="word-count", input_json="{}")},
                    {"reply": {"content": json.dumps(output)}}])
    result = server.solver(three_rt).solve("give me a call")
    assert result.ok and result.answer == output and len(server.requests) == 2


def test_first_call_required_offers_answer_and_reads_it(three_rt: Runtime, model):
    server = model([
        {"reply": call("run_binary", binary_id="word-count", input_json='{"text": "a b"}')},
        {"reply": {"tool_calls": [{"name": "answer", "arguments": {"result": '{"words": 2}'}},
                                  {"name": "list_tools", "arguments": {}}]}},
        {"reply": call("answer", result='{"words": 2}')},
    ])
    result = server.solver(three_rt, first_choice="required").solve("count the words in 'a b'")
    assert result.ok and result.answer == {"words": 2} and result.served_by.startswith("word-count@")
    bodies = [r.body for r in server.requests]
    assert [b["tool_choice"] for b in bodies] == ["required", "auto", "auto"]
    assert "answer" in {t["function"]["name"] for t in bodies[0]["tools"]}
    kinds = [r.get("error", {}).get("kind", "ok") for r in tool_results(server.requests[2])[1:]]
    assert kinds == ["answer_too_soon", "ok"]
    # an answer whose arguments cannot be read (the real model escaped the JSON in it wrongly) is no answer
    server = model([{"reply": {"tool_calls": [{"name": "answer", "arguments": '{"result": "{\\"words\\":2}\\"}'}]}},
                    {"reply": call("answer", result="2 words")}])
    result = server.solver(three_rt, first_choice="required").solve("count the words in 'a b'")
    assert result.ok and result.answer == "2 words" and [s.kind for s in result.steps].count("unread") == 1
    (told,) = tool_results(server.requests[1])
    assert told["error"]["kind"] == "bad_arguments" and "call answer again" in told["error"]["message"]


def test_first_call_named_forces_run_binary_when_there_are_candidates(three_rt: Runtime, model):
    """As the real 1.5B model answered after a named first call: the answer function's arguments alone."""
    server = model([{"reply": call("run_binary", binary_id="word-count", input_json='{"text": "a b"}')},
                    {"reply": {"content": json.dumps({"result": json.dumps({"words": 2})})}}])
    result = server.solver(three_rt, first_choice="named").solve("count the words in 'a b'")
    assert result.ok and result.answer == {"words": 2}
    assert server.requests[0].body["tool_choice"] == {"type": "function", "function": {"name": "run_binary"}}
    with pytest.raises(InvalidInput):
        Solver(three_rt, None, first_choice="sometimes")


def test_a_repeated_run_is_not_carried_out_again_its_output_is_the_answer(three_rt: Runtime, model):
    """The real small model's habit: after the run's result it writes the same call again (then nothing)."""
    again = '{"name": "word-count", "arguments": "{\\"text\\": \\"a b c\\"}"}'
    server = model([{"reply": {"content": '```json\n{"name": "word-count", "arguments": {"text": "a b c"}}\n```'}},
                    {"reply": {"content": again}}])
    result = server.solver(three_rt).solve("count the words in 'a b c'")
    assert result.ok and result.answer == {"chars": 5, "lines": 1, "words": 3} and len(server.requests) == 2
    assert result.served_by.startswith("word-count@") and [s.kind for s in result.steps][-2:] == ["repeat", "answer"]
    assert len([x for _, _, x in three_rt.log.read() if isinstance(x, ev.ToolRun)]) == 1
    # a run that failed is carried out again (the model may have been told how to mend the call)
    server = model([{"repeat": True, "reply": call("run_binary", binary_id="word-count", input_json='{"txt": 1}')}])
    result = server.solver(three_rt, max_steps=3).solve("count the words in 'a b c'")
    assert result.outcome == "step_limit" and len(tool_results(server.requests[-1])) == 2


def test_the_same_run_named_another_way_is_a_repeat(three_rt: Runtime, model):
    """The real 1.5B model ran url-parse@<12 hex>, then the same with more hex digits, until the solve's time ran
    out: one version and one input, however written, is one run; its output is the answer."""
    fp = three_rt.repo.resolve("word-count").fingerprint
    server = model([{"reply": {"content": json.dumps({"name": f"word-count@{fp[:12]}", "arguments": {"text": "a b"}})}},
                    {"reply": call("run_binary", binary_id=f"word-count@{fp[:30]}", input_json='{ "text":"a b" }')}])
    result = server.solver(three_rt).solve("count the words in 'a b'")
    assert result.ok and result.answer == {"chars": 3, "lines": 1, "words": 2} and len(server.requests) == 2
    assert [s.kind for s in result.steps][-2:] == ["repeat", "answer"]


def test_a_runs_whole_result_echoed_is_its_output(three_rt: Runtime, model):
    """The real 1.5B model answered with the run's whole result (ok, version, output, wall_ms, note)."""
    fp = three_rt.repo.resolve("word-count").fingerprint
    echoed = {"ok": True, "version": f"word-count@{fp}", "output": {"chars": 3, "lines": 1, "words": 2},
              "wall_ms": 1.0, "note": "x"}
    server = model([{"reply": call("run_binary", binary_id="word-count", input_json='{"text": "a b"}')},
                    {"reply": {"content": json.dumps(echoed)}}])
    result = server.solver(three_rt).solve("count the words in 'a b'")
    assert result.ok and result.answer == {"chars": 3, "lines": 1, "words": 2}


def test_a_failure_the_model_made_up_is_never_the_answer(three_rt: Runtime, model):
    """After a run that succeeded, the real 1.5B model answered {"ok": false, "error_kind": ...}: the run's output
    is the answer (see the replay below); with no run at all, the solve fails and says why."""
    made_up = {"ok": False, "error_kind": "invalid_input", "message": "The input JSON does not match"}
    server = model([{"reply": call("run_binary", binary_id="word-count", input_json='{"text": "a b"}')},
                    {"reply": {"content": json.dumps(made_up)}}])
    result = server.solver(three_rt).solve("count the words in 'a b'")
    assert result.ok and result.answer == {"chars": 3, "lines": 1, "words": 2}
    assert "contradicted" in [s.kind for s in result.steps]
    server = model([{"reply": {"content": json.dumps(made_up)}}])
    result = server.solver(three_rt).solve("count the words in 'a b'")
    assert not result.ok and result.outcome == "failed" and "failure no run showed" in result.message
    assert result.served_by is None and result.answer is None


# -- replays of a real small model's solves ----------------------------------------------------------------------------
REAL = Path(__file__).parent / "data" / "real"


@pytest.mark.parametrize("recording, task, first_choice, tool, answer", [
    ("solve_fenced_call_then_result_echoed.json", "How many words are in: the quick brown fox jumps", "auto",
     "word-count", {"chars": 25, "lines": 1, "words": 5}),
    # its answer after the run is a failure it made up: the run's output answers, not the made-up failure
    ("solve_run_then_a_made_up_failure.json", "count the words", "auto", "word-count",
     {"chars": 1, "lines": 1, "words": 1}),
    ("solve_tool_name_call_then_repeated.json", "What is the host of the URL https://example.com:8080/a/b?x=1",
     "auto", "url-parse", {"fragment": None, "host": "example.com", "path": "/a/b", "port": 8080, "query": {"x": "1"},
                           "scheme": "https", "username": ""}),
    ("solve_named_run_binary_then_answer_as_text.json", "How many words are in: the quick brown fox jumps", "named",
     "word-count", {"chars": 25, "lines": 1, "words": 5}),
])
def test_replays_of_the_real_small_model(starter_rt: Runtime, scripted_model, clients, recording, task, first_choice,
                                         tool, answer):
    """Qwen2.5-Coder-1.5B on llama-cpp-python, recorded: every reply it wrote is carried out or read as the
    answer through the real client and HTTP path, with the same requests in the same order."""
    script = json.loads((REAL / recording).read_text())
    server = scripted_model(script)
    config = ModelConfig(model=script["model"], base_url=server.base_url, api_key=KEY, timeout=60)
    clients.append(ModelClient(config, sink=starter_rt.log.append))
    given = b'{"text":"a"}' if "made_up" in recording else None
    result = Solver(starter_rt, clients[-1], first_choice=first_choice).solve(task, given, fast_path=False)
    assert result.ok and result.outcome == "answered", (result.message, [s.text for s in result.steps])
    assert result.answer == answer and result.served_by == f"{tool}@{starter_rt.repo.resolve(tool).fingerprint}"
    assert server.left() == 0 and len(server.requests) == len(script["steps"])
    for seen, step in zip(server.requests, script["steps"], strict=True):  # what the real session asked
        assert seen.body["tool_choice"] == step["request"]["tool_choice"]
        assert [m["role"] for m in seen.messages] == [m["role"] for m in step["request"]["messages"]]
    assert result.prompt_tokens == sum(s["usage"]["prompt_tokens"] for s in script["steps"])


# -- an answer is held to the fields its task names ----------------------------------------------------------------
@pytest.mark.parametrize("task, fields", [
    ('Count the words in "text" that start with a capital letter and answer {"count": n}.', ["count"]),
    ('Split "minutes" into whole hours and the minutes left over, answering {"hours": h, "minutes": m}.',
     ["hours", "minutes"]),
    ('Add up the digits of "number" and give me {"sum": n}.', ["sum"]),
    ('Given {"text": "..."}, count its words', []),  # the input's shape, not the answer's
    ("how many words are in this text", []),
])
def test_the_fields_a_task_names_for_its_answer(task, fields):
    assert answer_fields(task) == fields


CAPITALS = 'Count the words in "text" that start with a capital letter and answer {"count": n}.'


def test_a_run_without_the_tasks_fields_does_not_serve_and_the_model_is_told(three_rt: Runtime, model):
    # live (run 3): "split 135 minutes into hours and minutes" answered with a list-splitting tool's output
    server = model([{"reply": call("run_binary", binary_id="word-count", input_json='{"text": "Alice met Bob"}')},
                    {"reply": {"content": '{"chars": 13, "lines": 1, "words": 3}'}},
                    {"reply": {"content": '{"count": 2}'}}])
    result = server.solver(three_rt).solve(CAPITALS, b'{"text": "Alice met Bob"}', fast_path=False)
    assert result.ok and result.answer == {"count": 2} and result.served_by is None, result.message
    (ran,) = tool_results(server.requests[1])
    assert ran["answers_task"] is False and "no count" in ran["note"] and "words" in ran["note"]
    told = server.requests[2].messages[-1]
    assert told["role"] == "user" and "not the task's answer" in told["content"] and "count" in told["content"]
    assert [s.kind for s in result.steps].count("unfit") == 1
    assert not [e for _, _, e in three_rt.log.read() if isinstance(e, ev.Feedback) and e.solved]


def test_answers_without_the_tasks_fields_end_the_solve_failed(three_rt: Runtime, model):
    server = model([{"reply": {"content": '{"words": 3}'}, "times": 3}])
    solver = server.solver(three_rt, max_writes=0)  # else the solve would create a tool (tested on its own)
    result = solver.solve(CAPITALS, b'{"text": "Alice met Bob"}', fast_path=False)
    assert not result.ok and result.outcome == "failed" and len(server.requests) == 3
    assert result.message.startswith("no answer from a tool that does the task") and "no count" in result.message
    assert solved(three_rt)[-1].outcome == "failed"


PALINDROME = "is this phrase a palindrome if you ignore case, spaces and punctuation"


@pytest.fixture
def fuzzy_rt(tmp_path: Path) -> Runtime:
    return starter_subset(tmp_path, ("word-count", "fuzzy-match", "slugify"))


def test_how_well_a_task_fits_a_tool_is_calibrated(fuzzy_rt: Runtime):
    from evogit.decide import FIT_FLOOR

    assert 0.0 < FIT_FLOOR < 0.75  # fitted (bench_decide --fit), and below the fast path's threshold
    assert fuzzy_rt.fit("how many words are in this text", "word-count") > 0.75
    assert fuzzy_rt.fit(PALINDROME, "fuzzy-match") < FIT_FLOOR
    assert fuzzy_rt.fit(PALINDROME, "no-such-tool") is None


PALINDROME_INPUT = {"query": "Never odd or even", "candidates": ["never odd or even", "even or never"]}


def test_a_tool_the_task_is_far_from_does_not_serve_it(fuzzy_rt: Runtime, model):
    # live (bench solve spec-palindrome, 2026-12-07): the 1.5B model ran fuzzy-match on "Never odd or even" with
    # made-up candidates, ran it again, and the repeat was taken as the answer (credited to fuzzy-match)
    output = fuzzy_rt.run("fuzzy-match", json.dumps(PALINDROME_INPUT).encode()).output
    server = model([{"reply": call("fuzzy-match", **PALINDROME_INPUT)},
                    {"reply": call("fuzzy-match", **PALINDROME_INPUT)},
                    {"reply": {"content": json.dumps(output)}},
                    {"reply": {"content": "I cannot tell with these tools"}}])
    result = server.solver(fuzzy_rt).solve(PALINDROME, b'{"text": "Never odd or even"}', fast_path=False)
    assert result.ok and result.served_by is None and result.answer == "I cannot tell with these tools"
    first, again = tool_results(server.requests[2])  # the repeat is not carried out: it answers nothing
    assert first["answers_task"] is False and "fuzzy-match is not known for tasks like this one" in first["note"]
    assert again["error"]["kind"] == "repeated_run" and "fuzzy-match is not known" in again["error"]["message"]
    assert "create_binary" in again["error"]["message"]
    assert len([e for _, _, e in fuzzy_rt.log.read() if isinstance(e, ev.ToolRun)]) == 2  # the test's own and one
    told = server.requests[3].messages[-1]
    assert told["role"] == "user" and "not the task's answer" in told["content"] and "again" in told["content"]
    assert [s.kind for s in result.steps].count("unfit") == 1
    assert not [e for _, _, e in fuzzy_rt.log.read() if isinstance(e, ev.Feedback) and e.solved]


def test_an_unfit_runs_output_given_again_after_being_told_serves(fuzzy_rt: Runtime, model):
    # the fit is weak evidence (the starter paraphrase "turn 'Héllo Wörld, Again!' into hello-world-again" fits
    # slugify 0.04): the model, told, may keep the output, and the run then serves (and is credited)
    output = fuzzy_rt.run("fuzzy-match", json.dumps(PALINDROME_INPUT).encode()).output
    server = model([{"reply": call("fuzzy-match", **PALINDROME_INPUT)},
                    {"reply": {"content": json.dumps(output)}, "times": 2}])
    result = server.solver(fuzzy_rt).solve(PALINDROME, b'{"text": "Never odd or even"}', fast_path=False)
    assert result.ok and result.answer == output and result.served_by.startswith("fuzzy-match@"), result.message
    assert [s.kind for s in result.steps][-3:] == ["model", "kept", "answer"]
    assert [e.tool for _, _, e in fuzzy_rt.log.read() if isinstance(e, ev.Feedback) and e.solved] == ["fuzzy-match"]


def test_an_answer_of_its_own_after_an_unfit_run_is_the_models(fuzzy_rt: Runtime, model):
    server = model([{"reply": call("fuzzy-match", **PALINDROME_INPUT)},
                    {"reply": {"content": '{"palindrome": true}'}}])
    result = server.solver(fuzzy_rt).solve(PALINDROME, b'{"text": "Never odd or even"}', fast_path=False)
    assert result.ok and result.answer == {"palindrome": True} and result.served_by is None, result.message


def test_words_do_not_answer_a_task_that_names_its_answers_fields(three_rt: Runtime, model):
    # live (bench solve new-capitalized-words, 2026-12-07): "… and answer {"count": n}" answered in words
    words = "To count the words in \"text\" that start with a capital letter, you can use the word-count tool."
    server = model([{"reply": {"content": words}}, {"reply": {"content": '{"count": 2}'}}])
    result = server.solver(three_rt).solve(CAPITALS, b'{"text": "Alice met Bob"}', fast_path=False)
    assert result.ok and result.answer == {"count": 2}, result.message
    told = server.requests[1].messages[-1]
    assert told["role"] == "user" and "JSON answer with count; this is text" in told["content"]
    server = model([{"reply": {"content": "It cannot be done with these tools."}}])  # no fields named: kept
    result = server.solver(three_rt).solve("count the words", b'{"text": "Alice met Bob"}', fast_path=False)
    assert result.ok and result.answer == "It cannot be done with these tools." and result.served_by is None


def test_a_fast_path_output_without_the_tasks_fields_is_failed_feedback_and_goes_to_the_model(
        three_rt: Runtime, model):
    task = 'how many words are in this text; answer {"count": n}'
    server = model([{"reply": {"content": '{"count": 3}'}}])
    result = server.solver(three_rt).solve(task, b'{"text": "Alice met Bob"}')
    assert [s.kind for s in result.steps][:3] == ["search", "fast_path", "run"], result.steps
    assert result.ok and not result.fast_path and result.answer == {"count": 3}
    assert "and ran (" in server.requests[0].messages[1]["content"]
    (fb,) = [e for _, _, e in three_rt.log.read() if isinstance(e, ev.Feedback)]
    assert fb.tool == "word-count" and not fb.solved and "no count" in fb.note


def test_replay_a_real_run_of_a_tool_that_does_not_fit_then_an_empty_reply(starter_rt: Runtime, scripted_model,
                                                                             clients):
    """Live (bench solve spec-palindrome, 2026-12-07, after the fit floor): fuzzy-match ran twice for "is this
    phrase a palindrome …" (written as text, the second time with double-encoded arguments); each run came back
    as not serving the task, and the model then replied nothing. It is asked again, once; nothing again ends the
    solve, with no answer and no credit."""
    script = json.loads((REAL / "solve_unfit_runs_then_an_empty_reply.json").read_text())
    script["steps"].append({"reply": {"content": ""}})  # after the recording: the nudge's reply, scripted
    server = scripted_model(script)
    config = ModelConfig(model=script["model"], base_url=server.base_url, api_key=KEY, timeout=60)
    clients.append(ModelClient(config, sink=starter_rt.log.append))
    task = "is this phrase a palindrome if you ignore case, spaces and punctuation"
    result = Solver(starter_rt, clients[-1]).solve(task, b'{"text": "Never odd or even"}', fast_path=False)
    assert not result.ok and result.outcome == "failed" and result.answer is None, result.steps
    assert "neither an answer nor a function call" in result.message
    run, again = tool_results(server.requests[2])
    assert run["answers_task"] is False and "fuzzy-match is not known" in run["note"]
    assert again["error"]["kind"] == "repeated_run"  # the same run, its arguments double-encoded
    assert server.requests[3].messages[-1] == {"role": "user", "content": SOLVE_EMPTY}
    assert [s.kind for s in result.steps].count("empty") == 1 and server.left() == 0
    assert not [e for _, _, e in starter_rt.log.read() if isinstance(e, ev.Feedback) and e.solved]


@pytest.mark.slow
def test_replay_a_real_solve_that_ends_in_its_own_create(tmp_path: Path, scripted_model, clients):
    """Live (bench round 4, 2026-12-07): for "split minutes into hours and minutes" the 1.5B model ran regex-extract
    (no `hours`: it did not serve), then wrote one unreadable `feedback {…}` call 7 times running; the solve created
    split-minutes itself (green at its second attempt) and answered {"hours": 2, "minutes": 15}. The recording
    keeps the first two of those 7 identical replies (since then the second ends the model's turn); every reply
    here is the real model's, the tool is built from the code it wrote."""
    rt = starter_subset(tmp_path, ("regex-extract", "date-diff", "number-stats"))
    script = json.loads((REAL / "solve_unreadable_twice_then_the_solve_creates.json").read_text())
    server = scripted_model(script)
    config = ModelConfig(model=script["model"], base_url=server.base_url, api_key=KEY, timeout=60)
    clients.append(ModelClient(config, sink=rt.log.append))
    task = ('Split a number of "minutes" into whole hours and the minutes left over, answering '
            '{"hours": h, "minutes": m}.')
    result = Solver(rt, clients[-1]).solve(task, b'{"minutes": 135}')
    assert result.ok and result.answer == {"hours": 2, "minutes": 15}, (result.message, [s.text for s in result.steps])
    created = rt.repo.resolve("split-minutes")
    assert result.served_by == f"split-minutes@{created.fingerprint}" and result.written == [result.served_by]
    assert [s.kind for s in result.steps].count("unread") == 2 and "create" in [s.kind for s in result.steps]
    assert server.left() == 0 and len(server.requests) == len(script["steps"])
