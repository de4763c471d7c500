"""Calls to a model through the `openai` client, each with a hard wall-clock limit and each an event.

The openai client retries 408/409/429/5xx, timeouts and lost connections itself (`ModelConfig.retries`,
honouring `Retry-After`), but its `timeout` bounds each read, so a server that hangs or trickles could hold a
call for ever. Here every call, retries and their sleeps included, runs under `asyncio.timeout` on the async
client, which really ends it: the request is cancelled and its connection dropped. The loop lives in an
`asyncio.Runner` owned by the `ModelClient`, so connections are reused between calls. Two response hooks keep
retries honest: a reply that refuses the response format is not retried (llama.cpp answers `json_schema` with
a 500), nor is a 429/5xx whose `Retry-After` would end past the limit (it fails at once as `rate_limited` or
`server_error` instead of sleeping into a `timeout`).

A reply is read from its raw JSON (`with_raw_response`; streamed chunks as `AsyncStream[object]`), not from
the openai client's models, which it builds without validating them: every field is checked here (`_read`,
`_gather`), so that a reply with a float or a boolean for a token count, a number for content or for a tool's
name, or no message at all is a `bad_response`, never a crash nor a wrong-typed value in the event log. Tool
arguments sent as a JSON object or list (some servers do) are taken as their JSON text, content parts are
joined, and a server's model name is cut to 200 characters without control characters. Every `ModelError`
message, and every recorded step, has the key in it (a server may echo it) replaced by `<key>`.

Every call, whatever its outcome, is one `ModelCalled` event handed to the caller's sink (e.g. `log.append`)
with the HTTP attempts it took (1 = no retry); nothing about a model is kept in a process-global.

Error kinds (`ModelError.kind`, and the event's `outcome`): timeout, rate_limited, server_error, connection,
auth (401/403), not_found (404: wrong model or URL), bad_request (another 4xx), unsupported_format (the server
refuses the response_format asked for), refused (the model declined), bad_response (no chat completion, or not
the JSON object the schema asks for).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import unicodedata
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from .. import jsonio
from ..errors import ModelError
from ..events import ModelCalled
from .config import ModelConfig
from .record import Recorder
from .reply import json_object, schema_error

if TYPE_CHECKING:
    import httpx2
    import openai

Sink = Callable[[list[Any]], object]  # e.g. an EventLog's `append`

#: The reply formats `complete_json` tries, best first; a server that refuses one gets the next.
JSON_MODES = ("json_schema", "json_object", "text")
_FORMAT_WORDS = ("response_format", "json_schema", "json_object")


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    name: str
    arguments: str  # the JSON text the model wrote, unchecked


class ChatResult(msgspec.Struct):
    """A model's reply to one call."""

    content: str | None
    tool_calls: list[ToolCall]
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 1  # HTTP requests it took, the client's retries included
    finish_reason: str | None = None

    def message(self) -> dict[str, Any]:
        """The reply as the assistant message to send back in the next call's `messages` (no `content` when it
        has none: llama-cpp-python's server answers `content: null` with HTTP 500)."""
        out: dict[str, Any] = {"role": "assistant"}
        if self.content is not None or not self.tool_calls:
            out["content"] = self.content or ""
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in self.tool_calls]
        return out


class _Loop:
    """One client's event loop, the async openai client bound to it (closed together), and the state of the
    call in flight that the HTTP hooks read and count. Holds no reference to its `ModelClient`, so an
    unclosed client is still collected."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.runner = asyncio.Runner()
        self.client: openai.AsyncOpenAI | None = None
        self.attempts = 0  # HTTP requests sent for the call in flight
        self.deadline = 0.0  # time.monotonic() at which the call in flight must end

    def openai(self) -> openai.AsyncOpenAI:
        if self.client is None:
            import httpx2
            import openai

            http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [self._on_request],
                                                               "response": [self._on_response]})
            self.client = openai.AsyncOpenAI(
                api_key=self.config.api_key, base_url=self.config.base_url or openai.not_given,
                max_retries=self.config.retries, http_client=http,
                timeout=httpx2.Timeout(self.config.timeout, connect=min(self.config.timeout, 10.0)))
        return self.client

    async def _on_request(self, request: httpx2.Request) -> None:
        self.attempts += 1

    async def _on_response(self, response: httpx2.Response) -> None:
        """Tell the openai client not to retry what a retry cannot fix within the limit."""
        status = response.status_code
        if status < 400 or status in (401, 403, 404):
            return
        await response.aread()
        refuses_format = status in (400, 422, 500) and any(w in response.text for w in _FORMAT_WORDS)
        too_late = (status == 429 or status >= 500) and time.monotonic() + _retry_after(response) >= self.deadline
        if refuses_format or too_late:
            response.headers["x-should-retry"] = "false"

    def close(self) -> None:
        try:
            if self.client is not None:
                self.runner.run(self.client.close())
        finally:
            self.runner.close()


class ModelClient:
    """Chat completions against `config`'s server; each call's `ModelCalled` event goes to `sink`.

    Calls on one client are serialised; use one client per thread for parallel calls. Close it when done
    (or use it as a context manager)."""

    def __init__(self, config: ModelConfig, sink: Sink | None = None):
        self.config = config
        self._sink = sink
        self._recorder = Recorder(config.record) if config.record else None
        self._model = config.model
        self._json_mode = 0  # index in JSON_MODES of the best format this server accepted (or not yet refused)
        self._lock = threading.Lock()
        self._loop = _Loop(config)
        self._finalizer = weakref.finalize(self, self._loop.close)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def json_mode(self) -> str:
        """The reply format `complete_json` asks this server for next."""
        return JSON_MODES[self._json_mode]

    # -- the two calls -----------------------------------------------------------------------------------------
    def chat(self, messages: list[dict[str, Any]], *, purpose: str, tools: list[dict[str, Any]] | None = None,
             tool_choice: Any = None, response_format: dict[str, Any] | None = None, stream: bool = False,
             tool: str | None = None, round: int | None = None, temperature: float | None = None) -> ChatResult:
        """One chat completion (streamed if `stream`); raises `ModelError`. `purpose` (e.g. "create", "solve"),
        `tool` and `round` describe the call in its event; `temperature` overrides the configured one."""
        request = {"messages": messages, "tools": tools, "tool_choice": tool_choice, "response_format": response_format,
                   "temperature": temperature}
        result: ChatResult = self._call(request, purpose, stream=stream, mode="", tool=tool, round=round, check=None)
        return result

    def complete_json(self, messages: list[dict[str, Any]], *, purpose: str, name: str, schema: dict[str, Any],
                      validate: bool = True, tool: str | None = None,
                      round: int | None = None) -> tuple[dict[str, Any], ChatResult]:
        """One JSON object matching `schema`: asked for with a strict `json_schema` response format; a server
        that refuses it is asked again with `json_object` (the schema in the prompt), then with plain text,
        and this client remembers the format that worked. Raises `ModelError` ("bad_response", with the reply
        as `.result`, when the reply is not such an object). With `validate=False` any JSON object is returned,
        for a caller that mends near misses itself (the authoring wire format does)."""
        def check(result: ChatResult) -> tuple[dict[str, Any], ChatResult]:
            value = json_object(result.content or "")
            if value is None:
                raise ModelError("bad_response", f"the model's reply is not a JSON object: {_clip(result.content)}",
                                 result)
            if validate and (why := schema_error(value, schema)) is not None:
                raise ModelError("bad_response", f"the model's reply does not match the {name} schema: {why}", result)
            return value, result

        while True:
            mode = JSON_MODES[self._json_mode]
            request = {"messages": messages if mode == "json_schema" else _with_schema(messages, schema),
                       "tools": None, "tool_choice": None, "response_format": _response_format(mode, name, schema)}
            try:
                answer: tuple[dict[str, Any], ChatResult] = self._call(
                    request, purpose, stream=False, mode=mode, tool=tool, round=round, check=check)
                return answer
            except ModelError as e:
                if e.kind != "unsupported_format" or self._json_mode == len(JSON_MODES) - 1:
                    raise
                self._json_mode += 1

    # -- one call: its limit, its event, its recording ---------------------------------------------------------
    def _call(self, request: dict[str, Any], purpose: str, *, stream: bool, mode: str, tool: str | None,
              round: int | None, check: Callable[[ChatResult], Any] | None) -> Any:
        import openai  # noqa: F401 - imported here (about 1 s, once) so that it is not counted as the call's time

        with self._lock:
            started = time.perf_counter()
            self._loop.attempts = 0
            result: ChatResult | None = None
            outcome = "interrupted"  # unless it ends otherwise (KeyboardInterrupt)
            try:
                result = self._run(lambda: self._request(request, purpose, stream))
                value = check(result) if check else result
                outcome = "ok"
                return value
            except ModelError as e:
                outcome = e.kind
                if result is None and isinstance(e.result, ChatResult):  # a cut reply's tokens were spent too
                    result = e.result
                e.args = (self.config.redact(str(e)),)  # a server may echo the key (HTTP 401: Incorrect API key: sk-...)
                raise
            except Exception:
                outcome = "error"  # a bug of ours: the traceback goes up
                raise
            finally:
                event = ModelCalled(
                    purpose=purpose, model=(result.model if result else None) or self._model or "", outcome=outcome,
                    prompt_tokens=result.prompt_tokens if result else 0,
                    completion_tokens=result.completion_tokens if result else 0,
                    latency_ms=round_ms(time.perf_counter() - started), attempts=max(self._loop.attempts, 1),
                    mode=mode, tool=tool or "", round=round)
                if self._sink is not None:
                    self._sink([event])

    def _run(self, make: Callable[[], Coroutine[Any, Any, ChatResult]]) -> ChatResult:
        """Run a coroutine on this client's loop; from inside another running loop, on a helper thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._loop.runner.run(make())
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = self._loop.runner.run(make())
            except BaseException as e:  # handed back to the caller's thread
                box["error"] = e

        helper = threading.Thread(target=target, name="evogit-model-call")
        helper.start()
        helper.join()
        if "error" in box:
            raise box["error"]
        result: ChatResult = box["result"]
        return result

    async def _request(self, request: dict[str, Any], purpose: str, stream: bool) -> ChatResult:
        import httpx2
        import openai

        self._loop.deadline = time.monotonic() + self.config.timeout
        started = time.perf_counter()
        kwargs = {k: v for k, v in request.items() if v is not None}
        kwargs.setdefault("max_tokens", self.config.max_tokens)
        kwargs.setdefault("temperature", self.config.temperature)
        partial = _Partial(self._model or "", len(json.dumps(request.get("messages"), ensure_ascii=False))
                           + len(json.dumps(request.get("tools") or "", ensure_ascii=False)))
        try:
            async with asyncio.timeout(self.config.timeout):
                client = self._loop.openai()
                if self._model is None:
                    self._model = await self._first_model(client)
                headers = {"X-Evogit-Purpose": purpose}
                # the raw reply, read here: the openai client builds its models without validating them
                if stream:
                    raw = await client.chat.completions.with_raw_response.create(
                        model=self._model, stream=True, stream_options={"include_usage": True}, extra_headers=headers,
                        **kwargs)
                    chunks = raw.parse(to=openai.AsyncStream[object])
                    try:
                        result = await _gather(chunks, partial)
                    finally:
                        await chunks.close()
                else:
                    raw = await client.chat.completions.with_raw_response.create(
                        model=self._model, extra_headers=headers, **kwargs)
                    result = _read(_json(raw.content), self._model)
        except _NotCompletion as e:
            raise ModelError("bad_response", f"{self.config.server}: not a chat completion: {e}") from None
        except TimeoutError:
            cut = partial.result() if partial.pieces else None  # what a streamed reply had said by then
            said = (f" (cut after {cut.completion_tokens} streamed tokens)" if cut is not None else "")
            message = (f"{self.config.server}: no whole reply within the model's {self.config.timeout:g} s "
                       f"limit{said}; raise it with git config evogit.modelTimeout")
            self._record(request, purpose, stream, {"hang": True, "note": message,
                                                    **({"partial": cut.content} if cut and cut.content else {})})
            raise ModelError("timeout", message, cut) from None
        except openai.APIStatusError as e:
            self._record(request, purpose, stream, {"status": e.status_code, "error": _message(e)})
            raise _status_error(e, self.config.server, request.get("response_format") is not None) from None
        except openai.APITimeoutError:
            raise ModelError("timeout", f"{self.config.server}: the request timed out") from None
        except openai.APIConnectionError as e:
            raise ModelError("connection", f"{self.config.server}: cannot reach the server ({e.__cause__ or e})") from None
        except openai.OpenAIError as e:  # e.g. an error event in a stream
            raise ModelError("bad_response", f"{self.config.server}: not a chat completion ({_clip(str(e))})") from None
        except httpx2.TimeoutException:  # while reading the body, after the client's retries
            raise ModelError("timeout", f"{self.config.server}: the reply timed out") from None
        except httpx2.TransportError as e:
            raise ModelError("connection", f"{self.config.server}: the connection broke ({_clip(str(e))})") from None
        result.latency_ms = round_ms(time.perf_counter() - started)
        result.attempts = max(self._loop.attempts, 1)
        self._record(request, purpose, stream, {
            "reply": {"content": result.content, "tool_calls": [msgspec.to_builtins(c) for c in result.tool_calls],
                      "finish_reason": result.finish_reason},
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens}})
        if result.finish_reason == "content_filter":
            raise ModelError("refused", f"{self.config.server}: the reply was withheld by the server's content filter")
        return result

    async def _first_model(self, client: openai.AsyncOpenAI) -> str:
        raw = await client.models.with_raw_response.list()
        try:
            listing = _json(raw.content)
        except _NotCompletion as e:
            raise ModelError("bad_response", f"{self.config.server}: its list of models is {e}") from None
        models = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(models, list):
            raise ModelError("bad_response", f"{self.config.server}: its list of models is no list (no \"data\")")
        for entry in models:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and (name := model_name(entry["id"])):
                return name
        raise ModelError("not_found", f"{self.config.server} lists no models: set EVOGIT_MODEL")

    def _record(self, request: dict[str, Any], purpose: str, stream: bool, answer: dict[str, Any]) -> None:
        if self._recorder is not None:
            asked = {"purpose": purpose, **{k: v for k, v in request.items() if v is not None}}
            if stream:
                asked["stream"] = True
            self._recorder.add(_scrub({"request": asked, **answer}, self.config.redact), self._model or "")


def _response_format(mode: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    if mode == "json_object":  # with the schema, which llama.cpp's server enforces with a grammar
        return {"type": "json_object", "schema": schema}
    return None


def _with_schema(messages: list[dict[str, Any]], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages with the schema stated in the (first) system message, for a server that cannot enforce it."""
    rule = ("Reply with one JSON object and nothing else. It must match this JSON Schema:\n"
            + json.dumps(schema, separators=(",", ":")))
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return [{**messages[0], "content": messages[0]["content"] + "\n\n" + rule}, *messages[1:]]
    return [{"role": "system", "content": rule}, *messages]


class _NotCompletion(Exception):
    """What makes a reply no chat completion, in a few words (the `bad_response` message says the rest)."""


#: A token count at or past this is no count (and 10**30 would not even fit in the event log's integers).
MAX_TOKENS = 10**9
#: The longest model name kept (a server's name for its model goes into events and `stats` tables).
MODEL_WIDTH = 200


def _json(data: bytes) -> Any:
    """The reply's body as JSON, strictly: NaN and Infinity are refused (as evogit.jsonio does), and so is a body
    nested deeper than jsonio.MAX_DEPTH (checked before decoding). json, not msgspec: a lone surrogate escape is
    kept, to be replaced by `_valid`, rather than failing the whole reply."""
    if jsonio.too_deep(data):
        raise _NotCompletion(f"its JSON nests deeper than {jsonio.MAX_DEPTH} levels")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise _NotCompletion("its JSON nests too deep") from None
    except ValueError as e:  # not JSON, not UTF-8, a number too long to read, NaN
        raise _NotCompletion(f"not JSON ({_clip(str(e), 80)})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _read(body: Any, model: str) -> ChatResult:
    """A chat completion's JSON as a `ChatResult`, every field checked (raises `_NotCompletion`, or `ModelError`
    "refused"). `model` (the one asked for) stands in for a reply that names none."""
    body = _object(body, "the reply")
    if "choices" not in body and "error" in body:
        raise _NotCompletion(f"an error: {_error_text(body['error'])}")
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise _NotCompletion(f"its choices are {_kind(choices)}, not a list")
    if not choices:
        raise _NotCompletion("it has no choices")
    choice = _object(choices[0], "choices[0]")
    message = _object(choice.get("message"), "choices[0].message")
    refusal = _string(message.get("refusal"), "message.refusal")
    content = _content(message.get("content"), "message.content")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, list):
        raise _NotCompletion(f"message.tool_calls is {_kind(tool_calls)}, not a list")
    calls = []
    for i, raw in enumerate(tool_calls or []):
        call = _object(raw, f"tool_calls[{i}]")
        function = _object(call.get("function"), f"tool_calls[{i}].function")
        name = _string(function.get("name"), f"tool_calls[{i}].function.name")
        if not name:
            raise _NotCompletion(f"tool_calls[{i}] names no function")
        call_id = call.get("id")
        calls.append(ToolCall(id=_valid(call_id) if isinstance(call_id, str) and call_id else f"call_{i}", name=name,
                              arguments=_arguments(function.get("arguments"), f"tool_calls[{i}].function.arguments")))
    finish = _string(choice.get("finish_reason"), "finish_reason")
    prompt_tokens, completion_tokens = _usage(body.get("usage"))
    model = _model(body.get("model"), model)
    if refusal:
        raise ModelError("refused", f"the model refused: {_clip(refusal)}")
    return ChatResult(content=content, tool_calls=calls, model=model, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, finish_reason=finish)


class _Partial:
    """A streamed reply as far as it has come: kept by the caller, so a reply cut by the time limit still says
    what it held and how many tokens it cost (servers stream one token a chunk; the usage chunk comes last)."""

    def __init__(self, model: str, prompt_chars: int = 0) -> None:
        self.model = model
        self.prompt_chars = prompt_chars  # of the request, for a server that streams no usage
        self.parts: list[str] = []
        self.pieces = 0  # chunks that carried content or a tool call's part
        self.calls: dict[int, dict[str, str]] = {}
        self.usage: tuple[int, int] | None = None
        self.finish: str | None = None
        self.refusal = ""

    def result(self) -> ChatResult:
        # a server that streams no usage (llama-cpp-python's): one token a chunk, and the prompt estimated at four
        # characters a token (the scripted server's rule), so that cost is never counted as nothing
        prompt, completion = self.usage if self.usage is not None else (-(-self.prompt_chars // 4), self.pieces)
        return ChatResult(content="".join(self.parts) if self.parts else None,
                          tool_calls=[ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"])
                                      for i, c in sorted(self.calls.items())],
                          model=self.model, prompt_tokens=prompt, completion_tokens=completion,
                          finish_reason=self.finish)


async def _gather(chunks: Any, acc: _Partial) -> ChatResult:
    """A streamed reply (each chunk's JSON) put together in `acc` and checked as `_read` checks a whole one:
    content pieces joined, tool-call deltas merged by index, usage from the last chunk (`include_usage`)."""
    try:
        async for raw in chunks:
            chunk = _object(raw, "a streamed chunk")
            acc.model = _model(chunk.get("model"), acc.model)
            if chunk.get("usage") is not None:
                acc.usage = _usage(chunk["usage"])
            choices = chunk.get("choices")
            if choices is not None and not isinstance(choices, list):
                raise _NotCompletion(f"a streamed chunk's choices are {_kind(choices)}, not a list")
            for item in choices or []:
                choice = _object(item, "a streamed choice")
                index = choice.get("index", 0)
                if type(index) is not int:
                    raise _NotCompletion(f"a streamed choice's index is {_kind(index)}, not an integer")
                if index != 0:
                    continue
                delta = {} if choice.get("delta") is None else _object(choice["delta"], "a streamed delta")
                text = _content(delta.get("content"), "delta.content")
                if text:
                    acc.parts.append(text)
                    acc.pieces += 1
                acc.refusal += _string(delta.get("refusal"), "delta.refusal") or ""
                deltas = delta.get("tool_calls")
                if deltas is not None and not isinstance(deltas, list):
                    raise _NotCompletion(f"delta.tool_calls is {_kind(deltas)}, not a list")
                for n, d in enumerate(deltas or []):
                    d = _object(d, "a tool-call delta")
                    at = d.get("index", n)
                    if type(at) is not int:
                        raise _NotCompletion(f"a tool-call delta's index is {_kind(at)}, not an integer")
                    slot = acc.calls.setdefault(at, {"id": "", "name": "", "arguments": ""})
                    acc.pieces += 1
                    if isinstance(d.get("id"), str) and d["id"]:
                        slot["id"] = _valid(d["id"])
                    if d.get("function") is not None:
                        function = _object(d["function"], "a tool-call delta's function")
                        slot["name"] += _string(function.get("name"), "a tool-call delta's name") or ""
                        slot["arguments"] += _arguments(function.get("arguments"), "a tool-call delta's arguments")
                acc.finish = _string(choice.get("finish_reason"), "finish_reason") or acc.finish
    except RecursionError:
        raise _NotCompletion("a streamed chunk's JSON nests too deep") from None
    except ValueError as e:  # a chunk that is not JSON, or not UTF-8
        raise _NotCompletion(f"a streamed chunk is not JSON ({_clip(str(e), 80)})") from None
    if acc.refusal:
        raise ModelError("refused", f"the model refused: {_clip(acc.refusal)}")
    for at, call in acc.calls.items():
        if not call["name"]:
            raise _NotCompletion(f"streamed tool call {at} names no function")
    return acc.result()


def _kind(value: Any) -> str:
    """A JSON value's kind, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else type(value).__name__


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _NotCompletion(f"{what} is {_kind(value)}, not an object")
    return value


def _string(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _NotCompletion(f"{what} is {_kind(value)}, not a string")
    return _valid(value)


def _content(value: Any, what: str) -> str | None:
    """A message's content: text, or a list of content parts whose texts are joined."""
    if not isinstance(value, list):
        return _string(value, what)
    texts = [_string(_object(part, f"a part of {what}").get("text"), f"a part of {what}'s text") for part in value]
    return "".join(t for t in texts if t is not None)


def _arguments(value: Any, what: str) -> str:
    """A tool call's arguments as JSON text: as written, or the object or list a server sent as such."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _valid(value)
    if isinstance(value, (dict, list)):
        try:
            return json.dumps(value)
        except RecursionError:
            raise _NotCompletion(f"{what} nest too deep") from None
    raise _NotCompletion(f"{what} is {_kind(value)}, not JSON text")


def _usage(value: Any) -> tuple[int, int]:
    """(prompt, completion) tokens; a count the server leaves out (or null) is 0."""
    if value is None:
        return 0, 0
    usage = _object(value, "usage")
    counts = []
    for key in ("prompt_tokens", "completion_tokens"):
        n = usage.get(key)
        if n is not None and (type(n) is not int or not 0 <= n < MAX_TOKENS):
            shown = _clip(json.dumps(n), 40) if isinstance(n, (int, float, bool, str)) else _kind(n)
            raise _NotCompletion(f"usage.{key} is {shown}, not a token count")
        counts.append(n or 0)
    return counts[0], counts[1]


def _model(value: Any, fallback: str) -> str:
    """The model a reply names (made fit to show), or `fallback` when it names none."""
    if value is None:
        return fallback
    if not isinstance(value, str):
        raise _NotCompletion(f"its model is {_kind(value)}, not a string")
    return model_name(value) or fallback


def model_name(text: str) -> str:
    """A server's name for a model, fit for a log and a table: control and format characters (newlines,
    escapes, bidi overrides) are `?`, and it is cut at `MODEL_WIDTH` characters."""
    text = "".join("?" if unicodedata.category(c) in _UNSHOWN else c for c in text[: MODEL_WIDTH + 1]).strip()
    return text if len(text) <= MODEL_WIDTH else text[: MODEL_WIDTH - 1] + "…"


_UNSHOWN = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


def _valid(text: str) -> str:
    """`text` with any lone surrogate (JSON can escape one: "\\ud800") as U+FFFD, so that it can be written out."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # json.loads has joined every pair: a surrogate left is a lone one
        return _SURROGATE.sub("\ufffd", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _error_text(error: Any) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return _clip(error["message"])
    return _clip(error) if isinstance(error, str) else _kind(error)


def _scrub(value: Any, redact: Callable[[str], str]) -> Any:
    """`value` (JSON) with `redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, redact) for v in value]
    return value


def _status_error(e: Any, server: str, had_format: bool) -> ModelError:
    status, message = e.status_code, _message(e)
    if (status in (400, 422, 500) and any(w in message for w in _FORMAT_WORDS)) or (had_format and status in (400, 422)):
        kind = "unsupported_format"
    elif status == 429:
        kind = "rate_limited"
    elif status in (401, 403):
        kind = "auth"
    elif status == 404:
        kind = "not_found"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "bad_request"
    return ModelError(kind, f"{server}: HTTP {status}: {_clip(message)}")


def _message(e: Any) -> str:
    body = e.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(e.message)


def _retry_after(response: httpx2.Response) -> float:
    """The server's requested wait in seconds (0 when it names none)."""
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(response.headers[header]) * scale
        except (KeyError, ValueError):
            continue
    return 0.0


def _clip(text: str | None, width: int = 200) -> str:
    """`text` on one line (control characters as spaces), at most `width` characters."""
    text = " ".join((text or "")[: width * 4 + 64].translate(_CONTROLS).split())
    return text if len(text) <= width else text[: width - 1] + "…"


_CONTROLS = {c: " " for c in (*range(32), *range(127, 160), 0x2028, 0x2029)}


def round_ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
