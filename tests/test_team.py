"""A team sharing one library (issue 19): two machines and a bare hub, every step through the real CLI, git and
builds, the tools written by the project's scripted model over real HTTP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from click.testing import CliRunner

from evogit.agent.author import Author
from evogit.cli import main
from evogit.llm.client import ModelClient
from evogit.llm.config import ModelConfig
from evogit.runtime import Runtime

from .test_author import CASES, KEY, REVERSE, package

# reverse-text written another way: the same behaviour, another binary (a version of its own)
REVERSE_AGAIN = REVERSE.replace("text.chars().rev().collect::<String>()",
                                "text.chars().rev().collect::<Vec<char>>().into_iter().collect::<String>()")
REVERSE_THIRD = REVERSE.replace("text.chars().rev().collect::<String>()",
                                "text.chars().rev().fold(String::new(), |mut s, c| { s.push(c); s })")
MORE_CASES = [*CASES, {"name": "spaces", "input": {"text": "a b"}, "expect": {"text": "b a"}}]


def _cli(*args: str) -> str:
    out = CliRunner().invoke(main, list(args))
    assert out.exit_code == 0, (args, out.output)
    return out.stdout


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _author(rt: Runtime, server) -> tuple[Author, ModelClient]:
    client = ModelClient(ModelConfig(model="scripted-coder", base_url=server.base_url, api_key=KEY, timeout=60),
                         sink=rt.log.append)
    return Author(rt, client), client


def test_two_machines_and_a_hub_share_tools_lineage_and_evidence(tmp_path: Path, scripted_model):
    hub = tmp_path / "hub.git"
    _cli("init", str(hub), "--bare", "--no-starter")
    a_path = tmp_path / "alice"
    a, _ = Runtime.init(a_path, starter=False)
    _git(a_path, "config", "user.name", "Alice")
    _git(a_path, "config", "user.email", "alice@example.com")
    _git(a_path, "remote", "add", "origin", str(hub))

    # A creates a tool and mutates it (the model writes both), runs them, and pushes
    server = scripted_model({"model": "scripted-coder", "steps": [package(whole=True), package(REVERSE_AGAIN)]})
    author, client = _author(a, server)
    with client:
        created = author.create("Reverse a text.", name="reverse-text")
        mutated = author.mutate("reverse-text", "Reverse a text, written another way.")
    assert created.ok and mutated.ok and created.version and mutated.version
    assert created.version.fingerprint != mutated.version.fingerprint
    for text in ("abc", "héllo"):
        assert a.run("reverse-text", json.dumps({"text": text}).encode()).ok
    _cli("push", "--repo", str(a_path))

    # B clones (every version rebuilt and checked: the default trust policy), runs, mutates further, pushes
    b_path = tmp_path / "bob"
    _cli("clone", str(hub), str(b_path))
    b = Runtime(b_path)
    _git(b_path, "config", "user.name", "Bob")
    _git(b_path, "config", "user.email", "bob@example.com")
    assert b.repo.resolve("reverse-text").fingerprint == mutated.version.fingerprint
    assert b.run("reverse-text", b'{"text": "xyz"}').output == {"text": "zyx"}
    server = scripted_model({"model": "scripted-coder", "steps": [package(REVERSE_THIRD, cases=MORE_CASES)]})
    author, client = _author(b, server)
    with client:
        third = author.mutate("reverse-text", "Reverse a text; keep spaces where they fall in reverse.")
    assert third.ok and third.version, third.message
    assert b.run("reverse-text", b'{"text": "a b"}').output == {"text": "b a"}
    hits, _ = b.search("write the text backwards", 3)  # B finds A's tool by what it does
    assert hits and hits[0].tool == "reverse-text"
    _cli("push", "--repo", str(b_path))

    # A pulls: the lineage spans both machines, and once A trusts Bob's writer id, his runs count here too
    _git(a_path, "config", "--add", "evogit.trustWriter", b.writer())
    report = json.loads(_cli("pull", "--repo", str(a_path), "--json"))
    assert report["fast_forwarded"] == ["reverse-text"] and report["trusted_writers"] == [b.writer()]
    assert a.repo.resolve("reverse-text").fingerprint == third.version.fingerprint
    authors = _git(a_path, "log", "--format=%an", "tools/reverse-text").split()
    assert {"Alice", "Bob"} <= set(authors) and authors[0] == "Bob"
    lineage = json.loads(_cli("lineage", "reverse-text", "--format", "json", "--repo", str(a_path)))
    keys = [v.short for v in (created.version, mutated.version, third.version)]
    assert set(keys) <= {n["id"] for n in lineage["nodes"]}
    edges = {(e["from"], e["to"]) for e in lineage["edges"]}
    assert (keys[0], keys[1]) in edges and (keys[1], keys[2]) in edges
    stats = a.stats()
    assert stats[mutated.version.key].runs == 3  # two runs on Alice's machine, one on Bob's
    assert stats[third.version.key].runs == 1
    # Alice's pull built nothing new and lost nothing; every repository is sound to git
    assert a.run("reverse-text", b'{"text": "ab"}').fingerprint == third.version.fingerprint
    for repo in (hub, a_path, b_path):
        done = subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True, text=True)
        assert done.returncode == 0, (repo, done.stdout + done.stderr)
