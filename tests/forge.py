"""What an attacker does with plain git: trees with any entry names (`git mktree`), commits with any parents
and identity (`git commit-tree`), refs pointing anywhere (`git update-ref`), version tags forged to look like
evogit's deterministic build commits."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from evogit.artifact import leb128

BUILDER = ("evogit-builder", "builder@evogit.invalid")


def git(path: Path | str, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(path), *args], input=input, capture_output=True,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace") + (proc.stderr.decode(errors="replace") if not check else "")


def blob(path: Path | str, data: bytes) -> str:
    return git(path, "hash-object", "-w", "--stdin", input=data).strip()


def mktree(path: Path | str, entries: dict[bytes | str, bytes | dict | tuple[str, str]]) -> str:
    """A tree from `name -> bytes | {sub-tree} | (mode, oid)`, names taken as they are (`git mktree` checks
    nothing but slashes)."""
    lines = []
    for name, value in entries.items():
        raw = name.encode() if isinstance(name, str) else name
        if isinstance(value, dict):
            mode, kind, oid = "040000", "tree", mktree(path, value)
        elif isinstance(value, tuple):
            mode, oid = value
            kind = "tree" if mode == "040000" else "blob"
        else:
            mode, kind, oid = "100644", "blob", blob(path, value)
        lines.append(f"{mode} {kind} {oid}\t".encode() + raw + b"\n")
    return git(path, "mktree", input=b"".join(lines)).strip()


def tree_entries(path: Path | str, rev: str) -> dict[str, tuple[str, str]]:
    """`name -> (mode, oid)` of the top level of a commit's tree."""
    out = {}
    for line in git(path, "ls-tree", rev).splitlines():
        meta, name = line.split("\t", 1)
        mode, _, oid = meta.split()
        out[name] = (mode, oid)
    return out


def commit_tree(path: Path | str, tree: str, parents: list[str], message: str,
                who: tuple[str, str] = ("mallory", "mallory@example.invalid"), date: str | None = None) -> str:
    env = {"GIT_AUTHOR_NAME": who[0], "GIT_AUTHOR_EMAIL": who[1], "GIT_COMMITTER_NAME": who[0],
           "GIT_COMMITTER_EMAIL": who[1]}
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    args = [a for p in parents for a in ("-p", p)]
    return git(path, "commit-tree", tree, *args, "-m", message, env=env).strip()


def with_custom_section(wasm: bytes, payload: bytes) -> bytes:
    """The same module with a custom section appended: still valid wasm, another sha256."""
    body = leb128(len(b"forged")) + b"forged" + payload
    return wasm + b"\x00" + leb128(len(body)) + body


def above(wasm: bytes, fingerprint: str) -> bytes:
    """`wasm` with a custom section ground until its sha256 sorts after `fingerprint` (so that a reader that
    takes the last version of a source commit would take it)."""
    for i in range(1000):
        forged = with_custom_section(wasm, str(i).encode())
        if hashlib.sha256(forged).hexdigest() > fingerprint:
            return forged
    raise AssertionError("no luck")


def forge_build(path: Path | str, source: str, tool: str, wasm: bytes, fingerprint: str | None = None,
                build_json: dict | None = None, extra: dict | None = None, parents: list[str] | None = None,
                who: tuple[str, str] = BUILDER) -> str:
    """A build commit that copies evogit's deterministic one: parent `source`, its tree plus build/ (tool.wasm
    and a build.json that agrees), the builder identity and the source commit's time. Returns its id."""
    fp = fingerprint or hashlib.sha256(wasm).hexdigest()
    record = build_json if build_json is not None else {
        "cases": [], "fingerprint": fp, "ok": True, "tool": tool, "toolchain": {}, "unit_tests": {"failed": 0, "passed": 0},
        "wasm_bytes": len(wasm)}
    entries: dict = dict(tree_entries(path, source))
    entries["build"] = {"build.json": json.dumps(record, indent=2, sort_keys=True).encode() + b"\n", "tool.wasm": wasm}
    entries.update(extra or {})
    when = git(path, "log", "-1", "--format=%ct", source).strip()
    return commit_tree(path, mktree(path, entries), [source] if parents is None else parents,
                       f"Build {tool}@{fp[:12]}\n\nEvogit-Fingerprint: {fp}\n", who=who, date=f"{when} +0000")
