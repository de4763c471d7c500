"""Hooks: a plain `git commit` on a tool branch builds and tags the new version; foreign hooks survive."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from evogit import hooks
from evogit.repo import SkillsRepo
from evogit.runtime import Runtime

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "Ann", "GIT_AUTHOR_EMAIL": "ann@example.org",
           "GIT_COMMITTER_NAME": "Ann", "GIT_COMMITTER_EMAIL": "ann@example.org"}


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True)


@pytest.mark.slow
def test_plain_git_commit_builds_and_tags(small_rt: Runtime):
    repo_dir = small_rt.repo.path
    before = small_rt.repo.resolve("word-count")
    assert git(repo_dir, "checkout", "-q", "tools/word-count").returncode == 0
    main_rs = repo_dir / "src" / "main.rs"
    main_rs.write_text(main_rs.read_text().replace('"\\"text\\" must be a string"', '"\\"text\\" must be a JSON string"'))
    cases = repo_dir / "tests" / "cases.jsonl"
    cases.write_text(cases.read_text().replace('must be a string', 'must be a JSON string'))
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
