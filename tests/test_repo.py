"""The git model: version addressing, fork lineage, compare-and-swap commits under concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import subprocess
import uuid

import pytest
from click.testing import CliRunner

from evogit import lineage
from evogit.cli import main
from evogit.errors import AmbiguousVersion, InvalidPackage, ToolExists, ToolNotFound
from evogit.repo import SkillsRepo, Version
from evogit.runtime import Runtime
from evogit.toolchain import cache_root

from .conftest import tool_files
from .forge import commit_tree, git, mktree


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo.path), *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_version_addressing(empty_rt: Runtime):
    first = empty_rt.commit("echo-tool", tool_files(), "First echo")
    assert first.ok, first.error
    files = tool_files()
    files["src/main.rs"] = files["src/main.rs"].replace(b"to_uppercase()", b"to_uppercase().to_string()")
    second = empty_rt.commit("echo-tool", files, "Second echo")
    assert second.ok, second.error
    v1, v2 = first.version, second.version
    assert v1.fingerprint != v2.fingerprint
    repo = empty_rt.repo
    assert repo.resolve("echo-tool") == v2  # bare name: newest green version
    assert repo.resolve(f"echo-tool@{v1.fingerprint[:7]}") == v1
    assert repo.resolve(f"echo-tool@{v1.fingerprint}") == v1
    with pytest.raises(ToolNotFound, match="has no version"):
        repo.resolve("echo-tool@0000000")
    with pytest.raises(ToolNotFound, match="no tool named 'nope'"):
        repo.resolve("nope")
    with pytest.raises(ToolNotFound, match="at least 4 lowercase hex"):
        repo.resolve("echo-tool@xyz")
    # A red head does not hide the newest green version.
    broken = tool_files(main_rs="fn main() { this is not rust }")
    red = empty_rt.commit("echo-tool", broken, "Broken")
    assert not red.ok and red.record.stage == "compile"
    assert repo.resolve("echo-tool") == v2
    # Tags are named after the full fingerprint and point at build commits on top of the source commits.
    tags = _git(repo, "tag", "-l", "tools/echo-tool/*").split()
    assert sorted(tags) == sorted(f"tools/echo-tool/{v.fingerprint}" for v in (v1, v2))
    assert _git(repo, "rev-parse", f"tools/echo-tool/{v2.fingerprint}^").strip() == v2.source_commit


def test_ambiguous_prefix(tmp_path):
    repo = SkillsRepo.init(tmp_path / "r")
    base = repo.commit_version("t", tool_files("t"), "base")
    commit = repo.commit(base)
    # Two fake versions whose fingerprints share a prefix.
    repo.write_build("t", commit, {"tool.wasm": b"a"}, "abcd" + "0" * 60)
    repo.write_build("t", commit, {"tool.wasm": b"b"}, "abcd" + "1" * 60)
    with pytest.raises(AmbiguousVersion, match="matches 2 versions"):
        repo.resolve("t@abcd")
    assert repo.resolve("t@abcd1").fingerprint.startswith("abcd1")


@pytest.mark.slow
def test_fork_lineage_crosses_branches(small_rt: Runtime):
    repo = small_rt.repo
    parent = repo.resolve("word-count")
    child = small_rt.fork("word-count", "word-count-strict", "Count words; strict.")
    assert child.ok, child.error
    # The new branch starts at the parent's source commit: git log shows the whole history.
    log = _git(repo, "log", "--format=%H", "tools/word-count-strict").split()
    assert parent.source_commit in log
    grandchild_files, _ = repo.files(repo.head("word-count-strict").tree)
    grandchild_files["src/main.rs"] = grandchild_files["src/main.rs"].replace(b"must be a string", b"must be text")
    grandchild_files["tests/cases.jsonl"] = grandchild_files["tests/cases.jsonl"].replace(b"must be a string", b"must be text")
    gc = small_rt.commit("word-count-strict", grandchild_files, "Say text")
    assert gc.ok, gc.error
    lin = small_rt.lineage("word-count")
    keys = set(lin.nodes)
    assert {parent.short, child.version.short, gc.version.short} <= keys
    assert lin.nodes[child.version.short].parents == [parent.short]
    assert lin.nodes[gc.version.short].parents == [child.version.short]
    assert "slugify" not in " ".join(keys)
    text = lineage.render_text(lin)
    assert text.splitlines()[0].startswith(parent.short)
    assert "└── " + gc.version.short in text
    assert "-->" in lineage.render_mermaid(lin) and "->" in lineage.render_dot(lin)
    as_json = lineage.to_json(lin)
    assert {"from": child.version.short, "to": gc.version.short} in as_json["edges"]
    # Lineage from the child's side shows the parent too.
    assert parent.short in small_rt.lineage("word-count-strict").nodes
    with pytest.raises(ToolExists):
        small_rt.fork("word-count", "word-count-strict")


def _writer(path: str, worker: int, count: int) -> None:
    repo = SkillsRepo(path)
    for i in range(count):
        files = tool_files("shared")
        files["src/main.rs"] += f"// writer {worker} version {i}\n".encode()
        repo.commit_version("shared", files, f"writer {worker} version {i}")


def test_concurrent_commits_lose_no_version(tmp_path):
    repo = SkillsRepo.init(tmp_path / "r")
    repo.commit_version("shared", tool_files("shared"), "start")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(repo.path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    messages = [c.message for c in repo.walk(repo.head("shared").id)]
    expected = {f"writer {w} version {i}" for w in range(4) for i in range(25)}
    assert expected <= set(messages)
    assert len([m for m in messages if m.startswith("writer")]) == 100
    # Linear history: every version's parent is the previous one.
    assert all(len(c.parents) <= 1 for c in repo.walk(repo.head("shared").id))
    assert subprocess.run(["git", "-C", str(repo.path), "fsck", "--strict"], capture_output=True).returncode == 0


def test_version_short_name():
    assert Version("a", "0123456789", "b", "s").short == "a@0123456"


# -- trees are checked before anything touches a disk ----------------------------------------------------------
def _nested(files: dict[str, bytes]) -> dict:
    root: dict = {}
    for path, data in files.items():
        *dirs, leaf = path.split("/")
        node = root
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = data
    return root


def _merge(into: dict, more: dict) -> dict:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _attack_branch(rt: Runtime, name: str, entries: dict) -> str:
    """Commit a tree made with `git mktree` (no name checked) on tools/<name>, as a git user could."""
    path = rt.repo.path
    commit = commit_tree(path, mktree(path, entries), [git(path, "rev-parse", "refs/heads/main").strip()], "attack")
    git(path, "update-ref", f"refs/heads/tools/{name}", commit)
    return commit


def test_a_tree_entry_named_dotdot_never_makes_the_build_write_outside_its_directory(empty_rt: Runtime):
    marker = f"escaped-{uuid.uuid4().hex}"
    outside = cache_root() / marker  # the build unpacks a package into a directory under the cache root
    _attack_branch(empty_rt, "echo-tool", _merge(_nested(tool_files()), {"..": {marker: b"written by '..'\n"}}))
    try:
        result = CliRunner().invoke(main, ["build", "echo-tool", "--repo", str(empty_rt.repo.path)])
        assert not outside.exists()
    finally:
        outside.unlink(missing_ok=True)
    assert result.exit_code == 1
    assert "build failed at package: tree entry '..' is a relative path component" in result.output
    assert empty_rt.repo.versions() == []


@pytest.mark.parametrize("entry, why", [
    ({".": {"x": b""}}, "tree entry '.' is a relative path component"),
    ({"src": {"..": {"x": b""}}}, "tree entry 'src/..' is a relative path component"),
    ({".git": {"config": b"[core]\n"}}, "tree entry '.git' is a spelling of .git"),
    ({".GIT": {"config": b""}}, "tree entry '.GIT' is a spelling of .git"),
    ({"src": {".Git. .": {"hooks": {"post-checkout": b""}}}}, "is a spelling of .git"),
    ({"GIT~1": {"config": b""}}, "is a spelling of .git"),
    ({".g\u200cit": {"config": b""}}, "is a spelling of .git"),
    ({".git::$INDEX_ALLOCATION": {"config": b""}}, "is a spelling of .git"),
    ({"src\\main.rs": b"fn main() {}\n"}, "contains a backslash"),
    ({"SRC": {"main.rs": b"fn main() {}\n"}}, "paths 'SRC' and 'src' differ only in case"),
    ({"Cargo.TOML": b""}, "differ only in case"),
    ({b"\xffname": b""}, "is not UTF-8"),
])
def test_tree_entries_that_escape_or_collide_are_refused_before_the_build(empty_rt: Runtime, entry: dict, why: str):
    _attack_branch(empty_rt, "echo-tool", _merge(_nested(tool_files()), entry))
    (outcome,) = empty_rt.build(["echo-tool"])
    assert not outcome.ok and outcome.record is not None
    assert outcome.record.stage == "package" and why in (outcome.record.message or ""), outcome.record.message


@pytest.mark.parametrize("path", ["../escape.txt", "src/../../x", ".git/hooks/post-commit", "src\\x.rs", "/abs",
                                  "SRC/main.rs", "src//x", ""])
def test_files_whose_paths_escape_or_collide_are_refused_before_a_commit(empty_rt: Runtime, path: str):
    with pytest.raises(InvalidPackage):
        empty_rt.commit("echo-tool", {**tool_files(), path: b"x"}, "paths from a model", build=False)
    assert "refs/heads/tools/echo-tool" not in empty_rt.repo.git.references


def _fake_build(repo: SkillsRepo, name: str, commit, wasm: bytes, fp: str | None = None) -> Version:
    fp = fp or hashlib.sha256(wasm).hexdigest()
    record = {"tool": name, "ok": True, "fingerprint": fp, "wasm_bytes": len(wasm)}
    return repo.write_build(name, commit, {"tool.wasm": wasm, "build.json": json.dumps(record).encode()}, fp)


@pytest.mark.parametrize("cache", [b"\xff\xfe not text", b"garbage\n\n" + b"0" * 40 + b" t 1234\n", None])
def test_a_tag_whose_wasm_does_not_hash_to_its_name_never_answers_the_bare_name(tmp_path, cache: bytes | None):
    repo = SkillsRepo.init(tmp_path / "r")
    commit = repo.commit(repo.commit_version("t", tool_files("t"), "base"))
    good = _fake_build(repo, "t", commit, b"the module")
    _fake_build(repo, "t", commit, b"another module", fp="f" * 64)  # sorts last at the same source commit
    assert repo.resolve("t") == good
    if cache is None:
        (repo.state_dir / "intact-v1").unlink()
    else:
        (repo.state_dir / "intact-v1").write_bytes(cache)  # the remembered answers, damaged: recomputed
    assert SkillsRepo(repo.path).resolve("t") == good
    assert [v.fingerprint for v in repo.versions("t")] == sorted([good.fingerprint, "f" * 64])
