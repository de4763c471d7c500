"""Serving the live library to agents: MCP over stdio and streamable HTTP (the official SDK's low-level `Server`),
and a plain HTTP API for scripts and people (`/v1`) on the same app.

Tools offered over MCP:
- the catalog's control functions (agent/catalog.py), with the same parameters as their OpenAI definitions, and
  `solve` (a task, an optional input: the loop and fast path of `evogit solve`, for an agent with no model budget);
- one tool per green library tool: its name (a tool named like a control function is offered as `tool.<name>`),
  description, input and output schemas, structured results, and in `_meta` its version (`name@fingerprint`),
  lineage parent and success rate. A run's result carries its usage (`_meta["evogit/usage"]`: wall ms, fuel).

Arguments are checked against each tool's input schema (the SDK does not): a control function's by its strict
schema, a library tool's by the tool's contract in the run. Errors are tool results with `is_error` and the error
kind (`_meta["evogit/error"]`); an unknown tool is JSON-RPC -32602; never a traceback.

Runs go through supervised worker processes (worker.py), each with the sandbox's limits, on the least busy one, so a
slow or hostile tool holds up only its own call. Reads (list, search, describe, feedback) share one runtime, one
call at a time in a thread; create, mutate and solve each get a runtime of their own, so a minutes-long model call
blocks nothing else. Events are recorded as from the CLI: runs with the task the caller gives
(`_meta["evogit/task"]`, or run_binary's catalog task), feedback, solves, model calls.

The library is live: a watcher compares the repository's tool refs every `WATCH_SECONDS` (a version made by this
process or any other: build, create, mutate, pull), refreshes the listing (so `tools/list` is always current and
costs nothing) and tells connected clients — `ToolsListChanged` on `subscriptions/listen` streams (2026-07-28) and
`notifications/tools/list_changed` on handshake sessions (2025-11-25 and older).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import jsonschema
import msgspec

from . import jsonio
from .agent import lazy_model, model_client
from .agent.catalog import FUNCTIONS, Catalog
from .contract import RunOutcome
from .errors import EvogitError, InvalidInput, ToolNotFound
from .events import version_key
from .runtime import Description, Runtime
from .runtime.results import (
    CallError,
    CallFailed,
    CallResult,
    Candidates,
    Described,
    Listing,
    Ran,
    Recorded,
    RunError,
    RunReport,
    SolveReport,
    ToolEntry,
    Written,
)
from .worker import WorkerPool

_log = logging.getLogger("evogit.serve")

WATCH_SECONDS = 1.0  # how often the tool refs are compared (a stat-cheap read of the refs)
MAX_BODY = 16 * 1024 * 1024 + 65536  # bytes of a /v1 request body: the largest input limit and some room
GRACE_SECONDS = 2.0  # after SIGINT or SIGTERM on stdio, for the calls in flight
MAX_SESSIONS = 256  # handshake sessions at once; an idle one is closed after SESSION_IDLE_SECONDS
SESSION_IDLE_SECONDS = 600.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")
META = "evogit/"  # the prefix of evogit's keys in `_meta`

SOLVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"task": {"type": "string", "minLength": 1, "description": "The task in plain words."},
                   "input": {"description": "The input, one JSON value (usually an object), if the task has one."}},
    "required": ["task"], "additionalProperties": False}
SOLVE_DESCRIPTION = ("Hand a task to the library: a tool that clearly fits runs with no model; otherwise evogit's "
                     "configured model chooses, specialises or creates one. Returns the answer, the version that "
                     "served it, and what it cost.")


class SolveRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of `POST /v1/solve`."""

    task: str
    input: Any = msgspec.UNSET


class HttpError(msgspec.Struct):
    """The body of every /v1 error response."""

    error: RunError


class _Entry(msgspec.Struct):
    """One library tool as MCP lists it, and what a call needs to run it."""

    name: str  # its MCP name
    tool: str
    tool_def: Any  # mcp_types.Tool
    has_output_schema: bool


class Library:
    """The library a server serves: one repository, its worker processes, the listing kept current."""

    def __init__(self, repo: Path | str | None, *, workers: int = 2):
        self.rt = Runtime(repo)
        self.path = self.rt.repo.path
        self.lock = threading.Lock()  # the shared runtime: one read at a time
        self.pool = WorkerPool(self.path, workers)
        self._refs_key = ""
        self._entries: dict[str, _Entry] = {}
        self._applied = -1  # the projector's count of events applied when the records were last brought up
        self._summaries: list[ToolEntry] = []
        self.limits = self.rt.default_limits()  # the repository's run limits, read again with the listing
        self._limits_problem = ""
        self.changed: list[Callable[[], Awaitable[None]]] = []  # told when the listing changed
        self.refresh()

    def close(self) -> None:
        self.pool.close()
        self.rt.close()

    # -- the listing ---------------------------------------------------------------------------------------------
    def refs_key(self) -> str:
        """A digest of every tool branch and version tag: it changes when a version appears or a branch moves."""
        h = hashlib.sha256()
        found = sorted((ref.name, str(ref.target)) for ref in self.rt.repo.git.references.iterator()
                       if ref.name.startswith(("refs/tags/tools/", "refs/heads/tools/")))  # no lookups: repo.py
        for name, target in found:
            h.update(f"{name} {target}\n".encode())
        return h.hexdigest()

    def refresh(self) -> bool:
        """Rebuild the listing if the tool refs moved; whether they had."""
        with self.lock:
            try:
                self.limits, self._limits_problem = self.rt.default_limits(), ""
            except EvogitError as e:  # a limit set wrong while serving: the last good ones stay, and it is said
                if str(e) != self._limits_problem:
                    _log.warning("evogit serve: %s (the limits in force are kept)", e)
                self._limits_problem = str(e)
            key = self.refs_key()
            if key == self._refs_key:
                self._records()
                return False
            summaries = self.rt.list_tools()
            entries: dict[str, _Entry] = {}
            for s in summaries:
                if s.latest is None:
                    continue
                try:
                    d = self.rt.describe(s.name)
                except EvogitError as e:  # a tool that cannot be described right now is left out, and said
                    _log.warning("evogit serve: %s is not offered: %s", s.name, e)
                    continue
                name = f"tool.{s.name}" if s.name in CONTROL_NAMES else s.name
                entries[name] = _tool_entry(name, d)
            self._refs_key, self._entries, self._summaries = key, entries, [s.to_json() for s in summaries]
            return True

    def _records(self) -> None:
        """Bring each listed tool's record in `_meta` (runs, success rate) up to the log: runs made since the refs
        last moved, by any process (a change of records is no change of the list: nobody is told)."""
        projector = self.rt.projections()
        if projector.applied == self._applied:
            return
        self._applied, versions = projector.applied, projector.state.versions
        for entry in self._entries.values():
            meta = entry.tool_def.meta
            if meta is not None and (m := versions.get(meta[f"{META}version"])) is not None:
                meta[f"{META}runs"], meta[f"{META}success_rate"] = m.runs, m.success_rate

    def mcp_tools(self) -> list[Any]:
        return CONTROL_TOOLS + [e.tool_def for e in self._entries.values()]

    def entry(self, name: str) -> _Entry | None:
        return self._entries.get(name)

    def summaries(self) -> list[ToolEntry]:
        return self._summaries

    async def watch(self) -> None:
        """Refresh the listing whenever the tool refs move, and tell whoever listens."""
        while True:
            await anyio.sleep(WATCH_SECONDS)
            try:
                moved = await anyio.to_thread.run_sync(self.refresh)
            except Exception:  # a repository mid-write: next time
                _log.debug("evogit serve: refresh failed", exc_info=True)
                continue
            if moved:
                for tell in list(self.changed):
                    try:
                        await tell()
                    except Exception:
                        _log.debug("evogit serve: a change notice failed", exc_info=True)

    # -- operations ------------------------------------------------------------------------------------------------
    async def run(self, spec: str, data: bytes, task: str | None = None) -> RunReport:
        """Run a version in a worker process with the repository's limits; recorded with `task`."""
        return RunReport.of(await self._outcome(spec, data, task))

    async def _outcome(self, spec: str, data: bytes, task: str | None) -> RunOutcome:
        outcome = await asyncio.wrap_future(self.pool.submit(spec, data, self.limits, task))
        if outcome.error == "not_found":
            raise ToolNotFound(outcome.detail)
        return outcome

    async def control(self, name: str, arguments: dict[str, Any], task: str | None = None) -> CallResult:
        """One catalog function: run_binary in a worker like every run, other reads on the shared runtime, create
        and mutate on a runtime of their own."""
        if name == "run_binary":
            try:
                outcome = await self._outcome(arguments["binary_id"],
                                              arguments["input_json"].encode("utf-8", "surrogatepass"), task)
            except ToolNotFound as e:
                return CallFailed(error=CallError("tool_not_found", str(e)))
            return Catalog(self.rt, task=task).ran(outcome)  # the catalog's own result shape; no runtime call
        text = jsonio.encode(arguments)
        if name in WRITES:
            def write() -> CallResult:
                with Runtime(self.path) as rt:
                    catalog = Catalog(rt, connect=lambda: model_client(rt), task=task)
                    try:
                        return catalog.result(name, text)
                    finally:
                        catalog.close()
            return await anyio.to_thread.run_sync(write)

        def read() -> CallResult:
            with self.lock:
                return Catalog(self.rt, task=task).result(name, text)
        return await anyio.to_thread.run_sync(read)

    async def solve(self, task: str, value: Any = msgspec.UNSET) -> SolveReport:
        """`evogit solve` on a runtime of its own: the fast path, else the configured model (if any)."""
        from .agent.solve import Solver

        data = None if value is msgspec.UNSET else jsonio.encode(value).encode()

        def solve() -> SolveReport:
            with Runtime(self.path) as rt, lazy_model(rt) as connect:
                try:
                    return Solver(rt, connect).solve(task, data).to_json()
                except EvogitError as e:
                    return SolveReport(None, None, False, [], 0, False, "error", False, None, [], [], str(e))
        return await anyio.to_thread.run_sync(solve)

    async def describe(self, name: str) -> Description:
        def read() -> Description:
            with self.lock:
                return self.rt.describe(name)
        return await anyio.to_thread.run_sync(read)


# -- MCP -------------------------------------------------------------------------------------------------------------
def _mcp_types() -> Any:
    import mcp_types

    return mcp_types


def _control_tools() -> list[Any]:
    t = _mcp_types()
    tools = [t.Tool(name=f.name, description=f.description, input_schema=f.parameters,
                    output_schema=object_schema(CALL_RESULTS[f.name])) for f in FUNCTIONS]
    tools.append(t.Tool(name="solve", description=SOLVE_DESCRIPTION, input_schema=SOLVE_SCHEMA,
                        output_schema=object_schema(SolveReport)))
    return tools


def object_schema(kind: type) -> dict[str, Any]:
    """The JSON Schema of a msgspec Struct with the struct itself at the top (MCP wants `"type": "object"` there,
    msgspec gives a `$ref`); the structs it refers to stay in `$defs`."""
    schema = msgspec.json.schema(kind)
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    defs = dict(schema.get("$defs", {}))
    top = dict(defs.pop(ref.rsplit("/", 1)[1]))
    return {**top, "$defs": defs} if defs else top


#: The type of each catalog function's result when it succeeds: its MCP output schema.
CALL_RESULTS: dict[str, type] = {"list_tools": Listing, "search_tools": Candidates, "describe_binary": Described,
                                 "run_binary": Ran, "create_binary": Written, "mutate_binary": Written,
                                 "feedback": Recorded}
CONTROL_NAMES = frozenset([f.name for f in FUNCTIONS] + ["solve"])
WRITES = frozenset(f.name for f in FUNCTIONS if f.writes)
CONTROL_TOOLS: list[Any] = []  # filled on first use (mcp is imported only by a server)
_VALIDATORS = {f.name: jsonschema.Draft202012Validator(f.parameters) for f in FUNCTIONS} | {
    "solve": jsonschema.Draft202012Validator(SOLVE_SCHEMA)}


def _tool_entry(name: str, d: Description) -> _Entry:
    t = _mcp_types()
    meta = {f"{META}version": version_key(d.tool, d.fingerprint), f"{META}parent": d.parents[0] if d.parents else None,
            f"{META}success_rate": d.metrics.success_rate, f"{META}runs": d.metrics.runs}
    input_schema = d.input_schema if d.input_schema.get("type") == "object" else {
        "type": "object", "description": "This tool's input is not an object: call it through run_binary."}
    has_output = d.output_schema.get("type") == "object"
    tool = t.Tool(name=name, description=d.description, input_schema=input_schema,
                  output_schema=d.output_schema if has_output else None, meta=meta)
    return _Entry(name, d.tool, tool, has_output)


def _text(value: Any) -> Any:
    return _mcp_types().TextContent(type="text", text=jsonio.encode(value))


def _error_result(kind: str, message: str, meta: dict[str, Any] | None = None) -> Any:
    t = _mcp_types()
    return t.CallToolResult(content=[t.TextContent(type="text", text=f"{kind}: {message}")], is_error=True,
                            meta={f"{META}error": kind, **(meta or {})})


def _caller_task(params: Any) -> str | None:
    meta = getattr(params, "meta", None) or {}
    if not isinstance(meta, dict):
        meta = meta.model_dump(by_alias=True)
    task = meta.get(f"{META}task")
    return task if isinstance(task, str) and task.strip() else None


def build_server(library: Library) -> Any:
    """The MCP server (low-level SDK `Server`) over `library`, with its subscription bus for change notices."""
    from mcp.server import Server
    from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
    from mcp.shared.exceptions import MCPError
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    t = _mcp_types()
    if not CONTROL_TOOLS:
        CONTROL_TOOLS.extend(_control_tools())
    bus = InMemorySubscriptionBus()
    sessions: weakref.WeakSet[Any] = weakref.WeakSet()  # handshake-era connections, told on their own channel

    async def list_tools(ctx: Any, params: Any) -> Any:
        return t.ListToolsResult(tools=library.mcp_tools())

    async def call_tool(ctx: Any, params: Any) -> Any:
        try:
            return await _call_tool(params)
        except (MCPError, anyio.get_cancelled_exc_class()):
            raise
        except EvogitError as e:
            return _error_result(type(e).__name__, str(e))
        except Exception as e:  # a bug of ours: the caller gets one line, the log the traceback
            _log.warning("evogit serve: %s failed", params.name, exc_info=True)
            return _error_result("internal_error", f"{type(e).__name__}: {e}")

    async def _call_tool(params: Any) -> Any:
        name, args = params.name, params.arguments or {}
        task = _caller_task(params)
        if name in CONTROL_NAMES:
            problems = sorted(_VALIDATORS[name].iter_errors(args), key=lambda e: list(e.path))
            if problems:
                where = "/".join(str(p) for p in problems[0].path) or "arguments"
                return _error_result("bad_arguments", f"{name}: {where}: {problems[0].message}")
            if name == "solve":
                solved = await library.solve(args["task"], args.get("input", msgspec.UNSET))
                body = msgspec.to_builtins(solved)
                return t.CallToolResult(content=[_text(body)], structured_content=body, is_error=not solved.ok)
            result = await library.control(name, args, task)
            if isinstance(result, CallFailed):
                return _error_result(result.error.kind, result.error.message)
            body = msgspec.to_builtins(result)
            return t.CallToolResult(content=[_text(body)], structured_content=body)
        entry = library.entry(name)
        if entry is None:
            raise MCPError(t.INVALID_PARAMS, f"unknown tool {name[:80]!r}: tools/list names every tool")
        try:
            report = await library.run(entry.tool, jsonio.encode(args).encode(), task)
        except ToolNotFound as e:  # removed since the listing was made
            raise MCPError(t.INVALID_PARAMS, str(e)) from None
        meta = {f"{META}version": version_key(report.tool, report.fingerprint),
                f"{META}usage": {"wall_ms": report.wall_ms, "fuel": report.fuel}}
        if not report.ok:
            assert report.error is not None
            return _error_result(report.error.kind, report.error.message, meta)
        structured = report.output if entry.has_output_schema and isinstance(report.output, dict) else None
        return t.CallToolResult(content=[_text(report.output)], structured_content=structured, meta=meta)

    async def remember_session(ctx: Any, call_next: Any) -> Any:
        # a ServerSession lives for one request; the connection under it for the whole handshake session (the SDK
        # has no public handle on it, and notices outside a request go through it)
        connection = getattr(ctx.session, "_connection", None)
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS and connection is not None:
            sessions.add(connection)
        return await call_next(ctx)

    async def announce() -> None:
        await bus.publish(ToolsListChanged())
        for connection in list(sessions):
            try:
                await connection.outbound.notify("notifications/tools/list_changed", None)
            except Exception:  # a session that has gone
                sessions.discard(connection)

    from . import __version__

    server = Server("evogit", version=__version__, instructions=(
        "evogit's library of tested WebAssembly tools. Call a library tool directly by its name; use search_tools "
        "to find one for a task, solve to hand a whole task over, create_binary or mutate_binary to make one."),
        on_list_tools=list_tools, on_call_tool=call_tool, on_subscriptions_listen=ListenHandler(bus))
    server.middleware.append(remember_session)
    library.changed.append(announce)
    return server


def init_options(server: Any) -> Any:
    from mcp.server.lowlevel.server import NotificationOptions

    return server.create_initialization_options(NotificationOptions(tools_changed=True))


async def serve_stdio(library: Library, ready: Callable[[], None] = lambda: None) -> None:
    """MCP over this process's stdin and stdout until stdin closes or SIGINT/SIGTERM; `ready()` once signals are
    handled (it may say so on stderr)."""
    from mcp.server.stdio import stdio_server

    server = build_server(library)

    async def stop_on_signal(scope: anyio.CancelScope, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for _ in signals:
                scope.cancel()
                # the SDK reads stdin in a thread that no cancellation reaches: once the calls in flight have had
                # a moment, close the library (the workers sync their logs) and leave
                threading.Timer(GRACE_SECONDS, _leave, (library,)).start()
                return

    async with anyio.create_task_group() as tg:
        await tg.start(stop_on_signal, tg.cancel_scope)
        tg.start_soon(library.watch)
        ready()
        async with stdio_server() as (read, write):
            await server.run(read, write, init_options(server))
        tg.cancel_scope.cancel()


def _leave(library: Library) -> None:
    library.close()
    os._exit(0)


# -- HTTP: MCP at /mcp and the plain API at /v1 ----------------------------------------------------------------------
def security(host: str, allow_hosts: list[str], allow_origins: list[str]) -> Any:
    """Host and Origin allow-lists (DNS-rebinding protection) for /mcp and /v1 alike."""
    from mcp.server.transport_security import TransportSecuritySettings

    hosts = [h if ":" in h.replace("[::1]", "") else f"{h}:*" for h in allow_hosts]
    if host in LOOPBACK:
        hosts += ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    elif host not in ("0.0.0.0", "::"):
        hosts.append(f"[{host}]:*" if ":" in host else f"{host}:*")
    origins = list(allow_origins) + ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


class _Token:
    """A bearer token checked in constant time (the SDK's TokenVerifier protocol)."""

    def __init__(self, token: str):
        self.token = token.encode()

    def ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token)

    async def verify_token(self, token: str) -> Any:
        from mcp.server.auth.provider import AccessToken

        return AccessToken(token=token, client_id="evogit", scopes=[]) if self.ok(token) else None


def http_app(library: Library, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
             allow_hosts: tuple[str, ...] = (), allow_origins: tuple[str, ...] = ()) -> Any:
    """The Starlette app: MCP (streamable HTTP) at /mcp, the plain API at /v1, one set of checks for both."""
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.transport_security import TransportSecurityMiddleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    server = build_server(library)
    settings = security(host, list(allow_hosts), list(allow_origins))
    checks = TransportSecurityMiddleware(settings)
    verifier = _Token(token) if token else None
    encode = msgspec.json.Encoder().encode

    def reply(value: Any, status: int = 200) -> Response:
        return Response(encode(value), status_code=status, media_type="application/json")

    def error(status: int, kind: str, message: str) -> Response:
        return reply(HttpError(RunError(kind, message)), status)

    async def guarded(request: Request, handler: Callable[[Request], Awaitable[Response]]) -> Response:
        refused = await checks.validate_request(request, is_post=request.method == "POST")
        if refused is not None:
            return refused
        if verifier is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not verifier.ok(given.strip()):
                return Response(encode(HttpError(RunError("unauthorized", "a bearer token is required"))),
                                status_code=401, media_type="application/json",
                                headers={"WWW-Authenticate": 'Bearer realm="evogit"'})
        try:
            return await handler(request)
        except ToolNotFound as e:
            return error(404, "not_found", str(e))
        except EvogitError as e:
            return error(400, "invalid_input", str(e))

    async def body(request: Request) -> bytes | Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            return error(413, "too_large", f"the body is larger than {MAX_BODY:,} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return error(413, "too_large", f"the body is larger than {MAX_BODY:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def tools(request: Request) -> Response:
        return reply(library.summaries())

    async def tool(request: Request) -> Response:
        return reply(await library.describe(request.path_params["name"]))

    async def run(request: Request) -> Response:
        data = await body(request)
        if isinstance(data, Response):
            return data
        task = request.query_params.get("task") or None
        return reply(await library.run(request.path_params["name"], data, task))

    async def solve(request: Request) -> Response:
        data = await body(request)
        if isinstance(data, Response):
            return data
        try:
            req = msgspec.json.decode(data, type=SolveRequest)
        except msgspec.DecodeError as e:
            return error(400, "invalid_input", f"the body must be {{\"task\": \"...\", \"input\": ...}}: {e}")
        if not req.task.strip():
            return error(400, "invalid_input", "task must not be blank")
        return reply(await library.solve(req.task, req.input))

    async def openapi(request: Request) -> Response:
        return Response(OPENAPI, media_type="application/json")

    def route(path: str, fn: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await guarded(request, fn)
        return Route(path, endpoint, methods=[method])

    routes = [route("/v1/tools", tools, "GET"), route("/v1/tools/{name}", tool, "GET"),
              route("/v1/tools/{name}/run", run, "POST"), route("/v1/solve", solve, "POST"),
              route("/v1/openapi.json", openapi, "GET")]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    auth = AuthSettings(issuer_url=url, resource_server_url=f"{url}/mcp") if verifier else None  # type: ignore[arg-type]
    app = server.streamable_http_app(
        streamable_http_path="/mcp", transport_security=settings, host=host, auth=auth, token_verifier=verifier,
        max_sessions=MAX_SESSIONS, session_idle_timeout=SESSION_IDLE_SECONDS, custom_starlette_routes=routes)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[None]:
        async with inner(a), anyio.create_task_group() as tg:
            tg.start_soon(library.watch)
            yield
            tg.cancel_scope.cancel()

    app.router.lifespan_context = lifespan
    return app


def openapi_document() -> bytes:
    """The OpenAPI 3.1 document of /v1, its schemas generated from the msgspec types the responses are made of."""
    (tool_list, description, run, solve_req, solve, err), components = msgspec.json.schema_components(
        [list[ToolEntry], Description, RunReport, SolveRequest, SolveReport, HttpError],
        ref_template="#/components/schemas/{name}")

    def json_body(schema: dict[str, Any], what: str) -> dict[str, Any]:
        return {"description": what, "content": {"application/json": {"schema": schema}}}

    errors = {"400": json_body(err, "Bad input"), "401": json_body(err, "A bearer token is required"),
              "404": json_body(err, "No such tool"), "413": json_body(err, "The body is too large")}
    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "A tool: name (its newest green version) or name@fingerprint (a prefix will do)."}]
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "evogit", "version": "1", "description": "The library of tested WebAssembly tools."},
        "paths": {
            "/v1/tools": {"get": {"summary": "Every tool: its newest green version and its branch head",
                                  "responses": {"200": json_body(tool_list, "The tools")}}},
            "/v1/tools/{name}": {"get": {"summary": "One version in full", "parameters": name,
                                         "responses": {"200": json_body(description, "The version"), **errors}}},
            "/v1/tools/{name}/run": {"post": {
                "summary": "Run a version on one input (the body: one JSON document) in the sandbox",
                "parameters": name + [{"name": "task", "in": "query", "required": False,
                                       "schema": {"type": "string"}, "description": "The task the run serves"}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
                "responses": {"200": json_body(run, "The run: its output or its error, and its usage"), **errors}}},
            "/v1/solve": {"post": {
                "summary": "Solve a task with the library (the fast path, else the configured model)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": solve_req}}},
                "responses": {"200": json_body(solve, "The solve, whatever its outcome"), **errors}}},
            "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
        },
        "components": {"schemas": components},
    }
    return json.dumps(doc, indent=1, sort_keys=True).encode()


OPENAPI = openapi_document()


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); a one-line error if it cannot be had."""
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and without it every response
    # (headers and body are two writes) waited 40 ms for the client's delayed ACK
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until the app has started: the printed URL works at once
    except OSError as e:
        sock.close()
        raise EvogitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def run_http(app: Any, sock: socket.socket) -> None:
    """Serve `app` on `sock` until SIGINT or SIGTERM, then shut down cleanly: requests in flight finish (5 s at
    most), the watcher stops; the caller closes the library (workers sync their logs)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # uvicorn's re-raises the signal after shutdown: not ours
            old = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)

    Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)).run(sockets=[sock])


def client_configs(repo: Path, url: str | None, token: bool) -> dict[str, Any]:
    """Ready-to-paste MCP client configurations: stdio (the client starts evogit) and, when serving, HTTP."""
    out: dict[str, Any] = {"stdio": {"mcpServers": {"evogit": {
        "command": "evogit", "args": ["serve", "--mcp", "--repo", str(repo)]}}}}
    if url:
        http: dict[str, Any] = {"type": "http", "url": f"{url}/mcp"}
        if token:
            http["headers"] = {"Authorization": "Bearer ${EVOGIT_TOKEN}"}
        out["http"] = {"mcpServers": {"evogit": http}}
    return out


def check_bind(host: str, token: str | None) -> None:
    """Binding beyond loopback needs a bearer token."""
    if host not in LOOPBACK and not token:
        raise InvalidInput(f"serving on {host} (beyond loopback) needs a bearer token: --token or EVOGIT_TOKEN")
