"""`evogit serve`, driven as agents drive it: the MCP SDK's own client over streamable HTTP (both protocol eras)
and over stdio, and the plain /v1 API over real HTTP. The server is a real `evogit serve` process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import msgspec
import pytest
from click.testing import CliRunner
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from evogit import events as ev
from evogit.cli import main
from evogit.runtime import Runtime
from evogit.runtime.results import RunReport, SolveReport, ToolEntry

from .conftest import tool_files

pytestmark = pytest.mark.slow


@contextmanager
def serving(repo: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real `evogit serve --http` on a free loopback port: (base URL, process); SIGTERM at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "evogit", "serve", "--http", "--port", "0", "--repo", str(repo),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    url = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.strip().startswith("MCP:"):
            url = line.split()[-1].removesuffix("/mcp")
            break
    assert url, proc.stderr.read() if proc.poll() is not None else "no URL printed"
    try:
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        data = e.read()
        try:
            return e.code, json.loads(data)
        except ValueError:
            return e.code, data.decode(errors="replace")


def too_large(url: str, path: str) -> int:
    """The status of a POST that declares a body over the cap (the server answers before reading it)."""
    import http.client

    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(17 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"x" * 65536)
    status = conn.getresponse().status
    conn.close()
    return status


def runs(rt: Runtime) -> list[ev.ToolRun]:
    return [e for _, _, e in Runtime(rt.repo.path).log.read() if isinstance(e, ev.ToolRun)]


# -- MCP over HTTP ----------------------------------------------------------------------------------------------------
def test_mcp_over_http_in_both_protocol_eras(small_rt: Runtime):
    before = len(runs(small_rt))
    with serving(small_rt.repo.path) as (url, proc):
        async def session(mode: str) -> str:
            async with Client(f"{url}/mcp", mode=mode) as c:
                tools = {t.name: t for t in (await c.list_tools()).tools}
                assert {"list_tools", "search_tools", "describe_binary", "run_binary", "create_binary",
                        "mutate_binary", "feedback", "solve", "word-count", "slugify"} <= set(tools)
                wc = tools["word-count"]
                fp = small_rt.repo.resolve("word-count").fingerprint
                assert wc.meta is not None and wc.meta["evogit/version"] == f"word-count@{fp}"
                assert wc.input_schema["type"] == "object" and wc.output_schema is not None

                # a library tool, called directly: structured content, usage, recorded with the caller's task
                r = await c.call_tool("word-count", {"text": "one two three"}, meta={"evogit/task": "count words"})
                assert not r.is_error and r.structured_content == {"words": 3, "lines": 1, "chars": 13}
                assert r.meta is not None and r.meta["evogit/usage"]["fuel"] > 0
                # input that breaks its schema: a tool error with the kind, not a crash
                r = await c.call_tool("word-count", {"text": 7})
                assert r.is_error and r.meta is not None and r.meta["evogit/error"] == "invalid_input"
                # an unknown tool: JSON-RPC invalid params
                with pytest.raises(MCPError) as e:
                    await c.call_tool("no-such-tool", {})
                assert e.value.code == -32602

                # the control functions: each result is its tool's output schema
                def conforms(name: str, r: Any) -> None:
                    assert not r.is_error and r.structured_content is not None, r.content
                    schema = tools[name].output_schema
                    assert schema is not None and schema["type"] == "object"
                    jsonschema.Draft202012Validator(schema).validate(r.structured_content)

                r = await c.call_tool("list_tools", {})
                conforms("list_tools", r)
                assert not r.is_error and r.structured_content is not None
                assert {t["version"].split("@")[0] for t in r.structured_content["tools"]} >= {"word-count"}
                r = await c.call_tool("search_tools", {"query": "count the words in a text"})
                conforms("search_tools", r)
                assert r.structured_content is not None and r.structured_content["tools"][0]["version"].startswith(
                    "word-count@")
                r = await c.call_tool("describe_binary", {"binary_id": "slugify"})
                conforms("describe_binary", r)
                assert r.structured_content["examples"] and "record" in r.structured_content
                r = await c.call_tool("run_binary", {"binary_id": "slugify", "input_json": '{"text": "Hello World"}'})
                conforms("run_binary", r)
                assert r.structured_content["output"] == {"slug": "hello-world"}
                r = await c.call_tool("search_tools", {"query": 3})  # arguments that break the schema
                assert r.is_error and r.meta is not None and r.meta["evogit/error"] == "bad_arguments"
                r = await c.call_tool("feedback", {"binary_id": "word-count", "task_description": "count words",
                                                   "solved": True})
                conforms("feedback", r)
                # solve: the fast path answers with no model
                r = await c.call_tool("solve", {"task": "count the words in this text",
                                                "input": {"text": "a b c d"}})
                conforms("solve", r)
                assert r.structured_content["answer"]["words"] == 4 and not r.structured_content["model_used"]
                return c.protocol_version

        assert anyio.run(session, "auto") == "2026-07-28"
        assert anyio.run(session, "legacy") == "2025-11-25"
    assert proc.returncode == 0
    mine = runs(small_rt)[before:]
    # every call that ran a tool is in the log, after a SIGTERM: per era, 2 direct runs (one refused), 1 run_binary,
    # and the solve's fast-path run
    assert len(mine) == 2 * 4, [(r.tool, r.ok) for r in mine]
    assert sum(r.task == "count words" for r in mine) == 2


def test_a_new_version_from_another_process_is_listed_and_announced(small_rt: Runtime):
    with serving(small_rt.repo.path) as (url, _):
        async def watch() -> None:
            told: list[str] = []

            async def legacy_handler(message: Any) -> None:
                method = getattr(getattr(message, "root", message), "method", None)
                if method == "notifications/tools/list_changed":
                    told.append("legacy")

            async with Client(f"{url}/mcp", mode="legacy", message_handler=legacy_handler) as old, \
                    Client(f"{url}/mcp") as new:
                assert "echo-tool" not in {t.name for t in (await new.list_tools()).tools}
                await old.list_tools()
                async with new.listen(tools_list_changed=True) as sub:
                    # another process (this test's) commits and builds a version
                    await anyio.to_thread.run_sync(
                        lambda: Runtime(small_rt.repo.path).commit("echo-tool", tool_files(), "Echo"))
                    with anyio.fail_after(30):
                        async for _event in sub:
                            told.append("modern")
                            break
                    with anyio.fail_after(30):
                        while "legacy" not in told:
                            await anyio.sleep(0.1)
                assert {"modern", "legacy"} <= set(told)
                for c in (old, new):
                    assert "echo-tool" in {t.name for t in (await c.list_tools()).tools}
                r = await new.call_tool("echo-tool", {"text": "hi"})
                assert not r.is_error and r.structured_content == {"text": "hi"}
                # its record in _meta follows the log (runs by the server's workers and by other processes)
                await anyio.to_thread.run_sync(
                    lambda: Runtime(small_rt.repo.path).run("echo-tool", b'{"text": 1}'))
                with anyio.fail_after(30):
                    while True:
                        meta = {t.name: t.meta for t in (await new.list_tools()).tools}["echo-tool"] or {}
                        if meta.get("evogit/runs") == 2:
                            break
                        await anyio.sleep(0.2)
                assert meta["evogit/success_rate"] == 1.0  # input the schema refused is not the tool failing

        anyio.run(watch)


def test_a_hostile_tool_holds_up_only_its_own_call(hostile: Runtime, tmp_path: Path):
    repo = tmp_path / "hostile"
    shutil.copytree(hostile.repo.path, repo)
    subprocess.run(["git", "-C", str(repo), "config", "evogit.timeout", "8"], check=True)
    with serving(repo, "--workers", "3") as (url, _):
        async def attack() -> None:
            async with Client(f"{url}/mcp") as c:
                slow: dict[str, Any] = {}

                async def spin() -> None:
                    slow["r"] = await c.call_tool("hostile", {"mode": "loop"})

                async def spin_binary() -> None:  # the catalog's run_binary runs in a worker too
                    slow["b"] = await c.call_tool("run_binary", {"binary_id": "hostile",
                                                                 "input_json": '{"mode": "loop"}'})

                async with anyio.create_task_group() as tg:
                    tg.start_soon(spin)
                    tg.start_soon(spin_binary)
                    await anyio.sleep(0.5)
                    for _ in range(5):
                        r = await c.call_tool("hostile", {"mode": "ok"})
                        assert not r.is_error and r.structured_content == {"ok": True}
                        assert (await c.call_tool("list_tools", {})).structured_content is not None
                    assert not slow  # all served while the loops still burn their workers
                assert slow["r"].is_error and slow["r"].meta["evogit/error"] in ("timeout", "out_of_fuel")
                assert slow["b"].is_error and slow["b"].meta["evogit/error"] in ("timeout", "out_of_fuel")
                r = await c.call_tool("hostile", {"mode": "panic"})
                assert r.is_error and "Traceback" not in r.content[0].text

        anyio.run(attack)


def test_mcp_over_stdio(small_rt: Runtime):
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "evogit", "serve", "--mcp", "--repo", str(small_rt.repo.path)])

    async def session() -> None:
        async with Client(params) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"word-count", "solve", "run_binary"} <= names
            r = await c.call_tool("word-count", {"text": "a b"})
            assert not r.is_error and r.structured_content is not None and r.structured_content["words"] == 2

    anyio.run(session)


def test_create_binary_over_mcp_with_the_scripted_model(empty_rt: Runtime, scripted_model):
    from .test_author import KEY, package

    server = scripted_model({"model": "scripted-coder", "steps": [package(whole=True)]})
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY, "EVOGIT_MODEL": "scripted-coder"}
    with serving(empty_rt.repo.path, env=env) as (url, proc):
        workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert workers and all(KEY.encode() not in Path(f"/proc/{w}/environ").read_bytes() for w in workers)

        async def create() -> None:
            async with Client(f"{url}/mcp") as c:
                r = await c.call_tool("create_binary", {"task_description": "Reverse the text, character by "
                                                                            "character."})
                assert not r.is_error, r.content
                schema = {t.name: t for t in (await c.list_tools()).tools}["create_binary"].output_schema
                assert schema is not None
                jsonschema.Draft202012Validator(schema).validate(r.structured_content)
                assert r.structured_content is not None and r.structured_content["version"].startswith(
                    "reverse-text@")
                for _ in range(50):  # the watcher lists it within a second or two
                    if "reverse-text" in {t.name for t in (await c.list_tools()).tools}:
                        break
                    await anyio.sleep(0.2)
                r = await c.call_tool("reverse-text", {"text": "abc"})
                assert not r.is_error and r.structured_content == {"text": "cba"}
                text = json.dumps([r.model_dump() for r in [r]])
                assert KEY not in text  # the model's key is never in a response

        anyio.run(create)


# -- the plain HTTP API -----------------------------------------------------------------------------------------------
def test_the_v1_api_over_real_http(small_rt: Runtime):
    before = len(runs(small_rt))
    with serving(small_rt.repo.path) as (url, _):
        status, tools = http("GET", f"{url}/v1/tools")
        assert status == 200 and {t["name"] for t in tools} == {"word-count", "slugify"}
        msgspec.convert(tools, list[ToolEntry])
        status, d = http("GET", f"{url}/v1/tools/word-count")
        assert status == 200 and d["tool"] == "word-count" and d["input_schema"]["type"] == "object"
        status, r = http("POST", f"{url}/v1/tools/word-count/run?task=count%20the%20words", b'{"text": "a b"}')
        assert status == 200 and r["ok"] and r["output"]["words"] == 2 and r["fuel"] > 0
        msgspec.convert(r, RunReport)
        status, r = http("POST", f"{url}/v1/tools/word-count/run", b'{"text": 5}')
        assert status == 200 and not r["ok"] and r["error"]["kind"] == "invalid_input"
        status, s = http("POST", f"{url}/v1/solve", json.dumps({"task": "count the words in this text",
                                                                 "input": {"text": "x y z"}}).encode())
        assert status == 200 and s["ok"] and s["answer"]["words"] == 3
        msgspec.convert(s, SolveReport)
        assert http("GET", f"{url}/v1/tools/nope")[0] == 404
        assert http("POST", f"{url}/v1/tools/nope/run", b"{}")[0] == 404
        status, e = http("POST", f"{url}/v1/solve", b'{"task": 1}')
        assert status == 400 and e["error"]["kind"] == "invalid_input"
        assert too_large(url, "/v1/tools/word-count/run") == 413
        assert http("GET", f"{url}/v1/tools", headers={"Host": "evil.example"})[0] == 421
        assert http("GET", f"{url}/v1/tools", headers={"Origin": "http://evil.example"})[0] == 403
        status, doc = http("GET", f"{url}/v1/openapi.json")
        assert status == 200 and doc["openapi"].startswith("3.1") and "/v1/tools/{name}/run" in doc["paths"]
        for path in doc["paths"].values():
            for op in path.values():
                for resp in op["responses"].values():
                    for content in resp.get("content", {}).values():
                        jsonschema.Draft202012Validator.check_schema({**content["schema"], **doc["components"]})
    mine = runs(small_rt)[before:]
    assert len(mine) == 3 and mine[0].task == "count the words"


def test_a_token_guards_both_paths(small_rt: Runtime):
    with serving(small_rt.repo.path, "--token", "s3cret") as (url, _):
        assert http("GET", f"{url}/v1/tools")[0] == 401
        assert http("GET", f"{url}/v1/tools", headers={"Authorization": "Bearer nope"})[0] == 401
        assert http("GET", f"{url}/v1/tools", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert http("POST", f"{url}/mcp", b"{}", headers={"Accept": "application/json, text/event-stream"})[0] == 401


def test_serving_beyond_loopback_needs_a_token(small_rt: Runtime, monkeypatch):
    monkeypatch.delenv("EVOGIT_TOKEN", raising=False)
    out = CliRunner().invoke(main, ["serve", "--http", "--host", "0.0.0.0", "--repo", str(small_rt.repo.path)])
    assert out.exit_code == 2 and "bearer token" in out.output and "Traceback" not in out.output
    out = CliRunner().invoke(main, ["serve", "--repo", str(small_rt.repo.path)])
    assert out.exit_code == 2 and "choose one transport" in out.output


# -- the typed boundary: --json is what the schemas say ---------------------------------------------------------------
def test_json_outputs_match_their_msgspec_schemas(small_rt: Runtime, tmp_path: Path):
    from evogit.runtime import Description
    from evogit.runtime.results import (
        BuildReport,
        CostReport,
        InitReport,
        PullSummary,
        ReplayReport,
        SearchReport,
        VersionStats,
    )
    from evogit.verify import Verdict

    hub = tmp_path / "hub.git"
    repo = ["--repo", str(small_rt.repo.path)]
    cases = [
        (["run", "word-count", '{"text": "a b"}', "--json"], RunReport),
        (["run", "word-count", '{"text": 1}', "--json"], RunReport),
        (["list", "--json"], list[ToolEntry]),
        (["describe", "word-count", "--json"], Description),
        (["build", "word-count", "--json"], list[BuildReport]),
        (["search", "count the words", "--json"], SearchReport),
        (["search", "count the words", "--explain", "--json"], SearchReport),
        (["verify", "--json"], list[Verdict]),
        (["replay", "--json"], ReplayReport),
        (["stats", "--json"], dict[str, VersionStats]),
        (["stats", "word-count", "--json"], dict[str, VersionStats]),
        (["stats", "--cost", "--json"], CostReport),
        (["solve", "count the words in this text", "--input", '{"text": "a"}', "--json"], SolveReport),
        (["solve", "   x", "--input", "{not json", "--json"], SolveReport),
        (["init", str(hub), "--bare", "--no-starter", "--json"], InitReport),
        (["push", str(hub)], None),
        (["pull", str(hub), "--json"], PullSummary),
    ]
    for args, kind in cases:
        out = CliRunner().invoke(main, [*args, *([] if args[0] == "init" else repo)])
        assert out.exit_code in (0, 1) and "Traceback" not in out.output, (args, out.output)
        if kind is None:
            continue
        value = json.loads(out.stdout)
        jsonschema.validate(value, msgspec.json.schema(kind))
        msgspec.convert(value, kind)


# -- Agent Skills export ------------------------------------------------------------------------------------------------
def test_export_agent_skills_writes_one_valid_skill_per_tool_and_updates_in_place(small_rt: Runtime, tmp_path: Path):
    import re

    import yaml

    out_dir = tmp_path / ".agents" / "skills"
    args = ["export", "skills", str(out_dir), "--repo", str(small_rt.repo.path)]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0 and "exported 2 skills" in out.output, out.output
    for name in ("word-count", "slugify"):
        text = (out_dir / name / "SKILL.md").read_text()
        _, front, body = text.split("---\n", 2)
        meta = yaml.safe_load(front)
        assert meta["name"] == name and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", meta["name"]) and len(name) <= 64
        assert 0 < len(meta["description"]) <= 1024
        assert f"evogit run {name}" in body and "## Input schema" in body and "## Examples" in body
        # each example in the body is a command that prints what it says
        examples = body.split("## Examples", 1)[1]
        shown = re.findall(r"evogit run \S+ '(.*?)' --repo .*?\n\s*```\n\n\s*prints: `(.*?)`", examples, re.S)
        assert shown
        for given, said in shown:
            assert small_rt.run(name, given.encode()).output == json.loads(said)
    # again: in place (a stale edit is overwritten, nothing else in the directory is touched)
    (out_dir / "word-count" / "SKILL.md").write_text("stale")
    (out_dir / "mine.txt").write_text("keep")
    assert CliRunner().invoke(main, args + ["word-count"]).exit_code == 0
    assert (out_dir / "word-count" / "SKILL.md").read_text().startswith("---\nname: word-count\n")
    assert (out_dir / "mine.txt").read_text() == "keep"
    out = CliRunner().invoke(main, ["export", "skills", str(tmp_path / "new"), "no-such-tool",
                                    "--repo", str(small_rt.repo.path)])
    assert out.exit_code == 1 and "no tool named" in out.output and not (tmp_path / "new").exists()


def test_solve_over_mcp_hands_the_task_to_the_configured_model(small_rt: Runtime, scripted_model):
    """An agent with no model of its own hands a vague task over: evogit's configured model (the scripted server)
    runs a library tool and answers with its output."""
    from .test_author import KEY

    server = scripted_model({"model": "scripted-coder", "steps": [
        {"match": {"last": "tool"}, "reply": {"content": '{"words": 5}'}},
        {"match": {"purpose": "solve", "last": "user"}, "reply": {"tool_calls": [{"name": "run_binary", "arguments": {
            "binary_id": "word-count", "input_json": '{"text": "the quick brown fox jumps"}'}}]}},
    ]})
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY, "EVOGIT_MODEL": "scripted-coder"}
    with serving(small_rt.repo.path, env=env) as (url, _):
        async def solve() -> None:
            async with Client(f"{url}/mcp", mode="legacy") as c:
                r = await c.call_tool("solve", {"task": "How many words are in: the quick brown fox jumps"})
                assert not r.is_error and r.structured_content is not None, r.content
                s = r.structured_content
                assert s["model_used"] and s["answer"] == {"words": 5} and s["served_by"].startswith("word-count@")
                assert s["tokens"] > 0 and KEY not in json.dumps(s)

        anyio.run(solve)
    assert len(server.requests) == 2


def test_stdio_server_stops_cleanly_on_sigterm(small_rt: Runtime):
    proc = subprocess.Popen([sys.executable, "-m", "evogit", "serve", "--mcp", "--repo", str(small_rt.repo.path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    proc.stderr.readline()  # "evogit: serving … over MCP on stdio": it is up
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_a_long_running_process_keeps_nothing_per_run(small_rt: Runtime):
    """pygit2 1.21 keeps the name string of every ref lookup for good: a server's worker ran 10,000 runs and kept
    ~76 bytes each (0.75 MB per 10,000, measured) until ref names were interned and ref listings iterated.

    Counted in allocated blocks, not with tracemalloc: on Python 3.11 `tracemalloc.start()`/`stop()` swap the raw
    allocator while other threads use it (CPython gh-128679, gh-131566; the epoch ticker and the log's fsync
    thread run here), and a thread with no Python frame segfaulted the test process: in CI, and twice in about
    25 runs of this test alone."""
    import gc
    import sys

    rt = Runtime(small_rt.repo.path)
    for _ in range(200):
        rt.run("word-count", b'{"text": "a b"}', task="count words")
    rt.repo.versions()
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(1000):
        rt.run("word-count", b'{"text": "a b"}', task="count words")
        rt.repo.versions("word-count")
    gc.collect()
    grown = sys.getallocatedblocks() - before
    assert grown < 200, grown  # one string kept a run is +1,000 (measured: a deliberate leak of one gave 1,003-1,007)
