"""Sharing between machines with plain git: tool branches, version tags and event logs (evogit/share.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from evogit import events as ev
from evogit.cli import main
from evogit.errors import EvogitError
from evogit.runtime import Runtime
from evogit.share import LOGS, WriterConflict, import_logs, publish_log


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def server(tmp_path: Path) -> Path:
    Runtime.init(tmp_path / "server.git", starter=False, bare=True)
    return tmp_path / "server.git"


def _events(rt: Runtime) -> list[ev.AnyEvent]:
    return [e for _, _, e in rt.log.read()]


def test_tools_runs_and_feedback_travel_between_machines(small_rt: Runtime, server: Path, tmp_path: Path):
    a = small_rt
    a.run("word-count", b'{"text": "a b c"}', task="count the words in a sentence")
    a.feedback("slugify", "make a url slug from a title", solved=True)
    a.push(str(server))

    b, _ = Runtime.init(tmp_path / "b", starter=False)
    assert b.writer() != a.writer()
    report, builds = b.pull(str(server))
    assert sorted(report.created) == ["slugify", "word-count"]
    assert all(o.ok for o in builds) and {o.version.fingerprint for o in builds if o.version} == {
        v.fingerprint for v in a.repo.versions()}  # the fetched tags were reused, nothing was rebuilt
    assert a.writer() in report.logs
    # a is nobody to b yet: its evidence is kept and said, never counted
    assert report.claims[a.writer()].runs == 1 and report.claims[a.writer()].feedback == 1 and not report.trusted
    assert sum(m.runs for m in b.stats("word-count").values()) == 0 and not b.projections().state.served
    _git(b.repo.path, "config", "--add", "evogit.trustWriter", a.writer())
    _git(a.repo.path, "config", "--add", "evogit.trustWriter", b.writer())
    b = Runtime(b.repo.path)
    stats = b.stats("word-count")
    assert sum(m.runs for m in stats.values()) == 1
    assert b.projections().state.served  # a's task history arrived: retrieval on b learns from it

    # b's own runs travel back; a counts both machines' runs, each once
    b.run("word-count", b'{"text": "x"}')
    b.push(str(server))
    a.pull(str(server))
    a.pull(str(server))
    assert sum(m.runs for m in a.stats("word-count").values()) == 2
    assert a.replay().state.versions == a.projections().state.versions


def test_publish_is_incremental_and_import_idempotent(small_rt: Runtime, tmp_path: Path):
    a = small_rt
    log = a.log
    first = publish_log(a.repo, log.dir, log.writer)
    assert first is not None
    assert publish_log(a.repo, log.dir, log.writer) is None  # nothing new
    a.feedback("slugify", "slug please", solved=True)
    second = publish_log(a.repo, log.dir, log.writer)
    commit = a.repo.git[second]
    assert [str(p) for p in commit.parent_ids] == [first]
    first_seg, second_seg = sorted(e.name for e in commit.tree)  # one segment per publish
    assert second_seg.split("-")[0] == first_seg.split("-")[1].removesuffix(".log")  # the second holds only new records

    b, _ = Runtime.init(tmp_path / "b", starter=False)
    _git(b.repo.path, "fetch", str(a.repo.path), f"{LOGS}*:{LOGS}*")
    assert import_logs(b.repo, b.log.dir, b.log.writer) == ({a.writer(): (log.dir / f"{log.writer}.log").stat().st_size}, {})
    assert import_logs(b.repo, b.log.dir, b.log.writer) == ({}, {})
    assert _events(b)[-1] == _events(a)[-1]

    # an import cut short mid-segment is repaired, never half-read
    copy = b.log.dir / f"{a.writer()}.log"
    copy.write_bytes(copy.read_bytes()[:-3])
    assert len(_events(b)) < len(_events(a))
    import_logs(b.repo, b.log.dir, b.log.writer)
    assert copy.read_bytes() == (log.dir / f"{log.writer}.log").read_bytes()


def test_a_second_machine_with_the_same_writer_id_is_refused(small_rt: Runtime, tmp_path: Path):
    a = small_rt
    publish_log(a.repo, a.log.dir, a.log.writer)
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    b.repo.git.config["evogit.writer"] = a.writer()
    _git(b.repo.path, "fetch", str(a.repo.path), f"{LOGS}*:{LOGS}*")
    b.log.append([ev.Feedback(tool="t", fingerprint="f", task="t", solved=True)])
    with pytest.raises(WriterConflict, match="evogit.writer"):
        publish_log(b.repo, b.log.dir, b.log.writer)
    assert (a.log.dir / f"{a.log.writer}.log").stat().st_size > 0


def test_branches_fast_forward_and_divergence_is_left_alone(small_rt: Runtime, server: Path, tmp_path: Path):
    a = small_rt
    a.push(str(server))
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    b.pull(str(server))

    files, _ = a.repo.files(a.repo.head("word-count").tree)
    files["README.md"] = b"word-count, with notes\n"
    assert a.commit("word-count", files, "Add notes").ok
    a.push(str(server))
    report, builds = b.pull(str(server))
    assert report.fast_forwarded == ["word-count"] and all(o.ok for o in builds)
    assert b.repo.head("word-count").id == a.repo.head("word-count").id

    files["README.md"] = b"a's version\n"
    assert a.commit("word-count", files, "a edits").ok
    a.push(str(server))
    files["README.md"] = b"b's version\n"
    assert b.commit("word-count", files, "b edits").ok
    mine = b.repo.head("word-count").id
    report, _ = b.pull(str(server))
    assert report.diverged == ["word-count"]
    assert b.repo.head("word-count").id == mine  # never rewritten
    with pytest.raises(EvogitError, match="rejected.*evogit pull"):
        b.push(str(server))
    assert Runtime(server).repo.head("word-count").id == a.repo.head("word-count").id


def test_cli_push_pull(small_rt: Runtime, server: Path, tmp_path: Path):
    runner = CliRunner()
    a = str(small_rt.repo.path)
    _git(Path(a), "remote", "add", "origin", str(server))
    out = runner.invoke(main, ["push", "--repo", a])
    assert out.exit_code == 0 and "2 tool branches, 2 version tags, 1 event logs" in out.output
    out = runner.invoke(main, ["push", "--repo", a])
    assert out.exit_code == 0 and "up to date" in out.output
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    out = runner.invoke(main, ["pull", "--repo", str(b.repo.path), str(server), "--json"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(main, ["pull", "--repo", str(b.repo.path), str(tmp_path / "nowhere")])
    assert out.exit_code == 1 and out.output.startswith("Error: git fetch failed: fatal:")
    assert len(out.output.splitlines()) == 1
    assert b.list_tools()  # nothing stored was lost



def test_import_skips_unmoved_refs_and_recovers_a_deleted_copy(small_rt: Runtime, tmp_path: Path):
    a = small_rt
    publish_log(a.repo, a.log.dir, a.log.writer)
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    _git(b.repo.path, "fetch", str(a.repo.path), f"{LOGS}*:{LOGS}*")
    assert import_logs(b.repo, b.log.dir, b.log.writer)[0]
    copy = b.log.dir / f"{a.writer()}.log"
    before = copy.stat().st_mtime_ns
    assert import_logs(b.repo, b.log.dir, b.log.writer) == ({}, {})
    assert copy.stat().st_mtime_ns == before
    copy.unlink()
    assert import_logs(b.repo, b.log.dir, b.log.writer)[0] == {a.writer(): len((a.log.dir / f"{a.writer()}.log").read_bytes())}


@pytest.mark.parametrize("garbage", [b"not a log at all", None])
def test_a_bad_foreign_log_is_refused_and_the_repository_keeps_working(small_rt: Runtime, garbage: bytes | None):
    """A segment of torn records, or of whole checksummed records that are not events, is never copied."""
    import struct
    import zlib

    import pygit2

    rt = small_rt
    if garbage is None:
        payload = b"\x93\x01\x02\x03"  # msgpack, checksummed, but not an event
        garbage = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    git = rt.repo.git
    tree = git.TreeBuilder()
    tree.insert(f"{0:016d}-{len(garbage):016d}.log", git.create_blob(garbage), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("x", "x@x")
    git.create_commit("refs/evogit/logs/mallory", sig, sig, "bad", tree.write(), [])
    added, refused = import_logs(rt.repo, rt.log.dir, rt.log.writer)
    assert added == {} and "not a valid log" in refused["refs/evogit/logs/mallory"]
    assert not (rt.log.dir / "mallory.log").exists() or (rt.log.dir / "mallory.log").stat().st_size == 0
    rt.run("word-count", b'{"text": "still works"}')
    assert sum(m.runs for m in rt.stats("word-count").values()) == 1


def test_push_returns_what_it_updated(small_rt: Runtime, server: Path):
    first = small_rt.push(str(server)).updated
    assert sorted(r.split("/")[1] for r in first) == ["evogit", "heads", "heads", "tags", "tags"]
    assert small_rt.push(str(server)).updated == []


def _dotdot_commit(path: Path, marker: str) -> str:
    """A commit whose tree holds a valid tool package and an entry named `..` (made with git mktree)."""
    from .conftest import tool_files
    from .forge import commit_tree, mktree
    from .test_repo import _merge, _nested

    entries = _merge(_nested(tool_files()), {"..": {marker: b"written by '..'\n"}})
    return commit_tree(path, mktree(path, entries), [], "attack")


def test_a_bare_hub_refuses_a_push_of_a_tree_with_dotdot(server: Path, tmp_path: Path):
    assert _git(server, "config", "--bool", "receive.fsckObjects").strip() == "true"
    attacker = tmp_path / "attacker"
    subprocess.run(["git", "init", "-q", str(attacker)], check=True)
    commit = _dotdot_commit(attacker, "escaped")
    push = subprocess.run(["git", "-C", str(attacker), "push", str(server), f"{commit}:refs/heads/tools/echo-tool"],
                          capture_output=True, text=True)
    assert push.returncode != 0 and "dotdot" in push.stderr.lower(), push.stderr
    assert subprocess.run(["git", "-C", str(server), "cat-file", "-e", commit]).returncode != 0
    assert Runtime(server).repo.tools() == []


def test_a_hub_without_fsck_still_never_builds_a_pushed_tree_with_dotdot(server: Path, tmp_path: Path):
    import uuid

    from evogit.toolchain import cache_root

    _git(server, "config", "receive.fsckObjects", "false")  # an older hub, or one whose owner turned it off
    marker = f"escaped-{uuid.uuid4().hex}"
    outside = cache_root() / marker
    attacker = tmp_path / "attacker"
    subprocess.run(["git", "init", "-q", str(attacker)], check=True)
    commit = _dotdot_commit(attacker, marker)
    try:
        push = subprocess.run(["git", "-C", str(attacker), "push", str(server), f"{commit}:refs/heads/tools/echo-tool"],
                              capture_output=True, text=True)
        assert not outside.exists()
    finally:
        outside.unlink(missing_ok=True)
    assert push.returncode == 0, push.stderr
    assert "build failed at package: tree entry '..' is a relative path component" in push.stderr
    assert Runtime(server).repo.versions() == []


def test_one_bad_branch_does_not_block_sharing_the_rest(small_rt: Runtime, server: Path):
    """Found (issue 17): a local branch whose tree the hub refuses (a `..` entry) made `evogit push` fail whole
    (remote unpack failed), and nothing good was published."""
    commit = _dotdot_commit(small_rt.repo.path, "escaped")
    _git(small_rt.repo.path, "update-ref", "refs/heads/tools/dotdot-tool", commit)
    small_rt.run("word-count", b'{"text": "a b"}')
    result = CliRunner().invoke(main, ["push", str(server), "--repo", str(small_rt.repo.path)])
    assert result.exit_code == 0, result.output
    assert "skipped refs/heads/tools/dotdot-tool: commit" in result.stderr and "relative path component" in result.stderr
    heads = _git(server, "for-each-ref", "--format=%(refname)", "refs/heads/tools", "refs/evogit").split()
    assert "refs/heads/tools/word-count" in heads and "refs/heads/tools/dotdot-tool" not in heads
    assert any(h.startswith("refs/evogit/logs/") for h in heads)


def test_a_ref_the_remote_refuses_is_named_and_the_rest_is_pushed(small_rt: Runtime, server: Path, tmp_path: Path):
    from .conftest import tool_files

    small_rt.push(str(server))
    other, _ = Runtime.init(tmp_path / "other", starter=False)
    other.pull(str(server))
    other.repo.commit_version("word-count", tool_files("word-count"), "Moved on elsewhere")
    other.push(str(server))  # the hub's word-count is now ahead of this machine's
    small_rt.repo.commit_version("word-count", tool_files("word-count", cases=[]), "Diverged here")
    small_rt.repo.commit_version("slugify", tool_files("slugify"), "A new slugify")
    with pytest.raises(EvogitError) as e:
        small_rt.push(str(server))
    said = str(e.value)
    assert "refused 1 ref" in said and "refs/heads/tools/word-count" in said and "evogit pull" in said, said
    assert _git(server, "rev-parse", "refs/heads/tools/slugify").strip() == str(small_rt.repo.head("slugify").id)


# -- clone, remotes, upstream (issue 19) ----------------------------------------------------------------------------
def _fsck(*repos: Path) -> None:
    for repo in repos:
        done = subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True, text=True)
        assert done.returncode == 0, (repo, done.stdout + done.stderr)


def test_clone_makes_a_working_library_and_push_pull_use_the_upstream(small_rt: Runtime, server: Path,
                                                                      tmp_path: Path, monkeypatch):
    from evogit import hooks

    small_rt.run("word-count", b'{"text": "a b"}')
    small_rt.push(str(server))
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(main, ["clone", str(server), "--trust", "hash"])  # PATH from the URL, as git does
    assert out.exit_code == 0, out.output
    assert "checking version tags (trust policy hash)" in out.stderr and "version tags: 2 accepted" in out.stderr
    b = Runtime(tmp_path / "server")
    assert b.repo.tools() == ["slugify", "word-count"] and len(b.repo.versions()) == 2
    assert hooks.is_installed(Path(b.repo.git.path), "post-commit")
    assert b.run("slugify", b'{"text": "Hello World"}').output == {"slug": "hello-world"}
    # a's log came too: kept as its claims until a's writer id is trusted here
    assert b.projections().state.claims[small_rt.writer()].runs == 1
    assert b.repo.git.config["remote.origin.evogitTrust"] == "hash"
    assert not [r for r in b.repo.git.references if r.startswith("refs/tags/") and "quarantine" not in r
                and r[len("refs/tags/"):] not in {f"tools/{v.name}/{v.fingerprint}" for v in b.repo.versions()}]

    # inside the clone, commands act on it (as git finds its repository), and push/pull need no remote
    monkeypatch.chdir(tmp_path / "server")
    monkeypatch.delenv("EVOGIT_REPO", raising=False)
    out = runner.invoke(main, ["list", "--json"])
    assert out.exit_code == 0 and {t["name"] for t in __import__("json").loads(out.stdout)} == {"slugify", "word-count"}
    assert runner.invoke(main, ["pull"]).exit_code == 0
    assert runner.invoke(main, ["push"]).exit_code == 0

    # remotes: add (with a trust policy), list, the branch's upstream wins over origin, remove drops its refs
    other = tmp_path / "other.git"
    Runtime.init(other, starter=False, bare=True)
    out = runner.invoke(main, ["remote", "add", "team", str(other), "--trust", "signed"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(main, ["remote", "list", "--json"])
    listed = {r["name"]: r for r in __import__("json").loads(out.stdout)}
    assert listed["team"]["trust"] == "signed" and listed["origin"]["trust"] == "hash"
    b.repo.git.config["branch.main.remote"] = "team"
    out = runner.invoke(main, ["push"])
    assert out.exit_code == 0 and out.output.startswith("Pushed to team:"), out.output
    assert Runtime(other).repo.tools() == ["slugify", "word-count"]
    assert runner.invoke(main, ["remote", "add", "team", str(other)]).exit_code == 1  # exists: one line
    out = runner.invoke(main, ["remote", "remove", "team"])
    assert out.exit_code == 0 and "team" not in b.repo.git.remotes.names()
    assert not [r for r in b.repo.git.references if "/team/" in r]
    for name in list(b.repo.git.remotes.names()):
        b.repo.git.remotes.delete(name)
    out = runner.invoke(main, ["pull"])
    assert out.exit_code == 1 and "evogit remote add" in out.output and len(out.output.splitlines()) == 1
    out = runner.invoke(main, ["clone", str(server), str(tmp_path / "server")])  # not empty: refused, kept
    assert out.exit_code == 1 and "not an empty directory" in out.output
    assert Runtime(tmp_path / "server").repo.tools() == ["slugify", "word-count"]
    _fsck(server, other, tmp_path / "server", small_rt.repo.path)


def test_a_plain_git_clone_works_after_evogit_init(small_rt: Runtime, server: Path, tmp_path: Path):
    small_rt.push(str(server))
    subprocess.run(["git", "clone", "-q", str(server), str(tmp_path / "c")], check=True)
    out = CliRunner().invoke(main, ["init", str(tmp_path / "c"), "--no-starter"])
    assert out.exit_code == 0, out.output
    c = Runtime(tmp_path / "c")
    report, _ = c.pull()  # origin, as git set it up
    assert c.repo.tools() == ["slugify", "word-count"]
    assert c.run("word-count", b'{"text": "x y"}').output["words"] == 2
    _fsck(tmp_path / "c")


def _variant(mark: str) -> dict[str, bytes]:
    """echo-tool whose binary differs by `mark` (in a message no case checks): a version of its own."""
    from .conftest import tool_files

    files = tool_files()
    files["src/main.rs"] = files["src/main.rs"].replace(
        b'json!({"error": e.to_string()})', f'json!({{"error": format!("{mark}: {{}}", e)}})'.encode())
    assert files != tool_files()
    return files


@pytest.mark.parametrize("first", ["a", "b"])
def test_a_tool_both_machines_advanced_keeps_both_versions_and_the_heads_agree(empty_rt: Runtime, server: Path,
                                                                               tmp_path: Path, first: str):
    from evogit import lineage

    from .conftest import tool_files

    a = empty_rt
    a.repo.git.config["evogit.trust"] = "hash"
    assert a.commit("echo-tool", tool_files(), "Add echo-tool").ok
    a.push(str(server))
    b, _, _ = Runtime.clone(str(server), tmp_path / "b", trust="hash")
    a_out = a.commit("echo-tool", _variant("a"), "a's change")
    b_out = b.commit("echo-tool", _variant("b"), "b's change")
    assert a_out.ok and b_out.ok and a_out.version and b_out.version
    fa, fb = a_out.version.fingerprint, b_out.version.fingerprint
    assert fa != fb
    one, other = (a, b) if first == "a" else (b, a)
    one.push(str(server))
    with pytest.raises(EvogitError, match="rejected"):  # the hub has moved on: pull first
        other.push(str(server))
    report, builds = other.pull(str(server))
    assert report.diverged == ["echo-tool"] and "echo-tool" in report.heads and not builds
    other.push(str(server))  # its branch when the rule kept it (over the sibling, which stays as a tag)
    report, _ = one.pull(str(server))
    # the heads agree, on both machines and the hub, after one round of pulls
    hub = Runtime(server)
    assert a.repo.head("echo-tool").id == b.repo.head("echo-tool").id == hub.repo.head("echo-tool").id
    later = max((a_out, b_out), key=lambda o: (a.repo.commit(o.commit).commit_time, o.commit))
    assert a.repo.resolve("echo-tool").fingerprint == later.version.fingerprint
    for rt in (a, b):
        # both versions are on both machines, runnable by fingerprint, siblings in the lineage
        for fp in (fa, fb):
            assert rt.run(f"echo-tool@{fp[:12]}", b'{"text": "hi"}').output == {"text": "hi"}
        lin = lineage.for_tool(rt.repo, "echo-tool")
        parents = {k: n.parents for k, n in lin.nodes.items()}
        assert parents[f"echo-tool@{fa[:7]}"] == parents[f"echo-tool@{fb[:7]}"] != []
        [entry] = rt.list_tools()
        loser = fb if later.version.fingerprint == fa else fa
        assert entry.diverged == [f"echo-tool@{loser}"]
        out = CliRunner().invoke(main, ["list", "--repo", str(rt.repo.path)])
        assert "diverged" in out.output and "evogit resolve echo-tool" in out.output

    # someone chooses: a merge that every machine fast-forwards to; the branch's version is the chosen one
    out = CliRunner().invoke(main, ["resolve", "echo-tool", loser[:10], "--repo", str(b.repo.path)])
    assert out.exit_code == 0, out.output
    assert b.repo.resolve("echo-tool").fingerprint == loser and not b.list_tools()[0].diverged
    b.push(str(server))
    report, _ = a.pull(str(server))
    assert report.fast_forwarded == ["echo-tool"] and not report.diverged
    assert a.repo.head("echo-tool").id == b.repo.head("echo-tool").id
    assert a.repo.resolve("echo-tool").fingerprint == loser and not a.list_tools()[0].diverged
    assert a.run("echo-tool", b'{"text": "x"}').fingerprint == loser
    out = CliRunner().invoke(main, ["resolve", "echo-tool", loser[:10], "--repo", str(a.repo.path)])
    assert out.exit_code == 1 and "has not diverged" in out.output
    _fsck(server, a.repo.path, b.repo.path)


def test_a_log_from_a_newer_evogit_is_imported_and_its_unknown_events_counted(small_rt: Runtime, server: Path,
                                                                             tmp_path: Path):
    import zlib

    import msgspec

    from evogit.events import Feedback, UnknownEvent, encode
    from evogit.log import HEADER, FileLog

    # a machine running a newer evogit: one event of a type this version does not know, between two it knows
    newer = Runtime.init(tmp_path / "newer", starter=False)[0]
    log_dir = tmp_path / "newer-log"
    log = FileLog(log_dir, "newer")
    wc = small_rt.repo.resolve("word-count")
    log.append([Feedback(tool="word-count", fingerprint=wc.fingerprint, task="count", solved=True)])
    log.close()
    unknown = msgspec.msgpack.encode({"type": "tool_mutated", "v": 3, "id": "newer:9", "at": 1, "writer": "newer",
                                      "seq": 1, "tool": "word-count"})
    known = encode(Feedback(tool="word-count", fingerprint=wc.fingerprint, task="count", solved=False,
                            writer="newer", seq=2, id="newer:10"))
    with open(log_dir / "newer.log", "ab") as f:
        for payload in (unknown, known):
            f.write(HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
    publish_log(newer.repo, log_dir, "newer")
    _git(newer.repo.path, "push", "-q", str(server), f"{LOGS}newer:{LOGS}newer")

    small_rt.push(str(server))
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    b.repo.git.config["evogit.trustWriter"] = "newer"
    report, _ = b.pull(str(server))
    assert "newer" in report.logs and report.unknown == {"newer": 1} and not report.refused
    assert any(isinstance(e, UnknownEvent) for e in _events(b))  # kept, to be read once evogit is upgraded
    stats = b.stats()[f"word-count@{wc.fingerprint}"]
    assert (stats.feedback_solved, stats.feedback_failed) == (1, 1)  # what it knows around it still counts
    b.replay()
    assert b.projections().state.unknown == {"newer": 1}  # counted once, replay or not
    out = CliRunner().invoke(main, ["pull", str(server), "--repo", str(b.repo.path), "--json"])
    assert out.exit_code == 0 and __import__("json").loads(out.stdout)["unknown_events"] == {}  # nothing new


def test_clone_push_and_pull_over_a_file_url(small_rt: Runtime, server: Path, tmp_path: Path):
    small_rt.push(server.as_uri())  # file://…: git's own transport, not a path
    out = CliRunner().invoke(main, ["clone", server.as_uri(), str(tmp_path / "c"), "--trust", "hash", "--json"])
    assert out.exit_code == 0, out.output
    assert sorted(__import__("json").loads(out.stdout)["created"]) == ["slugify", "word-count"]
    c = Runtime(tmp_path / "c")
    assert c.repo.git.remotes["origin"].url == server.as_uri()
    assert c.run("slugify", b'{"text": "A b"}').output == {"slug": "a-b"}
    c.push()
    report, _ = small_rt.pull(server.as_uri())
    assert report.logs  # c's log came back over file://
    _fsck(tmp_path / "c", server)


def test_a_push_with_nothing_new_runs_no_git_push_and_names_only_what_moved(small_rt: Runtime, server: Path,
                                                                            monkeypatch):
    """`push` asks the remote what it holds (one `git ls-remote`), checks and names only the refs that differ:
    nothing new runs no `git push` at all; one new version names its branch, its tag and the log."""
    from evogit import share

    from .conftest import tool_files

    small_rt.push(str(server))
    calls: list[tuple[str, ...]] = []
    real = share._run_git

    def recorded(repo, *args: str):
        calls.append(args)
        return real(repo, *args)

    monkeypatch.setattr(share, "_run_git", recorded)
    assert small_rt.push(str(server)).updated == []
    assert [c[0] for c in calls] == ["ls-remote"]

    calls.clear()
    outcome = small_rt.commit("word-count", tool_files("word-count"), "A new word-count")
    assert outcome.ok and outcome.version is not None
    report = small_rt.push(str(server))
    (pushed,) = [c for c in calls if c[0] == "push"]
    named = sorted(a.split(":")[0].lstrip("+") for a in pushed if a.startswith(("refs/", "+refs/")))
    assert named == sorted(["refs/heads/tools/word-count", f"refs/tags/tools/word-count/{outcome.version.fingerprint}",
                            f"{LOGS}{small_rt.log.writer}"])
    assert sorted(report.updated) == named
    assert _git(server, "rev-parse", "refs/heads/tools/word-count").strip() == outcome.commit


def test_a_hub_accepts_pushed_versions_without_compiling_their_heads(small_rt: Runtime, server: Path):
    """The hub's post-receive accepts the pushed tags first: a head whose version arrived with it and passes the
    hub's trust policy is not built there (no build record, no build event of the hub's); a head pushed without
    one is built."""
    from .conftest import tool_files

    _git(server, "config", "evogit.trust", "hash")
    small_rt.push(str(server))
    hub = Runtime(server)
    versions = {v.key for v in small_rt.repo.versions()}
    assert {v.key for v in hub.repo.versions()} == versions
    for tool in ("word-count", "slugify"):
        assert hub.builder.last_record(str(small_rt.repo.head(tool).id)) is None
    own = [e for w, _, e in hub.log.read() if w == hub.log.writer]
    assert not [e for e in own if isinstance(e, (ev.BuildSucceeded, ev.BuildFailed))], own

    # a head pushed without its version tag (plain git) is built by the hub
    head = small_rt.repo.commit_version("slugify", tool_files("slugify"), "A new slugify, built nowhere yet")
    pushed = subprocess.run(["git", "-C", str(small_rt.repo.path), "push", str(server), "tools/slugify"],
                            capture_output=True, text=True)
    assert pushed.returncode == 0 and "evogit: ok    slugify@" in pushed.stderr, pushed.stderr
    record = Runtime(server).builder.last_record(head)
    assert record is not None and record.ok


def test_a_pull_reads_each_wasm_once_and_packs_the_refs_after_many_tags(small_rt: Runtime, server: Path,
                                                                        tmp_path: Path, monkeypatch):
    """A pull's checks remember each accepted tag's contents by build commit (`repo.intact`), so building the heads
    that arrived and every later read take that verdict instead of hashing the wasm again; a pull that accepted many
    tags packs the refs it wrote (listing loose refs cost ~10x packed ones)."""
    from evogit import repo as repo_module
    from evogit import share, verify

    small_rt.push(str(server))
    monkeypatch.setattr(share, "PACK_AFTER", 2)
    reads: list[str] = []
    real = verify.contents

    def counted(git_repo, name, fp, commit):
        reads.append(str(commit.id))
        return real(git_repo, name, fp, commit)

    monkeypatch.setattr(verify, "contents", counted)
    monkeypatch.setattr(repo_module, "contents", counted)
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    report, builds = b.pull(str(server))
    assert len(report.accepted_tags) == 2 and all(o.ok for o in builds)
    assert sorted(reads) == sorted(v.build_commit for v in b.repo.versions())  # once each
    loose = [p.relative_to(b.repo.state_dir.parent) for p in (b.repo.state_dir.parent / "refs").rglob("*")
             if p.is_file()]
    assert not [p for p in loose if "tags" in p.parts], loose
    assert len(_git(b.repo.path, "for-each-ref", "refs/tags/tools").splitlines()) == 2
