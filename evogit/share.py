"""Sharing a skills repository between machines with plain git: tool branches, version tags and event logs.

Each machine (writer) appends only to its own log file. To travel, the log is published into git as a chain
of commits on `refs/evogit/logs/<writer>`: each publish adds one segment, a blob of the whole records
appended since the previous one, named by its byte range (`0000000000001234-0000000000005678.log`). Fetched logs
(`refs/evogit/remotes/<remote>/logs/<writer>`, or pushed ones on a shared server) are copied segment by
segment into `<writer>.log` next to this machine's own file; the log reader merges every file and the
projections de-duplicate facts by event id, so a log arriving twice or by two routes counts once.

`push` and `pull` drive the `git` CLI (remotes, ssh and credentials work as they do for git):

    push: publish this writer's log, then push tools/*, the version tags and refs/evogit/logs/<writer>
    pull: fetch them into remote-tracking refs and the version tags into a quarantine
          (refs/evogit/quarantine/remotes/<remote>/tags/tools/*), fast-forward local tool branches (never rewrite
          one), accept each tag that passes verify.py's checks (and, under trust `rebuild`, rebuilds here to the
          same build commit) into refs/tags, import the logs; the caller then builds what moved

A refused tag is reported once, with why, and remembered by name and target in .git/evogit/refused-tags.json,
so later pulls do not check it again (a tag whose target changes is checked again). A hub's post-receive puts
pushed tags through the same quarantine (`quarantine_pushed`, then `accept_tags`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import msgspec
import pygit2
from pygit2.enums import FileMode

from .atomic import write_atomic
from .errors import EvogitError, InvalidInput, InvalidName
from .log import LogCorrupted, _decode_chunks, _scan
from .manifest import check_name
from .repo import BRANCH_PREFIX, TAG_PREFIX, SkillsRepo
from .verify import Rebuild, Verdict, check, trust_policy

LOGS = "refs/evogit/logs/"
REMOTE_LOGS = "refs/evogit/remotes/"
QUARANTINE = "refs/evogit/quarantine/"
PUSHED = QUARANTINE + "pushed/"  # tags pushed to this repository (a hub), until its post-receive checks them
_LOG_REF = re.compile(r"^refs/evogit/(?:remotes/[^/]+/)?logs/[^/]+$")
_SEGMENT = re.compile(r"^(\d{16})-(\d{16})\.log$")
_WRITER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class WriterConflict(EvogitError):
    """Another machine publishes its log under this machine's writer id."""


class _Segment(NamedTuple):
    start: int
    end: int
    oid: pygit2.Oid  # the blob; read only when copied (a log can be hundreds of MB)


def _segments(commit: pygit2.Object | None) -> list[_Segment]:
    if commit is None:
        return []
    out = []
    for entry in commit.peel(pygit2.Commit).tree:
        m = _SEGMENT.match(entry.name or "")
        if m and entry.type_str == "blob" and int(m.group(1)) < int(m.group(2)):
            out.append(_Segment(int(m.group(1)), int(m.group(2)), entry.id))
    return sorted(out)


def publish_log(repo: SkillsRepo, log_dir: Path, writer: str) -> str | None:
    """Commit this writer's unpublished records to refs/evogit/logs/<writer>; returns the new commit id,
    or None when there was nothing new."""
    if not _WRITER.match(writer):
        raise InvalidInput(f"writer id {writer!r} cannot name a git ref (set git config evogit.writer)")
    mark = repo.state_dir / f"published-{writer}"
    with open(repo.state_dir / "publish.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one publisher at a time per repository
        return _publish(repo, log_dir / f"{writer}.log", LOGS + writer, mark, writer)


def _publish(repo: SkillsRepo, path: Path, ref: str, mark: Path, writer: str) -> str | None:
    git = repo.git
    current = git.references.get(ref)
    last_mine = mark.read_text().strip() if mark.exists() else ""
    if current is not None and str(current.target) != last_mine:
        raise WriterConflict(f"{ref} was written by another machine with writer id {writer!r}; "
                             f"give this repository its own id (git config evogit.writer) before publishing")
    segments = _segments(git[current.target] if current is not None else None)
    start = segments[-1].end if segments else 0
    with open(path, "rb") if path.exists() else open(os.devnull, "rb") as f:
        f.seek(start)
        data = f.read()
    whole = _scan(data)
    if whole == 0:
        return None
    tree = git.TreeBuilder(git[current.target].peel(pygit2.Commit).tree) if current else git.TreeBuilder()
    tree.insert(f"{start:016d}-{start + whole:016d}.log", git.create_blob(data[:whole]), FileMode.BLOB)
    sig = pygit2.Signature("evogit", "evogit@evogit.invalid")
    message = f"Log of {writer}: bytes {start}..{start + whole}\n"
    oid = git.create_commit(None, sig, sig, message, tree.write(), [current.target] if current else [])
    if current is None:
        git.references.create(ref, oid, force=False)
    else:
        current.set_target(oid)
    write_atomic(mark, str(oid).encode())
    return str(oid)


def import_logs(repo: SkillsRepo, log_dir: Path, writer: str) -> tuple[dict[str, int], dict[str, str]]:
    """Copy the segments of every other writer's log found in git (`refs/evogit/**/logs/<writer>`) that are
    not yet in `<writer>.log`; returns bytes added per writer, and the refs refused (a segment that is not
    whole, decodable events, or a gap) with why: nothing of those is copied. A ref that has not moved since
    the last import, with its copy the size that import left, is skipped without reading anything."""
    seen_file = repo.state_dir / "imported.json"
    try:
        seen: dict[str, str] = json.loads(seen_file.read_text())
    except (OSError, ValueError):
        seen = {}
    added: dict[str, int] = {}
    problems: dict[str, str] = {}
    changed = False
    for name in repo.git.references:
        if not _LOG_REF.match(name):
            continue
        other = name.rsplit("/", 1)[1]
        ref = repo.git.references.get(name)
        if other == writer or not _WRITER.match(other) or ref is None:
            continue
        path = log_dir / f"{other}.log"
        size = path.stat().st_size if path.exists() else -1
        if seen.get(name) == f"{ref.target} {size}":
            continue
        try:
            n = _append_segments(repo.git, path, _segments(repo.git[ref.target]))
        except EvogitError as e:  # one bad log must not stop this repository from working
            problems[name] = str(e)
            continue
        if n:
            added[other] = added.get(other, 0) + n
        seen[name], changed = f"{ref.target} {path.stat().st_size}", True
    if changed:
        write_atomic(seen_file, json.dumps(seen, indent=1, sort_keys=True).encode())
    return added, problems


def _append_segments(git: pygit2.Repository, path: Path, segments: list[_Segment]) -> int:
    if not segments:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        bounds = {seg.start for seg in segments} | {segments[-1].end}
        if size not in bounds:  # an import was cut short mid-segment: go back to the last whole one
            size = max((b for b in bounds if b <= size), default=0)
            os.ftruncate(fd, size)
        added = 0
        for seg in segments:
            if seg.start < size:
                continue
            if seg.start > size:
                raise EvogitError(f"{path.stem}: the log in git skips bytes {size}..{seg.start}")
            data = git[seg.oid].peel(pygit2.Blob).data
            try:
                # every record must be whole, checksummed and an event before any is copied
                end = max((e for e, _ in _decode_chunks(data, path, seg.start)), default=seg.start)
                if end != seg.end or len(data) != seg.end - seg.start:
                    raise ValueError(f"whole records end at byte {end}, the segment says {seg.end}")
            except (ValueError, LogCorrupted, msgspec.MsgspecError) as e:
                raise EvogitError(f"{path.stem}: segment at byte {seg.start} is not a valid log: {e}") from None
            os.lseek(fd, size, os.SEEK_SET)
            os.write(fd, data)
            size += len(data)
            added += len(data)
        if added:
            os.fsync(fd)
        return added
    finally:
        os.close(fd)


# -- push and pull -------------------------------------------------------------------------------------------
@dataclass
class PullReport:
    created: list[str] = field(default_factory=list)
    fast_forwarded: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)  # left alone: merge with git, the hook builds the merge
    logs: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # log refs not imported, branches not taken, and why
    accepted_tags: list[str] = field(default_factory=list)  # version tags (tools/<name>/<fp>) new here
    refused_tags: dict[str, str] = field(default_factory=dict)  # version tags refused by this pull, and why


def _git(repo: SkillsRepo, *args: str) -> str:
    """Run the git command line in the repository; a failure becomes one line: git's own reason."""
    exe = shutil.which("git")
    if exe is None:
        raise EvogitError("git is not installed (push and pull use the git command line)")
    proc = subprocess.run([exe, "-C", str(repo.path), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        reasons = [line for line in lines if line.startswith(("fatal:", "error:", "!"))] or lines or ["(no output)"]
        raise EvogitError(f"git {args[0]} failed: " + "; ".join(dict.fromkeys(reasons[:3])))
    return proc.stdout + proc.stderr


def _where(repo: SkillsRepo, remote: str) -> str:
    """A remote name as it is; a local path made absolute (git runs inside the repository)."""
    if remote in repo.git.remotes.names() or "://" in remote or not Path(remote).exists():
        return remote
    return str(Path(remote).resolve())


def _remote_name(repo: SkillsRepo, remote: str) -> str:
    """A name for remote-tracking refs: the remote's own name, or `<last path part>-<hash of the URL>`."""
    if remote in repo.git.remotes.names():
        return remote
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", remote.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    return f"{base.strip('-.')[:40] or 'remote'}-{hashlib.sha1(remote.encode()).hexdigest()[:6]}"


def push(repo: SkillsRepo, log_dir: Path, writer: str, remote: str) -> list[str]:
    """Publish the log, push tool branches, version tags and the log ref; returns the remote refs updated."""
    remote = _where(repo, remote)
    publish_log(repo, log_dir, writer)
    specs = [f"{BRANCH_PREFIX}*:{BRANCH_PREFIX}*", "refs/tags/tools/*:refs/tags/tools/*"]
    if repo.git.references.get(LOGS + writer) is not None:
        specs.append(f"{LOGS}{writer}:{LOGS}{writer}")
    try:
        out = _git(repo, "push", "--porcelain", remote, *specs)
    except EvogitError as e:
        if "rejected" not in str(e):
            raise
        raise EvogitError(f"{e} (the remote has commits this repository lacks: `evogit pull {remote}`, "
                          f"merge any diverged tool with git, then push again)") from None
    # porcelain: "<flag>\t<from>:<to>\t<summary>"; "=" is up to date, "!" rejected
    return [line.split("\t")[1].split(":")[1] for line in out.splitlines()
            if len(line) > 1 and line[0] in "*+ -" and line[1] == "\t"]


def pull(repo: SkillsRepo, log_dir: Path, writer: str, remote: str, rebuild: Rebuild) -> PullReport:
    """Fetch, fast-forward tool branches, accept the version tags that pass the checks of the remote's trust
    policy (`rebuild` builds a source commit here, see verify.py), import the logs."""
    remote = _where(repo, remote)
    name = _remote_name(repo, remote)
    trust = trust_policy(repo.git.config, name if name == remote else None)
    tracking = f"refs/remotes/{name}/tools/"
    quarantine = f"{QUARANTINE}remotes/{name}/"
    _git(repo, "fetch", "--no-tags", remote,
         f"+{BRANCH_PREFIX}*:{tracking}*",
         f"+{TAG_PREFIX}*:{quarantine}tags/tools/*",
         f"+{LOGS}*:{REMOTE_LOGS}{name}/logs/*")
    report = PullReport()
    git = repo.git
    for ref_name in sorted(r for r in git.references if r.startswith(tracking)):
        tool = ref_name[len(tracking):]
        theirs = git.references[ref_name].target
        try:
            check_name(tool)
        except InvalidName:
            report.refused[ref_name] = "not a valid tool name; left alone"
            continue
        if not isinstance(git.get(theirs), pygit2.Commit):
            report.refused[ref_name] = "does not point at a commit; left alone"
            continue
        local = git.references.get(BRANCH_PREFIX + tool)
        if local is None:
            git.references.create(BRANCH_PREFIX + tool, theirs, force=False)
            report.created.append(tool)
        elif local.target == theirs or git.descendant_of(local.target, theirs):
            continue
        elif git.descendant_of(theirs, local.target):
            checked_out = not git.is_bare and not git.head_is_detached and git.head.name == BRANCH_PREFIX + tool
            if checked_out:  # move the work tree too; git refuses if that would lose local changes
                _git(repo, "merge", "--ff-only", "--quiet", str(theirs))
            else:
                local.set_target(theirs)
            report.fast_forwarded.append(tool)
        else:
            report.diverged.append(tool)
    report.accepted_tags, report.refused_tags, _ = accept_tags(repo, quarantine, trust, rebuild)
    report.logs, refused_logs = import_logs(repo, log_dir, writer)
    report.refused.update(refused_logs)
    return report


# -- version tags: quarantine, checks, acceptance ------------------------------------------------------------
def quarantine_pushed(repo: SkillsRepo, updates: list[tuple[str, str]]) -> None:
    """On a hub, move version tags just pushed (`(new oid, ref)` from post-receive) out of refs/tags into
    quarantine, before anything (a build that finds a tag for its source commit) can trust them."""
    git = repo.git
    for new, ref_name in updates:
        ref = git.references.get(ref_name) if ref_name.startswith(TAG_PREFIX) else None
        if ref is not None and str(ref.target) == new:
            git.references.create(PUSHED + ref_name[len("refs/"):], ref.target, force=True)
            ref.delete()


def accept_tags(repo: SkillsRepo, quarantine: str, trust: str,
                rebuild: Rebuild) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Move each version tag out of `<quarantine>tags/tools/` into refs/tags if it passes every check (and,
    under trust `rebuild`, rebuilds here to the same build commit); empties the quarantine. Returns the tags
    accepted, those refused now with why, and those refused before (remembered, not checked again)."""
    git = repo.git
    memory_file = repo.state_dir / "refused-tags.json"
    try:
        memory = json.loads(memory_file.read_text())
    except (OSError, ValueError):
        memory = {}
    memory = memory if isinstance(memory, dict) else {}
    accepted: list[str] = []
    refused: dict[str, str] = {}
    known: dict[str, str] = {}
    changed = False
    prefix = quarantine + "tags/"
    for ref_name in sorted(r for r in git.references if r.startswith(prefix)):
        ref = git.references.get(ref_name)
        if ref is None:
            continue
        tag, target = ref_name[len(prefix):], ref.target
        here = git.references.get("refs/tags/" + tag)
        seen = memory.get(tag)
        if here is not None and here.target == target:
            pass  # already ours
        elif (isinstance(seen, dict) and seen.get("target") == str(target)
                and (seen.get("stage") != "rebuild" or trust == "rebuild")):
            known[tag] = str(seen.get("reason", ""))
        else:
            if here is not None and check(git, tag, here.target).ok:
                verdict = Verdict(tag, stage="exists", reason=f"this repository's tag points at {str(here.target)[:10]}, "
                                                              f"this one at {str(target)[:10]}: tags never move")
            else:
                verdict = check(git, tag, target, tips=repo.tips, rebuild=rebuild if trust == "rebuild" else None)
            if verdict.ok:
                git.references.create("refs/tags/" + tag, target, force=True)  # a rebuild made it, or a broken one was here
                accepted.append(tag)
                changed = memory.pop(tag, None) is not None or changed
            else:
                refused[tag] = verdict.reason
                memory[tag] = {"target": str(target), "stage": verdict.stage, "reason": verdict.reason}
                changed = True
        ref.delete()  # only once decided: a pull killed mid-check leaves the rest for the next one
    if changed:
        write_atomic(memory_file, json.dumps(memory, indent=1, sort_keys=True).encode())
    return accepted, refused, known
