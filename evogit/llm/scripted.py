"""A scripted model server of our own: real HTTP on loopback, OpenAI-compatible, answering from a script.

    POST /v1/chat/completions   the next step of the script (JSON, or SSE with `stream: true`)
    GET  /v1/models             the script's model

A script is a JSON list of steps, or `{"model": ..., "refuse_json_schema": bool, "steps": [...]}`. A step
without `match` answers the next request in order; a step with `match` answers, out of order, the first
request that matches it, so a script does not depend on call order where that does not matter. Each step is
used once, or `times` times, or for ever with `repeat`. A step says what to answer:

    reply        {"content": TEXT | "json": OBJECT, "tool_calls": [{"id"?, "name", "arguments": OBJECT | TEXT}],
                  "finish_reason"?, "refusal"?}
    usage        {"prompt_tokens", "completion_tokens"}  (default: ceil(characters / 4) of the messages, their tool
                 calls and the tool definitions; of the reply)
    status       an HTTP error status instead (with "error": its message, "retry_after": seconds)
    raw          a body to send as it is, with HTTP 200 (a server that answers something else than a completion)
    hang         seconds to wait before answering (`true`: until the server shuts down; with no reply or
                 status, the connection is then closed unanswered)
    trickle      seconds between the bytes of the answer (a server too slow for any wall-clock limit)
    match        {"user": substring of the last user message, "text": substring of any message,
                  "purpose": the client's X-Evogit-Purpose, "tools": bool, "response_format": type or null,
                  "last": the role of the last message ("user" on a conversation's first turn, "tool" after
                  a tool result)}
    request      ignored (a recording keeps what was asked here); "note" is ignored too, and so is "partial" (what
                 a live reply that timed out had streamed: its step is recorded as a `hang`)

`refuse_json_schema` answers every request for `response_format` `json_schema` with HTTP 500, as llama.cpp's
server does, without using a step. A request without `Authorization: Bearer <any key>` gets 401, and one for
which no step is left gets 410. Every request is kept in `requests` (method, path, headers, body, the status
answered and the step used), for tests to assert on.

    python -m evogit.llm.scripted SCRIPT [--port N]    # prints its base URL, serves until interrupted
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..errors import EvogitError, InvalidInput

STEP_KEYS = {"reply", "usage", "status", "error", "retry_after", "raw", "hang", "trickle", "match", "times", "repeat",
             "request", "note", "partial"}
MATCH_KEYS = {"user", "text", "purpose", "tools", "response_format", "last"}
REPLY_KEYS = {"content", "json", "tool_calls", "finish_reason", "refusal"}
SEEN_HEADERS = ("authorization", "x-evogit-purpose", "x-stainless-retry-count", "content-type")
REFUSAL = 'response_format type must be one of "text" or "json_object", but got: json_schema'


@dataclass
class Step:
    spec: dict[str, Any]
    left: float  # uses left (math.inf with `repeat`)


@dataclass
class Seen:
    """One request the server received, and how it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    status: int = 0
    step: int | None = None  # index of the step that answered, if one did

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages") or [])

    @property
    def last_user(self) -> str:
        return next((_text(m) for m in reversed(self.messages) if m.get("role") == "user"), "")

    @property
    def key(self) -> str | None:
        """The bearer token the client sent."""
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None


@dataclass
class Script:
    steps: list[Step]
    model: str = "scripted"
    refuse_json_schema: bool = False
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))


def load_script(source: Path | str | list[Any] | dict[str, Any]) -> Script:
    """A script from a file path, or from its parsed JSON; raises `InvalidInput` naming what is wrong."""
    doc: Any = source
    if isinstance(source, (str, Path)):
        try:
            doc = json.loads(Path(source).read_text())
        except (OSError, ValueError) as e:
            raise InvalidInput(f"{source}: not a readable JSON script ({e})") from None
    if isinstance(doc, list):
        doc = {"steps": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
        raise InvalidInput("a script is a list of steps, or an object with a list of steps")
    steps = []
    for i, spec in enumerate(doc["steps"]):
        if not isinstance(spec, dict):
            raise InvalidInput(f"step {i}: not an object")
        for key, allowed in (("", STEP_KEYS), ("match", MATCH_KEYS), ("reply", REPLY_KEYS)):
            part = spec.get(key, {}) if key else spec
            where = f"step {i}" + (f" {key}" if key else "")
            if not isinstance(part, dict):
                raise InvalidInput(f"{where}: not an object")
            if unknown := set(part) - allowed:
                raise InvalidInput(f"{where}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(allowed))})")
        calls = spec.get("reply", {}).get("tool_calls") or []
        if not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
            raise InvalidInput(f"step {i} reply: each tool call needs a name")
        if not isinstance(spec.get("times", 1), int) or spec.get("times", 1) < 1:
            raise InvalidInput(f"step {i}: times must be a whole number from 1")
        steps.append(Step(spec, math.inf if spec.get("repeat") else float(spec.get("times", 1))))
    return Script(steps, model=str(doc.get("model") or "scripted"), refuse_json_schema=bool(doc.get("refuse_json_schema")))


class ScriptedServer:
    """The server on 127.0.0.1 (port 0: any free one), answering in its own threads; a context manager."""

    def __init__(self, script: Path | str | list[Any] | dict[str, Any], port: int = 0):
        self.script = load_script(script)
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="evogit-scripted-model", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def left(self) -> int:
        """Steps not used up (those that `repeat` excepted)."""
        with self._lock:
            return sum(1 for s in self.script.steps if 0 < s.left < math.inf)

    def close(self) -> None:
        self._closing.set()  # ends every hang
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- answering ---------------------------------------------------------------------------------------------
    def _take(self, seen: Seen) -> tuple[int, Step] | None:
        with self._lock:
            order = [(i, s) for i, s in enumerate(self.script.steps) if s.left > 0 and "match" in s.spec
                     and _matches(s.spec["match"], seen)]
            order += [(i, s) for i, s in enumerate(self.script.steps) if s.left > 0 and "match" not in s.spec][:1]
            if not order:
                return None
            i, step = order[0]
            step.left -= 1
            seen.step = i
            return i, step

    def _answer(self, h: _Handler, seen: Seen) -> None:
        body = seen.body or {}
        with self._lock:
            self.requests.append(seen)
        if seen.key is None:
            return self._error(h, seen, 401, "missing bearer token (Authorization: Bearer <key>)", "invalid_api_key")
        if self.script.refuse_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
            return self._error(h, seen, 500, REFUSAL, "server_error")
        taken = self._take(seen)
        if taken is None:
            return self._error(h, seen, 410, "scripted model: no step left for this request", "script_exhausted")
        _, step = taken
        spec = step.spec
        if spec.get("hang"):
            self._closing.wait(None if spec["hang"] is True else float(spec["hang"]))
            if self._closing.is_set() or not ("reply" in spec or "status" in spec or "raw" in spec):
                h.close_connection = True
                return None
        if "status" in spec:
            headers = {"Retry-After": str(spec["retry_after"])} if "retry_after" in spec else {}
            return self._error(h, seen, int(spec["status"]), str(spec.get("error", "scripted error")), "scripted",
                               headers, spec.get("trickle"))
        if "raw" in spec:
            seen.status = 200
            return self._send(h, 200, str(spec["raw"]).encode(), trickle=spec.get("trickle"))
        reply = spec.get("reply") or {}
        content = json.dumps(reply["json"]) if "json" in reply else reply.get("content")
        calls: list[dict[str, Any]] = []
        for call in reply.get("tool_calls") or []:
            args = call.get("arguments", {})
            calls.append({"id": call.get("id") or f"call_{next(self.script.counter)}", "type": "function",
                          "function": {"name": call["name"], "arguments": args if isinstance(args, str) else json.dumps(args)}})
        written = len(content or "") + sum(len(c["function"]["arguments"]) for c in calls)
        usage = spec.get("usage") or {"prompt_tokens": math.ceil(_prompt_chars(seen) / 4),
                                      "completion_tokens": math.ceil(written / 4)}
        usage = {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": reply.get("refusal")}
        if calls:
            message["tool_calls"] = calls
        finish = reply.get("finish_reason") or ("tool_calls" if calls else "stop")
        base = {"id": f"chatcmpl-scripted-{next(self.script.counter)}", "created": int(time.time()),
                "model": body.get("model") or self.script.model}
        seen.status = 200
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _chunks(base, message, finish, usage if include_usage else None)
            return self._send(h, 200, b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
                              + b"data: [DONE]\n\n", "text/event-stream", trickle=spec.get("trickle"), chunked=True)
        completion = {**base, "object": "chat.completion", "usage": usage,
                      "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]}
        return self._send(h, 200, json.dumps(completion).encode(), trickle=spec.get("trickle"))

    def _error(self, h: _Handler, seen: Seen, status: int, message: str, code: str,
               headers: dict[str, str] | None = None, trickle: float | None = None) -> None:
        seen.status = status
        body = {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                          "code": code, "param": None}}
        self._send(h, status, json.dumps(body).encode(), headers=headers, trickle=trickle)

    def _send(self, h: _Handler, status: int, data: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None, trickle: float | None = None, chunked: bool = False) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else str(len(data)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        try:
            if not trickle:
                h.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data) if chunked else data)
                return
            for byte in data:
                if self._closing.wait(float(trickle)):
                    h.close_connection = True
                    return
                h.wfile.write(b"1\r\n%c\r\n" % byte if chunked else bytes([byte]))
                h.wfile.flush()
            if chunked:
                h.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: nothing to answer
            h.close_connection = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "evogit-scripted-model"
    disable_nagle_algorithm = True  # headers and body are two writes: without it each reply waits ~40 ms

    def _seen(self, body: dict[str, Any] | None) -> Seen:
        return Seen(self.command, self.path, {k: self.headers[k] for k in SEEN_HEADERS if k in self.headers}, body)

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        owner: ScriptedServer = self.server.owner  # type: ignore[attr-defined]
        seen = self._seen(None)
        with owner._lock:
            owner.requests.append(seen)
        if self.path.rstrip("/") != "/v1/models":
            return owner._error(self, seen, 404, f"no such endpoint: GET {self.path}", "not_found")
        seen.status = 200
        models = {"object": "list", "data": [{"id": owner.script.model, "object": "model", "created": 0,
                                               "owned_by": "evogit-scripted"}]}
        owner._send(self, 200, json.dumps(models).encode())

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        owner: ScriptedServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        seen = self._seen(body if isinstance(body, dict) else None)
        if self.path.rstrip("/") != "/v1/chat/completions" or seen.body is None:
            with owner._lock:
                owner.requests.append(seen)
            return owner._error(self, seen, 404 if seen.body is not None else 400,
                                f"no such endpoint: POST {self.path}" if seen.body is not None else "the body is not a JSON object",
                                "not_found" if seen.body is not None else "invalid_json")
        owner._answer(self, seen)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _prompt_chars(seen: Seen) -> int:
    """What a prompt's default token count is made from: each message's text and the tool calls it carries,
    and the tool definitions (a hosted model counts them as prompt tokens too)."""
    body = seen.body or {}
    calls = sum(len(json.dumps(m["tool_calls"])) for m in seen.messages if m.get("tool_calls"))
    tools = len(json.dumps(body["tools"], separators=(",", ":"))) if body.get("tools") else 0
    return sum(len(_text(m)) for m in seen.messages) + calls + tools


def _matches(match: dict[str, Any], seen: Seen) -> bool:
    body = seen.body or {}
    checks = {
        "user": lambda want: str(want) in seen.last_user,
        "text": lambda want: any(str(want) in _text(m) for m in seen.messages),
        "purpose": lambda want: seen.headers.get("x-evogit-purpose") == want,
        "tools": lambda want: bool(body.get("tools")) == bool(want),
        "response_format": lambda want: (body.get("response_format") or {}).get("type") == want,
        "last": lambda want: bool(seen.messages) and seen.messages[-1].get("role") == want,
    }
    return all(checks[key](want) for key, want in match.items())


def _chunks(base: dict[str, Any], message: dict[str, Any], finish: str,
            usage: dict[str, int] | None) -> list[dict[str, Any]]:
    """A reply as OpenAI streams it: the role, content in pieces, each tool call's name then its arguments in
    pieces, the finish reason, and (when asked for) a last chunk with the usage and no choices."""
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        out = {**base, "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}
        return {**out, "usage": None} if usage is not None else out

    out = [chunk({"role": "assistant", "content": ""})]
    content = message.get("content") or ""
    out += [chunk({"content": content[i:i + 16]}) for i in range(0, len(content), 16)]
    for n, call in enumerate(message.get("tool_calls") or []):
        out.append(chunk({"tool_calls": [{"index": n, "id": call["id"], "type": "function",
                                          "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        args = call["function"]["arguments"]
        half = len(args) // 2
        out += [chunk({"tool_calls": [{"index": n, "function": {"arguments": part}}]}) for part in (args[:half], args[half:])]
    if message.get("refusal"):
        out.append(chunk({"refusal": message["refusal"]}))
    out.append(chunk({}, finish))
    if usage is not None:
        out.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evogit.llm.scripted",
                                     description="Serve a model script on loopback (OpenAI-compatible).")
    parser.add_argument("script", type=Path, help="the script: a JSON list of steps, or {\"steps\": [...], ...}")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    args = parser.parse_args(argv)
    try:
        server = ScriptedServer(args.script, port=args.port)
    except (EvogitError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(server.base_url, flush=True)
    stop.wait()
    server.close()
    print(f"served {len(server.requests)} requests; {server.left()} steps left", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
