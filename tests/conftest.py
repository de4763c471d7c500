"""Shared fixtures: real git repositories in tmp_path, real cargo builds, real wasmtime runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from evogit.resources import resource
from evogit.runtime import Runtime
from evogit.userstate import cache_root

STARTER = resource("skills-repo")


USER_CACHE: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _own_user_directory():
    """Tests keep their own per-user evogit state (build cache, compiled modules and their key, signing keys, the
    traceback log), never the real ~/.cache/evogit: $EVOGIT_TEST_CACHE, default ~/.cache/evogit-tests. It persists
    between runs, so the crates are compiled once per machine rather than once per run."""
    before = os.environ.get("EVOGIT_CACHE_DIR")
    global USER_CACHE
    USER_CACHE = cache_root()  # the user's own, for the one test that uses an installed model read-only
    root = os.environ.get("EVOGIT_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "evogit-tests")
    os.environ["EVOGIT_CACHE_DIR"] = root
    yield
    if before is None:
        os.environ.pop("EVOGIT_CACHE_DIR", None)
    else:
        os.environ["EVOGIT_CACHE_DIR"] = before


@pytest.fixture(scope="session", autouse=True)
def _no_local_model(tmp_path_factory):
    """No test starts the embedded local model by accident: its directory is a fresh, empty one (not installed),
    so "no model configured" stays that even on a machine where `evogit model install` was run."""
    before = os.environ.get("EVOGIT_MODEL_DIR")
    os.environ["EVOGIT_MODEL_DIR"] = str(tmp_path_factory.mktemp("no-local-model"))
    yield
    if before is None:
        os.environ.pop("EVOGIT_MODEL_DIR", None)
    else:
        os.environ["EVOGIT_MODEL_DIR"] = before


def tool_files(name: str = "echo-tool", main_rs: str | None = None, cases: list[dict] | None = None,
               cargo_extra: str = "", extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """A small, valid tool package (path -> bytes) whose pieces a test can replace."""
    manifest = {
        "name": name,
        "description": "Echo the 'text' field back, optionally upper-cased.",
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}, "upper": {"type": "boolean"}},
                         "required": ["text"]},
        "output_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        "tags": ["test"],
    }
    main_rs = main_rs or r'''
use serde_json::{json, Value};
use std::io::Read;
fn shout(s: &str, upper: bool) -> String { if upper { s.to_uppercase() } else { s.to_string() } }
fn main() {
    let mut raw = String::new();
    std::io::stdin().read_to_string(&mut raw).unwrap();
    let v: Value = match serde_json::from_str(&raw) { Ok(v) => v, Err(e) => { println!("{}", json!({"error": e.to_string()})); std::process::exit(1) } };
    let upper = v.get("upper").and_then(Value::as_bool).unwrap_or(false);
    match v.get("text").and_then(Value::as_str) {
        Some(t) => println!("{}", json!({"text": shout(t, upper)})),
        None => { println!("{}", json!({"error": "text must be a string"})); std::process::exit(1) }
    }
}
#[cfg(test)]
mod tests {
    #[test] fn shouts() { assert_eq!(super::shout("ab", true), "AB"); }
    #[test] fn keeps() { assert_eq!(super::shout("ab", false), "ab"); }
}
'''
    cases = cases if cases is not None else [
        {"name": "plain", "input": {"text": "hi"}, "expect": {"text": "hi"}},
        {"name": "upper", "input": {"text": "héllo", "upper": True}, "expect": {"text": "HÉLLO"}},
        {"name": "bad", "input": {"text": 1}, "expect": {"error": "text must be a string"}, "exit": 1},
    ]
    files = {
        "tool.json": json.dumps(manifest, indent=2).encode(),
        "Cargo.toml": f'[package]\nname = "tool"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nserde_json = "1"\n{cargo_extra}'.encode(),
        "src/main.rs": main_rs.encode(),
        "tests/cases.jsonl": "".join(json.dumps(c) + "\n" for c in cases).encode(),
    }
    files.update(extra or {})
    return files


@pytest.fixture
def empty_rt(tmp_path: Path) -> Runtime:
    """A fresh skills repository with no tools."""
    rt, _ = Runtime.init(tmp_path / "skills", starter=False)
    return rt


def starter_subset(tmp_path: Path, names: tuple[str, ...]) -> Runtime:
    """A fresh skills repository with these starter tools imported and built."""
    src = tmp_path / "starter"
    src.mkdir()
    for name in names:
        shutil.copytree(STARTER / name, src / name)
    rt, outcomes = Runtime.init(tmp_path / "skills", starter=src)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return rt


@pytest.fixture
def small_rt(tmp_path: Path) -> Runtime:
    """A fresh skills repository with two starter tools imported and built."""
    return starter_subset(tmp_path, ("word-count", "slugify"))


HOSTILE = (Path(__file__).parent / "hostile" / "main.rs").read_text()


@pytest.fixture(scope="session")
def hostile(tmp_path_factory) -> Runtime:
    rt, _ = Runtime.init(tmp_path_factory.mktemp("hostile") / "skills", starter=False)
    files = tool_files("hostile", main_rs=HOSTILE, cases=[{"name": "ok", "input": {"mode": "ok"}, "expect": {"ok": True}}])
    manifest = json.loads(files["tool.json"])
    manifest["input_schema"] = {"type": "object", "properties": {"mode": {"type": "string"}}, "required": ["mode"]}
    manifest["output_schema"] = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    files["tool.json"] = json.dumps(manifest).encode()
    outcome = rt.commit("hostile", files, "A hostile tool for the sandbox tests")
    assert outcome.ok, outcome.error
    return rt




@pytest.fixture
def embeddings_server():
    """An OpenAI-compatible /v1/embeddings server on loopback: each text's vector is the first 8 bytes of its
    sha256, scaled to [0, 1]; answers come back in reverse order (the client must reorder by index).
    Yields (base_url, requests seen)."""
    import hashlib
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[tuple[str, str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body["model"], body["input"]))
            data = [{"object": "embedding", "index": i,
                     "embedding": [b / 255 for b in hashlib.sha256(text.encode()).digest()[:8]]}
                    for i, text in enumerate(body["input"])]
            payload = json.dumps({"object": "list", "data": data[::-1], "model": body["model"],
                                  "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", seen
    finally:
        server.shutdown()


@pytest.fixture
def scripted_model():
    """Start scripted model servers on loopback: `scripted_model(script)` returns a running
    `evogit.llm.scripted.ScriptedServer` (a list of steps, a script object or a file), closed at teardown."""
    from evogit.llm.scripted import ScriptedServer

    servers: list[ScriptedServer] = []

    def start(script, port: int = 0) -> ScriptedServer:
        servers.append(ScriptedServer(script, port=port))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
