"""The embedded local model's server: llama_cpp.server's app with an idle watchdog.

Run by the model environment's own python (`<model dir>/venv/bin/python local_server.py --model GGUF ...`), never
imported by evogit, so it imports nothing of evogit: only the standard library, llama_cpp and uvicorn.

- An ASGI wrapper around the app counts requests in flight and stamps the time each one starts and ends.
- A watchdog thread asks uvicorn to shut down once no request has been in flight for `--idle` seconds.
- `GET /evogit/idle` answers {"idle_seconds", "active", "idle_limit", "pid"} at once, without counting as a
  request: evogit's check that the server is up (llama_cpp's own routes, `/v1/models` too, wait for the model,
  which a reply being generated holds for minutes), and `evogit model status`'s look that keeps nothing alive.
- On the way out it removes the `--state` file (server.json) if that file still names this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from typing import Any

IDLE_PATH = "/evogit/idle"


class Activity:
    """Requests in flight and when the last one started or ended."""

    def __init__(self) -> None:
        self.active, self.last = 0, time.monotonic()
        self.lock = threading.Lock()

    def begin(self) -> None:
        with self.lock:
            self.active += 1
            self.last = time.monotonic()

    def end(self) -> None:
        with self.lock:
            self.active -= 1
            self.last = time.monotonic()

    def idle(self) -> float:
        with self.lock:
            return 0.0 if self.active else time.monotonic() - self.last


class Watched:
    """The ASGI app, with every HTTP request but `GET /evogit/idle` counted as activity."""

    def __init__(self, app: Any, activity: Activity, idle_limit: float) -> None:
        self.app, self.activity, self.idle_limit = app, activity, idle_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") == IDLE_PATH:
            body = json.dumps({"idle_seconds": round(self.activity.idle(), 1), "active": self.activity.active,
                               "idle_limit": self.idle_limit, "pid": os.getpid()}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        self.activity.begin()
        try:
            await self.app(scope, receive, send)  # returns once the response (a stream too) has been sent
        finally:
            self.activity.end()


def watchdog(server: Any, activity: Activity, idle_limit: float) -> None:
    while not server.should_exit:
        time.sleep(max(0.2, min(5.0, idle_limit / 10)))
        if activity.idle() >= idle_limit:
            print(f"evogit local model: no request for {idle_limit:g}s, stopping", file=sys.stderr, flush=True)
            server.should_exit = True


def forget(state: str | None) -> None:
    """Remove the state file if it names this process (a newer server may have written its own)."""
    if not state:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError), open(state, encoding="utf-8") as f:
        if json.load(f).get("pid") == os.getpid():
            os.unlink(state)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="llama_cpp.server with an idle watchdog (evogit's local model)")
    parser.add_argument("--model", required=True, help="the GGUF file")
    parser.add_argument("--alias", required=True, help="the model's name at /v1/models")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n_ctx", type=int, default=8192)
    parser.add_argument("--cache_mib", type=int, default=1024)
    parser.add_argument("--n_threads", type=int, default=2)
    parser.add_argument("--idle", type=float, default=900.0, help="stop after this many seconds without requests")
    parser.add_argument("--state", help="the server.json to remove on the way out, if it names this process")
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # server.log shows what happened when it happened
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    import llama_cpp
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    class PromptCache(llama_cpp.LlamaRAMCache):
        """llama_cpp's RAM cache, sized by all that an entry holds: its KV state and the logits kept beside it
        (~310 MB each, which llama_cpp leaves out of the count: its 2 GiB cache grew the server past 12 GB)."""

        @property
        def cache_size(self) -> int:
            return sum(s.llama_state_size + s.scores.nbytes for s in self.cache_state.values())

    llama_cpp.LlamaRAMCache = PromptCache  # what llama_cpp.server.model makes for `cache=True`

    try:
        app = create_app(
            # not interrupt_requests: by default a request that waits cuts the reply streaming before it short,
            # and this server is shared by every evogit process of the user
            server_settings=ServerSettings(host=args.host, port=args.port, interrupt_requests=False),
            # a RAM cache of evaluated prompts: a solve and the create it asks for alternate on one server, and
            # without it each turn evaluates its whole prompt again (30-60 s for 2,000 tokens on 2 cores); about
            # 380 MB an entry (PromptCache), so 1 GiB keeps the last two or three conversations
            model_settings=[ModelSettings(model=args.model, model_alias=args.alias, n_ctx=args.n_ctx,
                                          n_threads=args.n_threads, n_threads_batch=args.n_threads,
                                          cache=True, cache_type="ram", cache_size=args.cache_mib << 20)])
        activity = Activity()  # the idle time counts from here: the model is loaded
        server = uvicorn.Server(uvicorn.Config(Watched(app, activity, args.idle), host=args.host, port=args.port,
                                               log_level="warning", access_log=False))
        threading.Thread(target=watchdog, args=(server, activity, args.idle), daemon=True).start()
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises a Ctrl-C after its graceful shutdown
            server.run()
    finally:
        forget(args.state)
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)  # no interpreter teardown: the model's native threads need not be joined


if __name__ == "__main__":
    main()
