"""Version tags that arrive by git are checked before they are trusted; malformed ones never break a command
(evogit/verify.py, the pull side of evogit/share.py, `evogit verify`). Every attack is made with plain git."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evogit.artifact import interface_of, interface_section
from evogit.cli import main
from evogit.runtime import Runtime

from .forge import above, commit_tree, forge_build, git, tree_entries, with_custom_section

pytestmark = pytest.mark.slow  # every test here builds the two starter tools (cache hits after the first)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _wasm(rt: Runtime, name: str) -> bytes:
    v = rt.repo.resolve(name)
    return rt.repo.read(rt.repo.commit(v.build_commit), "build/tool.wasm")


def _posing(rt: Runtime, code_of: str, as_tool: str) -> bytes:
    """One tool's wasm carrying another's interface section: only a rebuild tells it from the real one."""
    return _wasm(rt, code_of) + interface_section(interface_of(_wasm(rt, as_tool)) or {})


def _tag(path: Path, tag: str, target: str) -> None:
    git(path, "update-ref", f"refs/tags/{tag}", target)


def _forgeries(a: Runtime, another_module: bool = True) -> dict[str, tuple[str, str]]:
    """Every kind of bad version tag, made in a's repository with plain git: tag -> (target, expected reason).
    `another_module` adds the one that passes every check but the rebuild."""
    path = a.repo.path
    wc, sl = a.repo.resolve("word-count"), a.repo.resolve("slugify")
    other = _wasm(a, "slugify")
    out: dict[str, tuple[str, str]] = {}

    # slugify's code carrying word-count's interface section: past the interface check, to the one each tests
    posing = _posing(a, "slugify", "word-count")

    def forged(payload: bytes) -> tuple[bytes, str]:
        wasm = with_custom_section(posing, payload)
        return wasm, hashlib.sha256(wasm).hexdigest()

    if another_module:  # tagged by its real sha256, on the real source commit: only a rebuild tells
        evil = above(posing, wc.fingerprint)
        fp = hashlib.sha256(evil).hexdigest()
        out[f"tools/word-count/{fp}"] = (forge_build(path, wc.source_commit, "word-count", evil), "builds here to")
    # slugify's wasm as it is, under word-count's source: its interface section names slugify's tool.json
    out[f"tools/word-count/{sl.fingerprint}"] = (forge_build(path, wc.source_commit, "word-count", other),
                                                 "tool.wasm was built for another tool.json")
    # a tool.wasm that does not hash to the tag's name (sorting after the good version)
    out["tools/word-count/" + "f" * 64] = (
        forge_build(path, wc.source_commit, "word-count", other, fingerprint="f" * 64), "tool.wasm hashes to")
    build_tree = git(path, "rev-parse", f"{wc.build_commit}^{{tree}}").strip()
    out["tools/word-count/" + "e" * 64] = (commit_tree(path, build_tree, [], "parentless"), "no parent")
    out["tools/word-count/" + "d" * 64] = (git(path, "hash-object", "-w", "--stdin", input=b"a blob").strip(),
                                           "points at a blob")
    git(path, "tag", "-a", "-m", "annotated", "tools/slugify/" + "c" * 64, sl.build_commit)
    out["tools/slugify/" + "c" * 64] = (git(path, "rev-parse", "refs/tags/tools/slugify/" + "c" * 64).strip(),
                                        "points at a tag")
    # word-count's files on a commit of their own that forks from no version of it (a sibling forked from a
    # version is another machine's work: lineage accepts it, the rebuild or the signature judges its binary)
    off_branch = commit_tree(path, git(path, "rev-parse", f"{wc.source_commit}^{{tree}}").strip(),
                             [git(path, "rev-list", "--max-parents=0", "main").strip()], "not on any branch")
    wasm, fp = forged(b"off-branch")
    out[f"tools/word-count/{fp}"] = (forge_build(path, off_branch, "word-count", wasm), "not on the history of tools/word-count")
    wasm, fp = forged(b"extra")
    out[f"tools/word-count/{fp}"] = (forge_build(path, wc.source_commit, "word-count", wasm, extra={"evil.txt": b"x"}),
                                     "not the source tree plus build/")
    wasm, fp = forged(b"root")  # the repository's first commit is on every tool's history, but is no tool
    out[f"tools/word-count/{fp}"] = (forge_build(path, git(path, "rev-list", "--max-parents=0", "main").strip(),
                                                 "word-count", wasm), "tool.json does not name 'word-count'")
    wasm, fp = forged(b"lies")
    lie = {"fingerprint": fp, "ok": True, "tool": "slugify"}
    out[f"tools/word-count/{fp}"] = (forge_build(path, wc.source_commit, "word-count", wasm, build_json=lie),
                                     "build.json says tool 'slugify'")
    wasm, fp = forged(b"who")
    out[f"tools/word-count/{fp}"] = (forge_build(path, wc.source_commit, "word-count", wasm, who=("m", "m@m")),
                                     "not the builder")
    out["tools/Word-Count/" + wc.fingerprint] = (wc.build_commit, "not a valid tool name")
    out["tools/word-count/not-hex"] = (wc.build_commit, "64 lowercase hex")
    out[f"tools/word-count/x/{wc.fingerprint}"] = (wc.build_commit, "not tools/<name>/<fingerprint>")
    for tag, (target, _) in out.items():
        if not tag.startswith("tools/slugify/"):  # the annotated tag is already in place
            _tag(path, tag, target)
    return out


@pytest.fixture
def plain_hub(tmp_path: Path) -> Path:
    """A hub that is nothing but a bare git repository: whatever is pushed with git lands in its refs."""
    hub = tmp_path / "plain.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    return hub


def test_forged_version_tags_are_refused_on_pull_and_never_run(small_rt: Runtime, plain_hub: Path, tmp_path: Path):
    a = small_rt
    good = {f"tools/{v.name}/{v.fingerprint}" for v in a.repo.versions()}
    forged = _forgeries(a)
    git(a.repo.path, "push", "-q", str(plain_hub), "refs/heads/tools/*:refs/heads/tools/*",
        "refs/tags/tools/*:refs/tags/tools/*")

    b, _ = Runtime.init(tmp_path / "b", starter=False)
    report, builds = b.pull(str(plain_hub))
    assert sorted(report.accepted_tags) == sorted(good) and all(o.ok for o in builds)
    assert set(report.refused_tags) == set(forged)
    for tag, (_, why) in forged.items():
        assert why in report.refused_tags[tag], (tag, report.refused_tags[tag])
    tags = git(b.repo.path, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/tags").split()
    assert sorted(tags) == sorted(good)
    # only the accepted tags stay in the quarantine, as the remote's tags as last fetched (a refused one leaves it)
    quarantined = git(b.repo.path, "for-each-ref", "--format=%(refname)", "refs/evogit/quarantine").split()
    assert sorted(r.split("/tags/", 1)[1] for r in quarantined) == sorted(good)
    assert b.run("word-count", b'{"text": "a b c"}').output == {"words": 3, "lines": 1, "chars": 5}

    # refusals are remembered by tag and target: the next pull does not check (or rebuild) them again
    record = b.repo.state_dir / "builds" / f"{a.repo.resolve('word-count').source_commit}.json"
    before = record.stat().st_mtime_ns
    again, _ = b.pull(str(plain_hub))
    assert again.refused_tags == {} and again.accepted_tags == []
    assert record.stat().st_mtime_ns == before
    assert set(json.loads((b.repo.state_dir / "refused-tags.json").read_text())) == set(forged)

    # a tag whose target changed is checked again
    tag = "tools/word-count/" + "f" * 64
    wc = a.repo.resolve("word-count")
    retarget = forge_build(a.repo.path, wc.source_commit, "word-count", b"\0asm\1\0\0\0", fingerprint="f" * 64)
    git(a.repo.path, "push", "-q", "--force", str(plain_hub), f"{retarget}:refs/tags/{tag}")
    third, _ = b.pull(str(plain_hub))
    assert list(third.refused_tags) == [tag] and "tool.wasm hashes to" in third.refused_tags[tag]


def test_forged_version_tags_break_no_command_on_the_machine_that_has_them(small_rt: Runtime):
    a = small_rt
    repo = str(a.repo.path)
    wc = a.repo.resolve("word-count")
    forged = _forgeries(a, another_module=False)  # that one takes `verify --rebuild` (next test)
    git(a.repo.path, "symbolic-ref", "refs/tags/tools/word-count/" + "b" * 64, "refs/heads/main")
    for args in (["list"], ["stats"], ["stats", "word-count"], ["describe", "word-count"], ["lineage", "word-count"],
                 ["search", "count words", "-k", "2"], ["feedback", "word-count", "--task", "count", "--solved"]):
        result = invoke(*args, "--repo", repo)
        assert result.exit_code == 0, (args, result.output)
    result = invoke("run", "word-count", '{"text": "a b"}', "--repo", repo)
    assert result.exit_code == 0 and json.loads(result.stdout)["words"] == 2  # the good version, not the forged ones
    assert wc.fingerprint[:7] in invoke("list", "--repo", repo).stdout
    assert a.repo.resolve("word-count") == wc

    result = invoke("verify", "--repo", repo)
    assert result.exit_code == 1
    for tag, (_, why) in forged.items():
        assert f"FAIL  {tag}: " in result.output and why in result.output.split(f"FAIL  {tag}: ")[1].splitlines()[0]
    assert "symbolic" in result.output
    assert f"ok    slugify@{a.repo.resolve('slugify').fingerprint[:7]}" in result.output


def test_verify_checks_one_tool_or_version_and_rebuild_catches_another_module(small_rt: Runtime):
    a = small_rt
    repo = str(a.repo.path)
    wc = a.repo.resolve("word-count")
    evil = above(_posing(a, "slugify", "word-count"), wc.fingerprint)
    fp = hashlib.sha256(evil).hexdigest()
    _tag(a.repo.path, f"tools/word-count/{fp}", forge_build(a.repo.path, wc.source_commit, "word-count", evil))

    assert invoke("verify", "slugify", "--repo", repo).exit_code == 0
    result = invoke("verify", f"word-count@{wc.fingerprint[:7]}", "--repo", repo, "--rebuild", "--json")
    assert result.exit_code == 0, result.output
    (ok,) = json.loads(result.stdout)
    assert ok["ok"] and ok["tool"] == "word-count" and ok["fingerprint"] == wc.fingerprint
    assert invoke("verify", "word-count", "--repo", repo).exit_code == 0  # every check but the rebuild passes
    result = invoke("verify", "word-count", "--repo", repo, "--rebuild")
    assert result.exit_code == 1
    assert f"FAIL  tools/word-count/{fp}: builds here to {wc.fingerprint[:12]}" in result.output
    assert result.output.rstrip().endswith("1 of 2 versions failed verification")
    assert a.repo.resolve("word-count").fingerprint in (wc.fingerprint, fp)  # hash-valid: reading cannot tell
    assert invoke("verify", "word-count@0000000", "--repo", repo).exit_code == 1


def test_forged_version_tags_pushed_to_an_evogit_hub_are_refused_by_the_hub(small_rt: Runtime, tmp_path: Path):
    a = small_rt
    hub = tmp_path / "hub.git"
    Runtime.init(hub, starter=False, bare=True)
    a.push(str(hub))
    good = {f"tools/{v.name}/{v.fingerprint}" for v in a.repo.versions()}
    forged = _forgeries(a)
    pushed = git(a.repo.path, "push", str(hub), "refs/tags/tools/*:refs/tags/tools/*", check=False)
    for tag in forged:
        assert f"tag {tag} refused" in pushed, pushed
    tags = git(hub, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/tags").split()
    assert sorted(tags) == sorted(good)
    for args in (["list"], ["stats"], ["describe", "word-count"], ["verify"]):
        result = invoke(*args, "--repo", str(hub))
        assert result.exit_code == 0, (args, result.output)


def test_hash_trust_takes_a_hash_valid_tag_that_a_rebuild_refuses(small_rt: Runtime, plain_hub: Path, tmp_path: Path):
    a = small_rt
    wc = a.repo.resolve("word-count")
    evil = above(_posing(a, "slugify", "word-count"), wc.fingerprint)
    fp = hashlib.sha256(evil).hexdigest()
    _tag(a.repo.path, f"tools/word-count/{fp}", forge_build(a.repo.path, wc.source_commit, "word-count", evil))
    _tag(a.repo.path, "tools/word-count/" + "d" * 64, git(a.repo.path, "hash-object", "-w", "--stdin", input=b"x").strip())
    git(a.repo.path, "push", "-q", str(plain_hub), "refs/heads/tools/*:refs/heads/tools/*", "refs/tags/tools/*:refs/tags/tools/*")

    b, _ = Runtime.init(tmp_path / "b", starter=False)
    git(b.repo.path, "remote", "add", "hub", str(plain_hub))
    b.repo.git.config["remote.hub.evogitTrust"] = "hash"  # a hub this machine controls
    report, _ = b.pull("hub")
    assert f"tools/word-count/{fp}" in report.accepted_tags
    assert list(report.refused_tags) == ["tools/word-count/" + "d" * 64]

    c, _ = Runtime.init(tmp_path / "c", starter=False)
    c.repo.git.config["evogit.trust"] = "whatever"
    result = invoke("pull", str(plain_hub), "--repo", str(c.repo.path))
    assert result.exit_code == 1 and "evogit.trust" in result.output and len(result.output.splitlines()) == 1


def test_a_tag_squatting_a_fingerprint_name_is_replaced_by_the_real_build(small_rt: Runtime):
    a = small_rt
    wc = a.repo.resolve("word-count")
    squat = forge_build(a.repo.path, wc.source_commit, "word-count", _wasm(a, "slugify"), fingerprint=wc.fingerprint)
    _tag(a.repo.path, f"tools/word-count/{wc.fingerprint}", squat)  # the real name, another module
    result = invoke("run", "word-count", '{"text": "a"}', "--repo", str(a.repo.path))
    assert result.exit_code == 1 and "no green version" in result.output  # never runs the squatter
    (outcome,) = a.build(["word-count"])
    assert outcome.ok and outcome.version == wc
    assert git(a.repo.path, "rev-parse", f"refs/tags/tools/word-count/{wc.fingerprint}").strip() == wc.build_commit
    assert a.run("word-count", b'{"text": "a"}').ok


def test_the_tree_of_every_accepted_tag_is_the_source_tree_plus_build(small_rt: Runtime):
    """The shape the checks demand is the shape the builder writes."""
    for v in small_rt.repo.versions():
        build, source = tree_entries(small_rt.repo.path, v.build_commit), tree_entries(small_rt.repo.path, v.source_commit)
        assert set(build) - set(source) == {"build"}
        assert sorted(tree_entries(small_rt.repo.path, f"{v.build_commit}:build")) == ["build.json", "tool.wasm"]
    assert all(v.ok for v in small_rt.verify())


def test_a_tag_moved_on_the_hub_after_a_pull_accepted_it_is_checked_again_and_refused(
        small_rt: Runtime, plain_hub: Path, tmp_path: Path):
    """A pull keeps each accepted tag in its quarantine (the remote's tags as last fetched), so that a pull with
    nothing new writes no ref; a tag the hub moves afterwards differs from it and from refs/tags, and is checked."""
    a = small_rt
    wc = a.repo.resolve("word-count")
    tag = f"tools/word-count/{wc.fingerprint}"
    git(a.repo.path, "push", "-q", str(plain_hub), "refs/heads/tools/*:refs/heads/tools/*",
        "refs/tags/tools/*:refs/tags/tools/*")
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    git(b.repo.path, "remote", "add", "hub", str(plain_hub))
    first, _ = b.pull("hub")
    assert tag in first.accepted_tags
    mirror = f"refs/evogit/quarantine/remotes/hub/tags/{tag}"
    assert git(b.repo.path, "rev-parse", mirror).strip() == wc.build_commit

    # nothing new: no quarantine ref is deleted or written again (each ref file stays as it was)
    def ref_files() -> dict[str, int]:
        root = b.repo.state_dir.parent / "refs" / "evogit" / "quarantine"
        return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}

    before = ref_files()
    assert len(before) == len(first.accepted_tags)
    again, _ = b.pull("hub")
    assert again.accepted_tags == [] and again.refused_tags == {}
    assert ref_files() == before

    # the hub moves the accepted tag to a build of another module under the same name: checked, refused
    squat = forge_build(a.repo.path, wc.source_commit, "word-count", _wasm(a, "slugify"), fingerprint=wc.fingerprint)
    git(a.repo.path, "push", "-q", "--force", str(plain_hub), f"{squat}:refs/tags/{tag}")
    moved, _ = b.pull("hub")
    assert list(moved.refused_tags) == [tag] and "tags never move" in moved.refused_tags[tag]
    assert git(b.repo.path, "rev-parse", f"refs/tags/{tag}").strip() == wc.build_commit
    assert not git(b.repo.path, "for-each-ref", mirror)  # a refused tag leaves the quarantine
    assert b.run("word-count", b'{"text": "a b"}').output["words"] == 2
    later, _ = b.pull("hub")  # remembered by target: not checked again, still not taken
    assert later.refused_tags == {} and later.accepted_tags == []
    assert git(b.repo.path, "rev-parse", f"refs/tags/{tag}").strip() == wc.build_commit

    # a tag taken out of refs/tags while its mirror stays in the quarantine is checked (and taken) again
    c, _ = Runtime.init(tmp_path / "c", starter=False)
    git(c.repo.path, "remote", "add", "hub", str(plain_hub))
    git(a.repo.path, "push", "-q", "--force", str(plain_hub), f"{wc.build_commit}:refs/tags/{tag}")
    assert tag in c.pull("hub")[0].accepted_tags
    git(c.repo.path, "update-ref", "-d", f"refs/tags/{tag}")
    assert c.pull("hub")[0].accepted_tags == [tag]
    assert git(c.repo.path, "rev-parse", f"refs/tags/{tag}").strip() == wc.build_commit


def test_push_checks_a_tag_contents_once_per_build_commit_and_a_moved_tag_again(small_rt: Runtime, monkeypatch):
    """`unsound_refs` remembers a tag's contents by its build commit (`repo.intact`), never by its name: a tag
    moved to another build commit is checked again and refused."""
    from evogit import verify
    from evogit.repo import SkillsRepo
    from evogit.share import unsound_refs

    a = small_rt
    wc = a.repo.resolve("word-count")
    assert unsound_refs(a.repo) == {}
    calls: list[str] = []
    real = verify.contents

    def counted(git_repo, name, fp, commit):
        calls.append(str(commit.id))
        return real(git_repo, name, fp, commit)

    monkeypatch.setattr(verify, "contents", counted)
    assert unsound_refs(SkillsRepo(a.repo.path)) == {}  # a new process: remembered on disk (intact-v1)
    assert calls == []
    tag = f"tools/word-count/{wc.fingerprint}"
    squat = forge_build(a.repo.path, wc.source_commit, "word-count", _wasm(a, "slugify"), fingerprint=wc.fingerprint)
    _tag(a.repo.path, tag, squat)
    found = unsound_refs(SkillsRepo(a.repo.path))
    assert list(found) == [f"refs/tags/{tag}"] and "tool.wasm hashes to" in found[f"refs/tags/{tag}"]
    assert calls == [squat]
