"""Hooks: a plain `git commit` on a tool branch builds and tags the new version — in a worktree too; a plain
`git pull` or `git merge` builds what arrived and checks the version tags git brought in; `evogit init` on a
plain `git clone` takes its tools as a pull would; foreign hooks survive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evogit import hooks
from evogit.events import BuildSucceeded
from evogit.repo import SkillsRepo
from evogit.runtime import Runtime

AUTHOR = {"GIT_AUTHOR_NAME": "Ann", "GIT_AUTHOR_EMAIL": "ann@example.org",
          "GIT_COMMITTER_NAME": "Ann", "GIT_COMMITTER_EMAIL": "ann@example.org"}


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # the environment as it is now: the session fixtures set the tests' own build cache after import
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **AUTHOR}, capture_output=True, text=True)


def evogit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evogit", *args], env={**os.environ, **AUTHOR},
                          capture_output=True, text=True)


def fsck_clean(*repos: Path) -> None:
    for repo in repos:
        done = git(repo, "fsck", "--strict")
        assert done.returncode == 0 and "error" not in done.stderr and "warning" not in done.stderr, (repo, done.stderr)


def say_json_string(work_tree: Path) -> None:
    """word-count's error message changed, with its case: one tree, built once per machine and cached."""
    main_rs = work_tree / "src" / "main.rs"
    main_rs.write_text(main_rs.read_text().replace('"\\"text\\" must be a string"', '"\\"text\\" must be a JSON string"'))
    cases = work_tree / "tests" / "cases.jsonl"
    cases.write_text(cases.read_text().replace('must be a string', 'must be a JSON string'))


@pytest.mark.slow
def test_plain_git_commit_builds_and_tags(small_rt: Runtime):
    repo_dir = small_rt.repo.path
    before = small_rt.repo.resolve("word-count")
    assert git(repo_dir, "checkout", "-q", "tools/word-count").returncode == 0
    main_rs = repo_dir / "src" / "main.rs"
    say_json_string(repo_dir)
    done = git(repo_dir, "commit", "-qam", "Say JSON string")
    assert done.returncode == 0, done.stderr
    assert "evogit: ok    word-count@" in done.stderr
    after = SkillsRepo(repo_dir).resolve("word-count")
    assert after.fingerprint != before.fingerprint
    head = git(repo_dir, "rev-parse", "HEAD").stdout.strip()
    assert after.source_commit == head
    assert f"tools/word-count/{after.fingerprint}" in git(repo_dir, "tag", "-l").stdout.split()
    # A broken commit by hand is kept, tagged nothing, and the hook says why.
    main_rs.write_text("fn main() { broken }")
    done = git(repo_dir, "commit", "-qam", "Break it")
    assert done.returncode == 0
    assert "FAIL  word-count" in done.stderr and "cannot find value `broken`" in done.stderr
    assert SkillsRepo(repo_dir).resolve("word-count") == after
    fsck_clean(repo_dir)


def test_install_keeps_a_foreign_hook_and_still_runs_it(tmp_path: Path):
    repo_dir = tmp_path / "r"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo_dir)], check=True)
    hook = repo_dir / ".git" / "hooks" / "post-commit"
    hook.write_text("#!/bin/sh\necho legacy-ran >> \"$(git rev-parse --git-dir)/legacy.log\"\n")
    hook.chmod(0o755)
    Runtime.init(repo_dir, starter=False)
    assert (repo_dir / ".git" / "hooks" / "post-commit.legacy").exists()
    assert hooks.is_installed(repo_dir / ".git", "post-commit")
    # Installing again is idempotent and does not clobber the legacy hook.
    assert hooks.install(repo_dir / ".git") == []
    (repo_dir / "note.txt").write_text("x")
    git(repo_dir, "add", "note.txt")
    done = git(repo_dir, "commit", "-qm", "note on main")
    assert done.returncode == 0, done.stderr
    assert (repo_dir / ".git" / "legacy.log").read_text() == "legacy-ran\n"
    fsck_clean(repo_dir)


def test_hook_outside_tool_branch_does_nothing(empty_rt: Runtime):
    assert empty_rt.on_hook("post-commit") == []
    assert empty_rt.on_hook("post-receive", "0000 1111 refs/heads/main\n") == []


@pytest.mark.slow
def test_push_to_a_bare_server_builds_what_it_receives(small_rt: Runtime, tmp_path: Path):
    server = tmp_path / "server.git"
    Runtime.init(server, starter=False, bare=True)
    assert hooks.is_installed(server, "post-receive")
    local = small_rt.repo.path
    assert git(local, "remote", "add", "server", str(server)).returncode == 0
    pushed = git(local, "push", "server", "tools/word-count")
    assert pushed.returncode == 0, pushed.stderr
    assert "evogit: ok    word-count@" in pushed.stderr  # the server's hook output, relayed by git
    here, there = small_rt.repo.resolve("word-count"), SkillsRepo(server).resolve("word-count")
    assert (here.fingerprint, here.build_commit) == (there.fingerprint, there.build_commit)  # same object
    # Pushing the tags as well is a no-op for the build commit the server already made.
    assert git(local, "push", "server", "--tags").returncode == 0
    fsck_clean(local, server)


# -- git as people use it: worktrees, plain pull and merge, plain clone -----------------------------------------------
@pytest.mark.slow
def test_plain_git_commit_in_a_worktree_builds_and_tags(small_rt: Runtime, tmp_path: Path):
    repo_dir = small_rt.repo.path
    wt = tmp_path / "wt"
    assert git(repo_dir, "worktree", "add", "-q", str(wt), "tools/word-count").returncode == 0
    say_json_string(wt)
    done = git(wt, "commit", "-qam", "Say JSON string")
    assert done.returncode == 0, done.stderr
    assert "evogit: ok    word-count@" in done.stderr, done.stderr
    head = git(wt, "rev-parse", "HEAD").stdout.strip()
    for where in (repo_dir, wt):  # the worktree is the same library: state, tags and log in the common git dir
        v = SkillsRepo(where).resolve("word-count")
        assert v.source_commit == head
    assert SkillsRepo(wt).state_dir == small_rt.repo.state_dir
    assert (small_rt.repo.state_dir / "builds" / f"{head}.json").exists()
    assert not (repo_dir / ".git" / "worktrees" / "wt" / "evogit").exists()
    with Runtime(wt) as rt:  # the build the hook logged is this library's
        assert any(isinstance(e, BuildSucceeded) and e.commit == head for _, _, e in rt.log.read())
    # A new tool branch made in a worktree builds as well, and so does a broken commit say why.
    wt2 = tmp_path / "wt2"
    assert git(repo_dir, "worktree", "add", "-q", "-b", "tools/slugify-2", str(wt2), "tools/slugify").returncode == 0
    manifest = json.loads((wt2 / "tool.json").read_text())
    manifest["name"] = "slugify-2"
    (wt2 / "tool.json").write_text(json.dumps(manifest, indent=2) + "\n")
    done = git(wt2, "commit", "-qam", "A slugify of our own")
    assert done.returncode == 0 and "evogit: ok    slugify-2@" in done.stderr, done.stderr
    listed = evogit("list", "--json", "--repo", str(wt2))
    assert listed.returncode == 0, listed.stderr
    assert {t["name"] for t in json.loads(listed.stdout)} == {"word-count", "slugify", "slugify-2"}
    (wt2 / "src" / "main.rs").write_text("fn main() { broken }")
    done = git(wt2, "commit", "-qam", "Break it")
    assert done.returncode == 0 and "FAIL  slugify-2" in done.stderr and "cannot find value `broken`" in done.stderr
    fsck_clean(repo_dir)


FORGED = "0" * 64  # a fingerprint that is no tool.wasm's hash


@pytest.mark.slow
def test_plain_git_pull_builds_what_arrived_and_checks_the_tags_it_brought(small_rt: Runtime, tmp_path: Path):
    origin, clone = small_rt.repo.path, tmp_path / "clone"
    slugify = small_rt.repo.resolve("slugify")
    assert git(origin, "tag", f"tools/slugify/{'1' * 64}", slugify.build_commit).returncode == 0
    assert git(tmp_path, "clone", "-q", str(origin), str(clone)).returncode == 0  # git clone copies every tag
    done = evogit("init", "--no-starter", "--json", str(clone))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(report["adopted"]) == ["slugify", "word-count"] and len(report["accepted_tags"]) == 2
    assert list(report["refused_tags"]) == [f"tools/slugify/{'1' * 64}"]
    assert f"tools/slugify/{'1' * 64}" not in git(clone, "tag", "-l").stdout
    assert git(clone, "checkout", "-q", "tools/word-count").returncode == 0  # adopted: it tracks origin's
    assert git(clone, "config", "remote.origin.tagOpt").stdout.strip() == "--no-tags"  # as evogit clone has it
    # The origin moves on: a new word-count version committed with git (its hook tags it), a slugify commit built
    # nowhere yet, and a forged version tag.
    assert git(origin, "checkout", "-q", "tools/word-count").returncode == 0
    say_json_string(origin)
    done = git(origin, "commit", "-qam", "Say JSON string\n\nEvogit-Supersedes: text-not-string: says JSON string")
    assert "evogit: ok    word-count@" in done.stderr, done.stderr
    new = SkillsRepo(origin).resolve("word-count")
    files, _ = small_rt.repo.files(small_rt.repo.head("slugify").tree)
    unbuilt = small_rt.repo.commit_version("slugify", files, "Nothing new")
    assert git(origin, "tag", f"tools/slugify/{FORGED}", slugify.build_commit).returncode == 0
    # Plain git: slugify moved by a fetch (no hook runs), then `git pull --tags` on word-count (post-merge).
    assert git(clone, "fetch", "-q", "origin", "tools/slugify:tools/slugify").returncode == 0
    pulled = git(clone, "pull", "--no-rebase", "--tags")
    assert pulled.returncode == 0, pulled.stderr
    said = pulled.stderr
    assert f"evogit: ok    {new.short}" in said, said  # the tag that came, checked by a rebuild here (trust rebuild)
    assert f"tag tools/slugify/{FORGED} refused" in said  # and taken out of refs/tags
    assert f"tools/slugify/{FORGED}" not in git(clone, "tag", "-l").stdout
    assert f"evogit: ok    {slugify.short}" in said  # the head that arrived unbuilt, built here (the same binary)
    here = SkillsRepo(clone)
    assert here.resolve("word-count") == new
    assert (here.state_dir / "builds" / f"{unbuilt}.json").exists()
    # What is built is not built again: a merge that brings nothing builds nothing.
    with Runtime(clone) as rt:
        assert rt.on_hook("post-merge") == []
    # `git pull --rebase` over a commit made here: the rebased head is built (post-rewrite).
    assert git(origin, "commit", "-q", "--allow-empty", "-m", "Theirs").returncode == 0
    assert git(clone, "commit", "-q", "--allow-empty", "-m", "Ours").returncode == 0
    rebased = git(clone, "pull", "--rebase")
    assert rebased.returncode == 0, rebased.stderr
    assert "refused" not in rebased.stderr  # the tags refused before did not come back (tagOpt --no-tags)
    head = git(clone, "rev-parse", "HEAD").stdout.strip()
    assert git(clone, "log", "-1", "--format=%s").stdout.strip() == "Ours"
    assert f"evogit: ok    {new.short}" in rebased.stderr and (here.state_dir / "builds" / f"{head}.json").exists()
    fsck_clean(origin, clone)


@pytest.mark.slow
def test_evogit_init_on_a_git_clone_of_a_hub_takes_its_tools_and_a_worktree_of_it_builds(small_rt: Runtime,
                                                                                         tmp_path: Path):
    hub, clone, wt = tmp_path / "hub.git", tmp_path / "clone", tmp_path / "wt"
    Runtime.init(hub, starter=False, bare=True)
    pushed = git(small_rt.repo.path, "push", "-q", str(hub), "refs/heads/tools/*:refs/heads/tools/*",
                 "refs/tags/tools/*:refs/tags/tools/*")
    assert pushed.returncode == 0, pushed.stderr
    assert git(tmp_path, "clone", "-q", str(hub), str(clone)).returncode == 0
    assert git(clone, "branch", "--list", "tools/*").stdout == ""  # git made no local tool branch
    done = evogit("init", "--no-starter", str(clone))
    assert done.returncode == 0, done.stderr
    assert "2 tool branches, 2 version tags checked and accepted" in done.stderr
    assert all(hooks.is_installed(clone / ".git", name) for name in hooks.HOOKS)
    listed = evogit("list", "--json", "--repo", str(clone))
    assert {t["name"]: t["fingerprint"] for t in json.loads(listed.stdout)} == \
        {v.name: v.fingerprint for v in (small_rt.repo.resolve("word-count"), small_rt.repo.resolve("slugify"))}
    ran = evogit("run", "word-count", '{"text": "a b c"}', "--repo", str(clone))
    assert ran.returncode == 0 and json.loads(ran.stdout)["words"] == 3, ran.stderr
    upstream = git(clone, "rev-parse", "--abbrev-ref", "tools/word-count@{upstream}").stdout.strip()
    assert upstream == "origin/tools/word-count"  # as `git checkout` would set it: plain `git pull` works there
    # A worktree of the clone: a plain git commit there builds and tags into the clone.
    assert git(clone, "worktree", "add", "-q", str(wt), "tools/word-count").returncode == 0
    say_json_string(wt)
    done = git(wt, "commit", "-qam", "Say JSON string")
    assert done.returncode == 0 and "evogit: ok    word-count@" in done.stderr, done.stderr
    assert SkillsRepo(clone).resolve("word-count").source_commit == git(wt, "rev-parse", "HEAD").stdout.strip()
    # A worktree of a git repository that is no skills repository: one line, exit 1.
    plain, plain_wt = tmp_path / "plain", tmp_path / "plain-wt"
    assert git(tmp_path, "init", "-q", "-b", "main", str(plain)).returncode == 0
    assert git(plain, "commit", "-q", "--allow-empty", "-m", "start").returncode == 0
    assert git(plain, "worktree", "add", "-q", "-b", "other", str(plain_wt)).returncode == 0
    bad = evogit("list", "--repo", str(plain_wt))
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
    assert "is a git repository but not an evogit skills repository" in bad.stderr
    fsck_clean(small_rt.repo.path, hub, clone, plain)


@pytest.mark.slow
def test_evogit_pull_through_a_checked_out_branch_leaves_its_versions_to_the_pull(small_rt: Runtime, tmp_path: Path):
    """git runs post-merge inside `evogit pull` when the pull fast-forwards the checked-out branch: the hook leaves
    the versions that pull fetched (still in its quarantine) to it, and the pull takes them under its trust policy."""
    origin, clone = small_rt.repo.path, tmp_path / "clone"
    assert git(tmp_path, "clone", "-q", str(origin), str(clone)).returncode == 0
    assert evogit("init", "--no-starter", str(clone)).returncode == 0
    assert git(clone, "config", "remote.origin.evogitTrust", "hash").returncode == 0  # a hub you control
    assert git(clone, "checkout", "-q", "tools/word-count").returncode == 0
    assert git(origin, "checkout", "-q", "tools/word-count").returncode == 0
    say_json_string(origin)
    done = git(origin, "commit", "-qam", "Say JSON string\n\nEvogit-Supersedes: text-not-string: says JSON string")
    assert "evogit: ok    word-count@" in done.stderr, done.stderr
    new = SkillsRepo(origin).resolve("word-count")
    pulled = evogit("pull", "--repo", str(clone))
    assert pulled.returncode == 0, pulled.stderr
    here = SkillsRepo(clone)
    assert here.resolve("word-count") == new and git(clone, "rev-parse", "HEAD").stdout.strip() == new.source_commit
    assert not (here.state_dir / "builds" / f"{new.source_commit}.json").exists()  # taken on its hash: built nowhere
    fsck_clean(origin, clone)
