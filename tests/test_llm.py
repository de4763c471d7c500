"""Model access, through the real `openai` client over real HTTP against our scripted model server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import msgspec
import pygit2
import pytest

import evogit
from evogit.errors import InvalidInput, ModelError, ModelNotConfigured
from evogit.events import ModelCalled, decode, encode
from evogit.llm import ModelClient, ModelConfig, load_config
from evogit.llm.config import NO_KEY
from evogit.llm.scripted import Step, load_script
from evogit.log import FileLog

KEY = "sk-test-0123456789"
FILES = {"type": "object", "additionalProperties": False, "required": ["files", "notes"],
         "properties": {"files": {"type": "object", "additionalProperties": {"type": "string"}},
                        "notes": {"type": "string"}}}
ANSWER = {"files": {"src/main.rs": "fn main() {}"}, "notes": "a stub"}
# the evogit under test, also for the server run as a command
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(evogit.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
ASK = [{"role": "system", "content": "You write tools."}, {"role": "user", "content": "write a stub"}]


@pytest.fixture
def connect():
    """`connect(server, **config)` -> (a ModelClient on that server, the events it emitted); closed at teardown."""
    clients = []

    def make(server, **config):
        events: list = []
        settings = {"model": "test-model", "base_url": server.base_url, "api_key": KEY, "timeout": 5.0, **config}
        clients.append(ModelClient(ModelConfig(**settings), events.extend))
        return clients[-1], events

    yield make
    for client in clients:
        client.close()


def test_plain_chat(scripted_model, connect):
    server = scripted_model([{"reply": {"content": "hello there"}, "usage": {"prompt_tokens": 12, "completion_tokens": 3}}])
    client, events = connect(server)
    result = client.chat([{"role": "user", "content": "say hello"}], purpose="test", tool="greeter", round=0)
    assert (result.content, result.tool_calls, result.prompt_tokens, result.completion_tokens, result.model) == \
        ("hello there", [], 12, 3, "test-model")
    (seen,) = server.requests
    assert seen.key == KEY and seen.headers["x-evogit-purpose"] == "test" and seen.last_user == "say hello"
    (event,) = events
    assert isinstance(event, ModelCalled)
    assert (event.purpose, event.model, event.outcome, event.prompt_tokens, event.completion_tokens, event.attempts,
            event.tool, event.round) == ("test", "test-model", "ok", 12, 3, 1, "greeter", 0)
    record = encode(event)
    assert b"say hello" not in record and KEY.encode() not in record  # no prompt, no key in the log


def test_usage_is_counted_when_not_scripted(scripted_model, connect):
    server = scripted_model([{"reply": {"content": "12345678"}}])
    result = connect(server)[0].chat([{"role": "user", "content": "x" * 40}], purpose="test")
    assert (result.prompt_tokens, result.completion_tokens) == (10, 2)  # ceil(characters / 4)


def test_json_schema_reply(scripted_model, connect):
    server = scripted_model([{"reply": {"json": ANSWER}}])
    client, events = connect(server)
    value, result = client.complete_json(ASK, purpose="create", name="tool_files", schema=FILES)
    assert value == ANSWER and json.loads(result.content) == ANSWER
    assert server.requests[0].body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "tool_files", "strict": True, "schema": FILES}}
    assert server.requests[0].messages == ASK  # the schema travels in response_format, not in the prompt
    assert [(e.mode, e.outcome) for e in events] == [("json_schema", "ok")]


def test_server_without_json_schema_gets_json_object_and_is_remembered(scripted_model, connect):
    server = scripted_model({"refuse_json_schema": True, "steps": [{"reply": {"json": ANSWER}, "times": 2}]})
    client, events = connect(server)
    assert client.complete_json(ASK, purpose="create", name="tool_files", schema=FILES)[0] == ANSWER
    refused, accepted = server.requests
    assert (refused.status, refused.body["response_format"]["type"]) == (500, "json_schema")  # not retried
    assert accepted.body["response_format"] == {"type": "json_object", "schema": FILES}
    assert json.dumps(FILES, separators=(",", ":")) in accepted.messages[0]["content"]  # the schema in the prompt
    assert [(e.mode, e.outcome) for e in events] == [("json_schema", "unsupported_format"), ("json_object", "ok")]

    assert client.complete_json(ASK, purpose="create", name="tool_files", schema=FILES)[0] == ANSWER
    assert [r.body["response_format"]["type"] for r in server.requests[2:]] == ["json_object"]
    assert client.json_mode == "json_object"


def test_server_without_any_response_format_gets_plain_text(scripted_model, connect):
    refusal = {"status": 400, "error": "Unrecognized request argument supplied: response_format"}
    server = scripted_model([{**refusal, "match": {"response_format": "json_schema"}},
                             {**refusal, "match": {"response_format": "json_object"}},
                             {"reply": {"content": "Sure! " + json.dumps(ANSWER) + " Hope that helps."}}])
    client, events = connect(server)
    assert client.complete_json(ASK, purpose="create", name="tool_files", schema=FILES)[0] == ANSWER
    assert [r.body.get("response_format", {}).get("type") for r in server.requests] == ["json_schema", "json_object", None]
    assert [e.outcome for e in events] == ["unsupported_format", "unsupported_format", "ok"]
    assert client.json_mode == "text"


def test_json_in_a_fenced_block_is_read(scripted_model, connect):
    fenced = "Here is the tool:\n\n```json\n" + json.dumps(ANSWER, indent=2) + "\n```\n\nIt compiles."
    server = scripted_model([{"reply": {"content": fenced}}])
    assert connect(server)[0].complete_json(ASK, purpose="create", name="tool_files", schema=FILES)[0] == ANSWER


def test_a_reply_that_is_not_json_is_a_bad_response(scripted_model, connect):
    server = scripted_model([{"reply": {"content": "I would write it in Rust, like this: fn main() { }"}}])
    client, events = connect(server)
    with pytest.raises(ModelError) as e:
        client.complete_json(ASK, purpose="create", name="tool_files", schema=FILES)
    assert e.value.kind == "bad_response" and "not a JSON object" in str(e.value)
    assert e.value.result.content.startswith("I would write")  # the reply is kept for a repair prompt
    assert [(ev.outcome, ev.completion_tokens > 0) for ev in events] == [("bad_response", True)]  # tokens still count


def test_a_reply_that_breaks_the_schema_is_a_bad_response(scripted_model, connect):
    server = scripted_model([{"reply": {"json": {"files": {"src/main.rs": 1}, "notes": ""}}}])
    with pytest.raises(ModelError, match=r"does not match the tool_files schema: 1 is not of type 'string' at "
                                         r"/files/src/main.rs") as e:
        connect(server)[0].complete_json(ASK, purpose="create", name="tool_files", schema=FILES)
    assert e.value.kind == "bad_response"


def test_a_caller_that_mends_replies_itself_gets_them_unchecked(scripted_model, connect):
    near_miss = {"files": {"tool.json": {"name": "x"}}, "notes": "tool.json as an object, not as text"}
    server = scripted_model([{"reply": {"json": near_miss}}])
    value, _ = connect(server)[0].complete_json(ASK, purpose="create", name="tool_files", schema=FILES, validate=False)
    assert value == near_miss


def test_429_then_success_is_one_call_of_two_attempts(scripted_model, connect):
    server = scripted_model([{"status": 429, "error": "slow down", "retry_after": 0.05}, {"reply": {"content": "ok"}}])
    client, events = connect(server)
    assert client.chat(ASK, purpose="test").attempts == 2
    assert [(r.status, r.headers["x-stainless-retry-count"]) for r in server.requests] == [(429, "0"), (200, "1")]
    assert [(e.outcome, e.attempts) for e in events] == [("ok", 2)]  # one event per call, its retries counted


def test_500_then_success(scripted_model, connect):
    server = scripted_model([{"status": 500, "error": "overloaded"}, {"reply": {"content": "ok"}}])
    client, events = connect(server)
    assert client.chat(ASK, purpose="test").content == "ok"
    assert [(e.outcome, e.attempts) for e in events] == [("ok", 2)]


def test_rate_limits_past_the_retries_are_a_clear_error(scripted_model, connect):
    server = scripted_model([{"status": 429, "error": "quota exceeded", "retry_after": 0.01, "times": 2}])
    client, events = connect(server, retries=1)
    with pytest.raises(ModelError, match="HTTP 429: quota exceeded") as e:
        client.chat(ASK, purpose="test")
    assert e.value.kind == "rate_limited" and "\n" not in str(e.value)
    assert [(ev.outcome, ev.attempts) for ev in events] == [("rate_limited", 2)]


def test_a_retry_after_beyond_the_time_limit_is_not_waited_for(scripted_model, connect):
    server = scripted_model([{"status": 429, "error": "come back in a minute", "retry_after": 60},
                             {"reply": {"content": "too late"}}])
    client, events = connect(server, timeout=2.0)
    with pytest.raises(ModelError) as e:
        client.chat(ASK, purpose="test")
    assert e.value.kind == "rate_limited" and len(server.requests) == 1  # failed at once, not a timeout a minute on


def test_a_server_that_hangs_is_ended_by_the_time_limit(scripted_model, connect):
    server = scripted_model([{"hang": True}, {"reply": {"content": "back"}}])  # hangs until the server shuts down
    client, events = connect(server, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"no whole reply within the model.s 1 s limit; raise it with git config evogit.modelTimeout") as e:
        client.chat(ASK, purpose="test")
    elapsed = time.monotonic() - started
    assert e.value.kind == "timeout" and [ev.outcome for ev in events] == ["timeout"]
    assert 1.0 <= elapsed < 3.0  # the limit is the behaviour under test: it ends the call, and not before
    assert len(server.requests) == 1  # a timeout at the limit is not retried
    assert client.chat(ASK, purpose="test").content == "back"  # and the client is still good


def test_a_server_that_trickles_is_ended_by_the_time_limit(scripted_model, connect):
    """Every byte arrives well within openai's per-read timeout: only a wall-clock limit ends the call."""
    server = scripted_model([{"reply": {"content": "a long answer"}, "trickle": 0.05}])
    client, _ = connect(server, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ModelError) as e:
        client.chat(ASK, purpose="test")
    assert e.value.kind == "timeout" and time.monotonic() - started < 3.0


def test_a_slow_reply_within_the_limit_is_fine(scripted_model, connect):
    server = scripted_model([{"reply": {"content": "worth the wait"}, "hang": 0.2}])
    assert connect(server, timeout=3.0)[0].chat(ASK, purpose="test").content == "worth the wait"


def test_an_unreachable_server_is_a_connection_error(scripted_model, connect):
    server = scripted_model([])
    server.close()  # nothing listens on its port any more
    client, events = connect(server, retries=0)
    with pytest.raises(ModelError) as e:
        client.chat(ASK, purpose="test")
    assert e.value.kind == "connection" and events[0].outcome == "connection"


def test_an_exhausted_script_answers_410(scripted_model, connect):
    server = scripted_model([])
    with pytest.raises(ModelError, match="no step left") as e:
        connect(server)[0].chat(ASK, purpose="test")
    assert e.value.kind == "bad_request"


def test_a_reply_that_is_no_chat_completion_is_a_bad_response(scripted_model, connect):
    server = scripted_model([{"raw": '{"choices": [{"message": '}, {"raw": '{"object": "chat.completion", "choices": []}'}])
    client, events = connect(server)
    for _ in range(2):
        with pytest.raises(ModelError) as e:
            client.chat(ASK, purpose="test")
        assert e.value.kind == "bad_response"
    assert [ev.outcome for ev in events] == ["bad_response", "bad_response"]


def test_streaming_with_usage_and_tool_calls(scripted_model, connect):
    calls = [{"id": "call_a", "name": "run_binary", "arguments": {"binary_id": "word-count", "input_json": "{}"}},
             {"name": "list_tools", "arguments": "{}"}]
    server = scripted_model([{"reply": {"content": "Let me run two tools for that, one after the other.",
                                        "tool_calls": calls}, "usage": {"prompt_tokens": 30, "completion_tokens": 20}}])
    client, events = connect(server)
    result = client.chat(ASK, purpose="solve", stream=True, tools=[{"type": "function", "function": {"name": "x"}}])
    assert result.content == "Let me run two tools for that, one after the other."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in result.tool_calls] == [
        ("call_a", "run_binary", {"binary_id": "word-count", "input_json": "{}"}), (result.tool_calls[1].id, "list_tools", {})]
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (30, 20, "tool_calls")
    body = server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (events[0].prompt_tokens, events[0].completion_tokens) == (30, 20)


def test_tool_calls_and_the_tool_messages_that_answer_them(scripted_model, connect):
    server = scripted_model([
        {"reply": {"tool_calls": [{"id": "call_1", "name": "run_binary",
                                   "arguments": {"binary_id": "word-count", "input_json": '{"text": "a b"}'}}]}},
        {"match": {"text": '"words": 2'}, "reply": {"content": "It has 2 words."}}])
    client, _ = connect(server)
    tools = [{"type": "function", "function": {"name": "run_binary", "parameters": {"type": "object"}}}]
    first = client.chat(ASK, purpose="solve", tools=tools, tool_choice="auto")
    (call,) = first.tool_calls
    history = [*ASK, first.message(), {"role": "tool", "tool_call_id": call.id, "content": '{"words": 2}'}]
    assert client.chat(history, purpose="solve", tools=tools).content == "It has 2 words."
    sent = server.requests[1].messages
    assert sent[2]["tool_calls"][0]["function"]["name"] == "run_binary" and sent[3]["tool_call_id"] == "call_1"
    assert server.requests[0].body["tool_choice"] == "auto"


def test_matched_steps_answer_out_of_order(scripted_model, connect):
    server = scripted_model([{"match": {"purpose": "repair"}, "reply": {"content": "repaired"}},
                             {"reply": {"content": "first"}}, {"reply": {"content": "second"}}])
    client, _ = connect(server)
    assert [client.chat(ASK, purpose=p).content for p in ("create", "repair", "create")] == ["first", "repaired", "second"]
    assert server.left() == 0


def test_the_model_defaults_to_the_servers_first(scripted_model, connect):
    server = scripted_model({"model": "qwen2.5-coder-1.5b", "steps": [{"reply": {"content": "hi"}}]})
    client, events = connect(server, model=None)
    assert client.chat(ASK, purpose="test").model == "qwen2.5-coder-1.5b"
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
    assert server.requests[1].body["model"] == "qwen2.5-coder-1.5b" and events[0].model == "qwen2.5-coder-1.5b"


def test_a_client_works_inside_a_running_event_loop(scripted_model, connect):
    server = scripted_model([{"reply": {"content": "from a loop"}}])
    client, _ = connect(server)

    async def caller():
        return client.chat(ASK, purpose="test").content

    assert asyncio.run(caller()) == "from a loop"


def test_the_key_is_sent_only_as_a_bearer_token_and_requests_without_one_are_refused(scripted_model, connect):
    server = scripted_model([{"reply": {"content": "ok"}}])
    request = urllib.request.Request(f"{server.base_url}/chat/completions", data=b'{"messages": []}', method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=5)
    assert e.value.code == 401 and server.left() == 1  # refused, and the step is still there
    client, _ = connect(server)
    assert client.chat(ASK, purpose="test").content == "ok"
    seen = server.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {KEY}" and KEY not in json.dumps(seen.body)


# -- configuration ---------------------------------------------------------------------------------------------

def test_no_model_configured_is_one_line_saying_what_to_set(tmp_path):
    repo = pygit2.init_repository(str(tmp_path / "repo"))
    with pytest.raises(ModelNotConfigured) as e:
        load_config(repo.config, env={})
    message = str(e.value)
    assert "\n" not in message and all(v in message for v in ("EVOGIT_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL"))
    with pytest.raises(ModelNotConfigured):
        load_config(None, env={"EVOGIT_MODEL": "gpt-x"})  # OpenAI's own server, but no key


def test_environment_wins_over_git_config(tmp_path):
    repo = pygit2.init_repository(str(tmp_path / "repo"))
    repo.config["evogit.model"] = "from-git"
    repo.config["evogit.baseUrl"] = "http://127.0.0.1:9/v1/"
    repo.config["evogit.modelTimeout"] = "7.5"
    repo.config["evogit.modelRetries"] = "4"
    config = load_config(repo.config, env={})
    assert (config.model, config.base_url, config.timeout, config.retries, config.api_key) == \
        ("from-git", "http://127.0.0.1:9/v1", 7.5, 4, NO_KEY)
    config = load_config(repo.config, env={"EVOGIT_MODEL": "from-env", "OPENAI_BASE_URL": "http://localhost:8080/v1",
                                           "OPENAI_API_KEY": KEY, "EVOGIT_RECORD": str(tmp_path / "rec.json")})
    assert (config.model, config.base_url, config.api_key, config.record) == \
        ("from-env", "http://localhost:8080/v1", KEY, tmp_path / "rec.json")


def test_a_bad_time_limit_in_git_config_is_a_clear_error(tmp_path):
    repo = pygit2.init_repository(str(tmp_path / "repo"))
    repo.config["evogit.model"] = "m"
    repo.config["evogit.baseUrl"] = "http://127.0.0.1:9/v1"
    repo.config["evogit.modelTimeout"] = "soon"
    with pytest.raises(InvalidInput, match="evogit.modelTimeout"):
        load_config(repo.config, env={})
    repo.config["evogit.modelTimeout"] = "-1"
    with pytest.raises(InvalidInput, match="positive"):
        load_config(repo.config, env={})


def test_the_config_never_shows_its_key():
    config = ModelConfig(model="m", api_key=KEY)
    assert KEY not in repr(config) and KEY not in str(config) and KEY not in f"{config!r} {config}"


# -- recording and replaying -------------------------------------------------------------------------------------

def _session(client):
    """A little session of each kind of exchange; returns what a caller would see of it."""
    value, _ = client.complete_json(ASK, purpose="create", name="tool_files", schema=FILES)
    streamed = client.chat(ASK, purpose="solve", stream=True, tools=[{"type": "function", "function": {"name": "f"}}])
    plain = client.chat([*ASK, streamed.message(), {"role": "tool", "tool_call_id": streamed.tool_calls[0].id,
                                                   "content": "3"}], purpose="solve")
    return [value, msgspec.to_builtins(streamed.tool_calls), streamed.content, plain.content,
            (plain.prompt_tokens, plain.completion_tokens)]


def test_a_recorded_session_replays_with_the_same_results(scripted_model, connect, tmp_path):
    live = scripted_model({"refuse_json_schema": True, "model": "live-model", "steps": [
        {"reply": {"content": "```json\n" + json.dumps(ANSWER) + "\n```"}},
        {"reply": {"content": "Counting.", "tool_calls": [{"name": "count", "arguments": {"text": "a b c"}}]}},
        {"reply": {"content": "There are 3."}, "usage": {"prompt_tokens": 99, "completion_tokens": 4}}]})
    recording = tmp_path / "session.json"
    config = load_config(None, env={"OPENAI_BASE_URL": live.base_url, "OPENAI_API_KEY": KEY,
                                    "EVOGIT_RECORD": str(recording)})
    with ModelClient(config) as client:
        first = _session(client)

    script = json.loads(recording.read_text())
    assert script["recorded"] is True and script["model"] == "live-model" and len(script["steps"]) == 4
    assert script["steps"][0]["status"] == 500 and script["steps"][0]["request"]["response_format"]["type"] == "json_schema"
    assert KEY not in recording.read_text()

    replay = scripted_model(recording)
    client, _ = connect(replay, model="live-model")
    assert _session(client) == first
    assert [r.body for r in replay.requests if r.method == "POST"] == [r.body for r in live.requests if r.method == "POST"]
    assert replay.left() == 0


def test_a_script_with_a_misspelt_key_is_refused():
    with pytest.raises(InvalidInput, match=r"step 1: unknown keys \['reponse'\]"):
        load_script([{"reply": {"content": "ok"}}, {"reponse": {"content": "ok"}}])
    with pytest.raises(InvalidInput, match=r"step 0 match: unknown keys \['purpose_'\]"):
        load_script([{"match": {"purpose_": "x"}, "reply": {}}])
    with pytest.raises(InvalidInput, match="each tool call needs a name"):
        load_script([{"reply": {"tool_calls": [{"arguments": {}}]}}])
    with pytest.raises(InvalidInput, match="times must be"):
        load_script([{"reply": {}, "times": "2"}])


def test_the_command_line_server_prints_its_base_url_and_serves(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"reply": {"content": "from the command line"}}]))
    proc = subprocess.Popen([sys.executable, "-m", "evogit.llm.scripted", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        with ModelClient(ModelConfig(model="m", base_url=base_url, api_key=KEY, timeout=5.0)) as client:
            assert client.chat(ASK, purpose="demo").content == "from the command line"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "served 1 requests; 0 steps left" in err


def test_the_command_line_server_refuses_a_bad_script(tmp_path):
    script = tmp_path / "bad.json"
    script.write_text('{"steps": 3}')
    proc = subprocess.run([sys.executable, "-m", "evogit.llm.scripted", str(script)], capture_output=True, text=True,
                          timeout=30, env=ENV)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1


def test_a_hostile_reply_deep_or_with_nan_is_no_object_not_a_crash():
    from evogit.llm.reply import json_object

    deep = "[" * 100_000 + "]" * 100_000
    for text in (deep, f'{{"files": {deep}}}', f"Here:\n```json\n{deep}\n```", f"prose {{\"a\": {deep}}} prose",
                 '{"files": NaN}', 'see {"x": Infinity} here'):
        assert json_object(text) is None, text[:40]
    assert json_object('prose {"a": 1} more') == {"a": 1}


# -- replies that are no chat completion -------------------------------------------------------------------------

def _completion(message=None, **fields):
    """A chat completion's JSON text, `fields` replacing its top-level ones (`choices` too)."""
    body = {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "served-model",
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hi"} if message is None else message}]}
    return json.dumps({**body, **fields})


def _call_message(**function):
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "list_tools", "arguments": "{}", **function}}]}


def _usage(**counts):
    return {"usage": {"prompt_tokens": 5, "completion_tokens": 2, **counts}}


MALFORMED = {
    "NaN in the body": _completion(created=float("nan")),  # json.dumps writes NaN: not JSON
    "Infinity in the body": _completion(created=float("inf")),
    "nested past the depth limit": "[" * 200 + "]" * 200,
    "message null": _completion(choices=[{"index": 0, "message": None, "finish_reason": "stop"}]),
    "message a string": _completion("hello"),
    "content a number": _completion({"role": "assistant", "content": 123}),
    "content an object": _completion({"role": "assistant", "content": {"a": 1}}),
    "content parts not objects": _completion({"role": "assistant", "content": ["hi"]}),
    "content part text a number": _completion({"role": "assistant", "content": [{"type": "text", "text": 5}]}),
    "arguments a number": _completion(_call_message(arguments=7)),
    "arguments true": _completion(_call_message(arguments=True)),
    "function name a number": _completion(_call_message(name=7)),
    "function name null": _completion(_call_message(name=None)),
    "function name empty": _completion(_call_message(name="")),
    "function null": _completion({"role": "assistant", "content": None,
                                  "tool_calls": [{"id": "a", "type": "function", "function": None}]}),
    "tool_calls an object": _completion({"role": "assistant", "content": None, "tool_calls": {"a": 1}}),
    "tool_calls of strings": _completion({"role": "assistant", "content": None, "tool_calls": ["x"]}),
    "choices an object": _completion(choices={"a": 1}),
    "choices [null]": _completion(choices=[None]),
    "choices empty": _completion(choices=[]),
    "no choices": json.dumps({"object": "chat.completion", "model": "m"}),
    "usage a string": _completion(usage="lots"),
    "usage a list": _completion(usage=[1, 2]),
    "prompt_tokens 1.5": _completion(**_usage(prompt_tokens=1.5)),
    "prompt_tokens true": _completion(**_usage(prompt_tokens=True)),
    "completion_tokens '7'": _completion(**_usage(completion_tokens="7")),
    "prompt_tokens 10**30": _completion(**_usage(prompt_tokens=10**30)),
    "prompt_tokens negative": _completion(**_usage(prompt_tokens=-1000)),
    "completion_tokens NaN": _completion(**_usage(completion_tokens=float("nan"))),
    "model a number": _completion(model=5),
    "model an object": _completion(model={"name": "m"}),
    "finish_reason a number": _completion(choices=[{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                                    "finish_reason": 7}]),
    "refusal a number": _completion({"role": "assistant", "content": None, "refusal": 5}),
    "top-level list": "[1, 2, 3]",
    "top-level null": "null",
    "top-level string": '"a completion"',
    "an error with HTTP 200": json.dumps({"error": {"message": "oops\nsecond line"}}),
    "not JSON": "not json at all",
    "cut short": '{"choices": [{"message": ',
    "nested too deep": "[" * 100_000 + "]" * 100_000,
    "a number too long": '{"usage": {"prompt_tokens": ' + "9" * 5000 + "}}",
}


def _sse(*chunks):
    """A streamed reply's body: each chunk (JSON, or text as it is) as an SSE event, then [DONE]."""
    return "".join(f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def _chunk(delta=None, **fields):
    body = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": "served-model",
            "choices": [{"index": 0, "delta": {"content": "hi"} if delta is None else delta, "finish_reason": None}]}
    return {**body, **fields}


def _call_delta(**function):
    return {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                            "function": {"name": "list_tools", "arguments": "{}", **function}}]}


MALFORMED_STREAMS = {
    "a chunk a list": _sse(_chunk(), [1]),
    "a chunk null": _sse(_chunk(), "null"),
    "a chunk not JSON": _sse(_chunk(), "{not json"),
    "a chunk nested too deep": _sse("[" * 100_000 + "]" * 100_000),
    "choices an object": _sse(_chunk(choices={"a": 1})),
    "choices [null]": _sse(_chunk(choices=[None])),
    "index a string": _sse(_chunk(choices=[{"index": "0", "delta": {"content": "hi"}}])),
    "delta a string": _sse(_chunk("hi")),
    "delta an empty list": _sse(_chunk([])),
    "content a number": _sse(_chunk({"content": 5})),
    "refusal a number": _sse(_chunk({"refusal": 5})),
    "tool_calls an object": _sse(_chunk({"tool_calls": {"a": 1}})),
    "tool call index a string": _sse(_chunk({"tool_calls": [{"index": "0", "function": {"name": "f"}}]})),
    "function name a number": _sse(_chunk(_call_delta(name=7))),
    "function a string": _sse(_chunk({"tool_calls": [{"index": 0, "function": "f"}]})),
    "arguments a number": _sse(_chunk(_call_delta(arguments=7))),
    "a tool call without a name": _sse(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})),
    "usage a string": _sse(_chunk(), _chunk(choices=[], usage="lots")),
    "prompt_tokens 1.5": _sse(_chunk(), _chunk(choices=[], **_usage(prompt_tokens=1.5))),
    "prompt_tokens true": _sse(_chunk(), _chunk(choices=[], **_usage(prompt_tokens=True))),
    "prompt_tokens 10**30": _sse(_chunk(), _chunk(choices=[], **_usage(prompt_tokens=10**30))),
    "completion_tokens negative": _sse(_chunk(), _chunk(choices=[], **_usage(completion_tokens=-5))),
    "model a number": _sse(_chunk(model=5)),
    "finish_reason a number": _sse(_chunk(choices=[{"index": 0, "delta": {}, "finish_reason": 7}])),
    "an error event": _sse(_chunk(), {"error": {"message": "overloaded\nhalfway"}}),
}


def _assert_logged_cleanly(events, tmp_path, outcome):
    """The call's one event has the types the log reads back, in a real log file too."""
    (event,) = events
    assert event.outcome == outcome
    assert all(type(getattr(event, f)) is int for f in ("prompt_tokens", "completion_tokens", "attempts"))
    assert type(event.model) is str and event.model.isprintable() and len(event.model) <= 200
    assert decode(encode(event)) == event
    log = FileLog(tmp_path / "log", "test")
    log.append(events)
    log.close()
    (back,) = [e for _, _, e in FileLog(tmp_path / "log", "test").read()]
    assert isinstance(back, ModelCalled) and back.outcome == outcome


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_reply_is_a_bad_response_and_logs_cleanly(scripted_model, connect, tmp_path, body):
    server = scripted_model([{"raw": body}])
    client, events = connect(server)
    with pytest.raises(ModelError) as e:
        client.chat(ASK, purpose="test")
    assert e.value.kind == "bad_response", str(e.value)
    message = str(e.value)
    assert "\n" not in message and message.isprintable() and len(message) < 400
    assert message.startswith(f"{server.base_url}: not a chat completion")
    _assert_logged_cleanly(events, tmp_path, "bad_response")


@pytest.mark.parametrize("body", MALFORMED_STREAMS.values(), ids=MALFORMED_STREAMS.keys())
def test_a_malformed_stream_is_a_bad_response_and_logs_cleanly(scripted_model, connect, tmp_path, body):
    server = scripted_model([{"raw": body}])
    client, events = connect(server)
    with pytest.raises(ModelError) as e:
        client.chat(ASK, purpose="test", stream=True)
    assert e.value.kind == "bad_response", str(e.value)
    message = str(e.value)
    assert "\n" not in message and message.isprintable() and len(message) < 400
    _assert_logged_cleanly(events, tmp_path, "bad_response")
    server.script.steps.append(Step({"reply": {"content": "fine"}}, 1))
    assert client.chat(ASK, purpose="test", stream=True).content == "fine"  # the stream was closed, the client is good


def test_arguments_given_as_json_values_and_other_leniencies(scripted_model, connect, tmp_path):
    """What OpenAI-compatible servers really send besides text arguments: the object or list itself, content
    as a list of parts, a call without an id, counts or a model left out (null)."""
    message = {"role": "assistant", "content": [{"type": "text", "text": "Two "}, {"type": "image_url"},
                                                {"type": "text", "text": "calls."}],
               "tool_calls": [{"id": "a", "type": "function", "function": {"name": "run", "arguments": {"x": [1, "é"]}}},
                              {"id": 5, "type": "function", "function": {"name": "list", "arguments": [1, 2]}},
                              {"type": "function", "function": {"name": "none"}}]}
    server = scripted_model([{"raw": _completion(message, model=None, usage={"prompt_tokens": 4,
                                                                              "completion_tokens": None})}])
    client, events = connect(server)
    result = client.chat(ASK, purpose="test")
    assert result.content == "Two calls."
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("a", "run", json.dumps({"x": [1, "é"]})), ("call_1", "list", "[1, 2]"), ("call_2", "none", "")]
    assert json.loads(result.tool_calls[0].arguments) == {"x": [1, "é"]}
    assert (result.model, result.prompt_tokens, result.completion_tokens) == ("test-model", 4, 0)
    _assert_logged_cleanly(events, tmp_path, "ok")


def test_streamed_arguments_given_as_an_object(scripted_model, connect):
    body = _sse(_chunk({"role": "assistant", "content": None}),
                _chunk({"tool_calls": [{"index": 0, "id": "call_x", "function": {"name": "run", "arguments": {"a": 1}}}]}),
                _chunk({}, choices=[{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
                _chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 1}))
    server = scripted_model([{"raw": body}])
    result = connect(server)[0].chat(ASK, purpose="test", stream=True)
    assert [(c.id, c.name, json.loads(c.arguments)) for c in result.tool_calls] == [("call_x", "run", {"a": 1})]
    assert (result.finish_reason, result.prompt_tokens, result.completion_tokens) == ("tool_calls", 3, 1)


@pytest.mark.parametrize("stream", [False, True])
def test_a_model_name_with_control_characters_or_huge_is_made_fit_to_show(scripted_model, connect, tmp_path, stream):
    names = ["evil\nmodel m: 999999 calls\x1b[31m\u202e", "m" * 1_000_000]
    bodies = [_sse(_chunk(model=n)) if stream else _completion(model=n) for n in names]
    server = scripted_model([{"raw": b} for b in bodies])
    client, events = connect(server)
    first, second = (client.chat(ASK, purpose="test", stream=stream).model for _ in names)
    assert first == "evil?model m: 999999 calls?[31m?"
    assert len(second) == 200 and second.startswith("mmm")
    assert [e.model for e in events] == [first, second]
    for event in events:
        assert decode(encode(event)) == event


def test_a_server_listing_a_model_with_control_characters(scripted_model, connect):
    server = scripted_model({"model": "qwen\n\x1b[2Jfake", "steps": [{"raw": _completion(model=None)}]})
    client, events = connect(server, model=None)
    assert client.chat(ASK, purpose="test").model == "qwen??[2Jfake"
    assert server.requests[1].body["model"] == "qwen??[2Jfake" and events[0].model == "qwen??[2Jfake"


def test_a_lone_surrogate_in_a_reply_is_replaced_so_that_it_can_be_written(scripted_model, connect, tmp_path):
    server = scripted_model([{"raw": _completion({"role": "assistant", "content": "a\\ud800b"}).replace("\\\\", "\\")}])
    recording = tmp_path / "rec.json"
    client, _ = connect(server, record=recording)
    assert client.chat(ASK, purpose="test").content == "a\ufffdb"
    assert "a\ufffdb" in recording.read_text()


# -- the key is never shown ----------------------------------------------------------------------------------------

def test_a_server_echoing_the_key_has_it_redacted(scripted_model, connect, tmp_path):
    server = scripted_model([{"status": 401, "error": f"Incorrect API key provided: {KEY}. Or was it {KEY[:12]}?"},
                             {"raw": _sse(_chunk(), {"error": {"message": f"key {KEY} revoked"}})}])
    recording = tmp_path / "rec.json"
    client, events = connect(server, record=recording)
    with pytest.raises(ModelError) as e:
        client.chat(ASK, purpose="test")
    assert e.value.kind == "auth" and KEY[:12] not in str(e.value)
    assert str(e.value) == f"{server.base_url}: HTTP 401: Incorrect API key provided: <key>. Or was it <key>?"
    with pytest.raises(ModelError) as e:
        client.chat(ASK, purpose="test", stream=True)
    assert e.value.kind == "bad_response" and KEY not in str(e.value) and "key <key> revoked" in str(e.value)
    assert KEY[:12] not in recording.read_text() and "<key>" in recording.read_text()
    assert all(KEY.encode() not in encode(ev) for ev in events)


def test_the_servers_url_is_shown_without_its_user_and_password(scripted_model):
    server = scripted_model([])
    server.close()  # a connection error, whose message names the server
    url = server.base_url.replace("http://", f"http://user:{KEY}@")
    config = load_config(None, env={"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-other-key-987654321"})
    assert config.base_url == url  # the client still gets the whole URL
    assert config.server == server.base_url and KEY not in repr(config)
    assert ModelConfig(model="m", base_url="https://tok3n-abc@example.com/v1").server == "https://example.com/v1"
    assert config.redact(f"at {url}") == f"at {url.replace(KEY, '<key>')}"
    other = ModelConfig(model="m", base_url=url, api_key="sk-other-key-987654321", timeout=5.0, retries=0)
    with ModelClient(other) as client, pytest.raises(ModelError) as e:
        client.chat(ASK, purpose="test")
    assert e.value.kind == "connection" and str(e.value).startswith(f"{server.base_url}: ")
    assert KEY not in str(e.value) and "user" not in str(e.value)
