"""Building and committing: source versions onto tool branches, builds into version tags, each recorded in the
log (VersionCommitted, BuildSucceeded, BuildFailed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pygit2

from .. import events as ev
from ..build import Builder, BuildRecord
from ..errors import BuildFailed, ToolExists
from ..manifest import check_name, manifest_json, parse_manifest
from ..repo import BRANCH_PREFIX, SkillsRepo, branch_ref
from .results import BuildOutcome
from .state import LocalState

Progress = Callable[[str, int, int, "BuildOutcome | None"], None]


class Building:
    """Commits source versions and builds them, through one Builder."""

    def __init__(self, repo: SkillsRepo, builder: Builder, state: LocalState):
        self.repo, self.builder, self.state = repo, builder, state

    def import_tools(self, source: Path, progress: Progress | None = None) -> list[BuildOutcome]:
        """Import each `source/<name>/` as the first commit of tools/<name> (if new) and build it."""
        dirs = sorted(d for d in Path(source).iterdir() if (d / "tool.json").is_file())
        outcomes = []
        for i, d in enumerate(dirs):
            if progress:
                progress(d.name, i, len(dirs), None)
            files = {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
                     if p.is_file() and "target" not in p.relative_to(d).parts}
            manifest = parse_manifest(files["tool.json"])
            if f"{BRANCH_PREFIX}{manifest.name}" not in self.repo.git.references:
                message = f"Add {manifest.name}\n\n{manifest.description}\n\nEvogit-Source: starter library\n"
                self.record_commit(manifest.name, self.repo.commit_version(manifest.name, files, message), message)
            outcome = self.build_one(self.repo.head(manifest.name), manifest.name)
            outcomes.append(outcome)
            if progress:
                progress(d.name, i + 1, len(dirs), outcome)
        return outcomes

    def build(self, revs: list[str] | None = None, *, force: bool = False,
              progress: Progress | None = None) -> list[BuildOutcome]:
        """Build tool heads (`name`), or any commits (`rev`); no revs = every tool's head."""
        targets: list[tuple[pygit2.Commit, str | None]] = []
        for rev in revs or self.repo.tools():
            if _is_branch(self.repo, rev):
                targets.append((self.repo.head(rev), rev))
            else:
                targets.append((self.repo.commit(rev), None))
        outcomes = []
        for i, (commit, branch) in enumerate(targets):
            label = branch or str(commit.id)[:10]
            if progress:
                progress(label, i, len(targets), None)
            outcome = self.build_one(commit, branch, force=force)
            outcomes.append(outcome)
            if progress:
                progress(label, i + 1, len(targets), outcome)
        return outcomes

    def build_one(self, commit: pygit2.Commit, branch: str | None, *, force: bool = False) -> BuildOutcome:
        try:
            version = self.builder.build(commit, branch, force=force)
            outcome = BuildOutcome(version.name, str(commit.id), version=version)
            record = self.builder.last_record(commit)
            self.state.log.append([ev.BuildSucceeded(
                tool=version.name, commit=str(commit.id), fingerprint=version.fingerprint,
                unit_tests=record.unit_tests.get("passed", 0) if record else 0,
                cases=len(record.cases) if record else 0,
                id=ev.fact_id("build", str(commit.id), version.fingerprint))])
        except BuildFailed as e:
            record = e.record if isinstance(e.record, BuildRecord) else None
            outcome = BuildOutcome(record.tool if record else (branch or "?"), str(commit.id), record=record,
                                   error=str(e))
            self.state.log.append([ev.BuildFailed(
                tool=outcome.tool, commit=str(commit.id), stage=(record.stage or "") if record else "",
                message=(record.message or "") if record else str(e),
                id=ev.fact_id("build-failed", str(commit.id), (record.message or "") if record else str(e)))])
        return outcome

    def committed_and_built(self, name: str, commit: str, message: str) -> BuildOutcome:
        """Record a source commit made for `name` elsewhere (the authoring loop) and build it."""
        self.record_commit(name, commit, message)
        return self.build_one(self.repo.commit(commit), name)

    def record_commit(self, name: str, commit: str, message: str) -> str:
        self.state.log.append([ev.VersionCommitted(tool=name, commit=commit, message=message.splitlines()[0],
                                          id=ev.fact_id("commit", name, commit))])
        return commit

    def fork(self, spec: str, new_name: str, description: str | None = None) -> BuildOutcome:
        """Start tools/<new_name> at a version's source commit, rename it there, and build it."""
        check_name(new_name)
        v = self.repo.resolve(spec)
        if branch_ref(new_name) in self.repo.git.references:
            raise ToolExists(f"a tool named {new_name!r} already exists")
        source = self.repo.commit(v.source_commit)
        files, _ = self.repo.files(source.tree)
        manifest = parse_manifest(files["tool.json"])
        manifest.name = new_name
        if description:
            manifest.description = description
        files["tool.json"] = manifest_json(manifest)
        self.repo.create_branch(new_name, v.source_commit)
        message = (f"Fork {new_name} from {v.short}\n\n"
                   f"Evogit-Parent: {v.name}@{v.fingerprint}\n")
        commit = self.record_commit(new_name, self.repo.commit_version(new_name, files, message), message)
        return self.build_one(self.repo.commit(commit), new_name)

    def commit(self, name: str, files: dict[str, bytes], message: str, *, build: bool = True) -> BuildOutcome:
        """Commit a new source version of `name` (as evogit's own commits do) and build it."""
        oid = self.record_commit(name, self.repo.commit_version(name, files, message), message)
        if not build:
            return BuildOutcome(name, oid)
        return self.build_one(self.repo.commit(oid), name)



def _is_branch(repo: SkillsRepo, name: str) -> bool:
    try:
        return f"{BRANCH_PREFIX}{name}" in repo.git.references
    except ValueError:  # not a valid ref name (too long, odd characters): no tool has it
        return False
