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
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pygit2
from pygit2.enums import FileMode

from . import proc, signing
from .atomic import write_atomic
from .errors import EvogitError, InvalidInput, InvalidName
from .log import MARK_BYTES, LogCorrupted, _decode_chunks, _scan, readable, warn
from .manifest import check_name
from .projections import Claims
from .repo import BRANCH_PREFIX, TAG_PREFIX, SkillsRepo
from .verify import Rebuild, Verdict, check, trust_policy, weakening

LOGS = "refs/evogit/logs/"
REMOTE_LOGS = "refs/evogit/remotes/"
QUARANTINE = "refs/evogit/quarantine/"
PUSHED = QUARANTINE + "pushed/"  # tags pushed to this repository (a hub), until its post-receive checks them
_LOG_REF = re.compile(r"^refs/evogit/(?:remotes/[^/]+/)?logs/[^/]+\Z")
_SEGMENT = re.compile(r"^(\d{16})-(\d{16})\.log\Z")
_WRITER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_BEHIND = re.compile(r"\[rejected\] \((fetch first|non-fast-forward)\)")
_LOCKED = re.compile(r"cannot lock ref|failed to lock|Unable to create '[^']*\.lock'")


class WriterConflict(EvogitError):
    """Another machine publishes its log under this machine's writer id."""


class PublishedLogLost(EvogitError):
    """This machine's log file no longer holds what it published into git (cut short or replaced)."""


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
    segments = _segments(git[current.target]) if current is not None else []
    if current is not None:
        _check_ours(git, path, ref, mark, writer, str(current.target), segments)
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
    oid = signing.create_commit(git, signing.signing_key(git.config), sig, sig, message, tree.write(),
                                [current.target] if current else [])
    if current is None:
        git.references.create(ref, oid, force=False)
    else:
        current.set_target(oid)
    _write_marker(mark, str(oid), path, start + whole)
    return str(oid)


def _write_marker(mark: Path, oid: str, path: Path, end: int) -> None:
    """`published-<writer>`: the commit last published, and the crc32 of the log's bytes just before its end
    (so the next publish checks that the log still holds what was published with one small read)."""
    write_atomic(mark, f"{oid} {_tail_crc(path, end)}".encode())


def _read_marker(mark: Path) -> tuple[str, int | None] | None:
    """(commit, tail crc or None for a marker of an older evogit); None if missing; ("", None) if unreadable."""
    try:
        parts = mark.read_bytes().decode("ascii").split()
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "", None
    if len(parts) in (1, 2) and re.fullmatch(r"[0-9a-f]{40}", parts[0]) and (len(parts) == 1 or parts[1].isdigit()):
        return parts[0], int(parts[1]) if len(parts) == 2 else None
    return "", None


def _tail_crc(path: Path, end: int) -> int:
    n = min(end, MARK_BYTES)
    try:
        with open(path, "rb") as f:
            f.seek(end - n)
            tail = f.read(n)
    except OSError:
        tail = b""
    return zlib.crc32(tail) if len(tail) == n else -1


def _holds(git: pygit2.Repository, path: Path, seg: _Segment) -> bool:
    """Whether the log file has exactly the segment's bytes at the segment's offset."""
    try:
        with open(path, "rb") as f:
            f.seek(seg.start)
            mine = f.read(seg.end - seg.start)
    except OSError:
        return False
    return mine == git[seg.oid].peel(pygit2.Blob).data


def _check_ours(git: pygit2.Repository, path: Path, ref: str, mark: Path, writer: str, target: str,
                segments: list[_Segment]) -> None:
    """The log in `ref` is this machine's iff its segments are a prefix of this log file: the marker says so
    when it names `ref`'s commit (and the log still ends the same way there); a missing or unreadable marker,
    or one naming another commit, is re-derived from content (the last segment's bytes at its offset)."""
    marker = _read_marker(mark)
    end = segments[-1].end if segments else 0
    if marker is not None and marker[0] == target and marker[1] is not None:
        if _tail_crc(path, end) == marker[1]:
            return
    elif not segments or _holds(git, path, segments[-1]):
        if marker is not None and marker[0] != target:
            warn(f"{mark} was unreadable or out of date: re-derived from {ref} (its log is this one's prefix)")
        _write_marker(mark, target, path, end)
        return
    size = path.stat().st_size if path.exists() else 0
    if marker is not None and marker[0] == target:  # ours by the marker, but the file lost it
        raise PublishedLogLost(
            f"{path} no longer holds the {end} bytes this machine published into {ref} (it has {size} bytes"
            f"{'' if size < end else ', and they differ'}): it was cut short or replaced; "
            f"`evogit replay --repair` restores the published part from git")
    raise WriterConflict(f"{ref} holds a log that is not a prefix of {path.name} ({end} bytes published, {size} "
                         f"here): another repository publishes under writer id {writer!r} (give this one its "
                         f"own id: git config evogit.writer), or this log was replaced")


def _published(git: pygit2.Repository, name: str) -> bytes:
    """The bytes of the log in ref `name` from offset 0, as long as its segments are contiguous and readable."""
    ref = git.references.get(name)
    out = b""
    for seg in _segments(git[ref.target]) if ref is not None else []:
        if seg.start != len(out):
            break
        data = git[seg.oid].peel(pygit2.Blob).data
        if len(data) != seg.end - seg.start or readable(data)[1]:
            break
        out += data
    return out


def repair_logs(repo: SkillsRepo, log_dir: Path, writer: str) -> list[str]:
    """`evogit replay --repair`: rewrite every damaged log file from what can still be read, and return one
    line per file repaired. The new file is the log as published in git (this machine's own ref if its
    marker says so, else the longest copy fetched of another writer's), then every whole, checksummed
    event of the file after that; the damaged file is kept next to it as `<name>.log.damaged`. A file is
    damaged if it has unreadable bytes, or does not begin with the log in git; an event already in that log
    (the same bytes) is not copied twice."""
    reports = []
    git = repo.git
    with open(repo.state_dir / "publish.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path in sorted(log_dir.glob("*.log")):
            name = path.stem
            if name == writer:
                marker = _read_marker(repo.state_dir / f"published-{writer}")
                ref = git.references.get(LOGS + writer)
                ours = ref is not None and marker is not None and marker[0] == str(ref.target)
                base = _published(git, LOGS + writer) if ours else b""
            else:
                copies = [_published(git, r) for r in git.references
                          if _LOG_REF.match(r) and r.endswith(f"/logs/{name}")]
                base = max(copies, key=len, default=b"")
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # no append lands in the file being replaced
                data = path.read_bytes()
                kept, lost = readable(data)
                if not lost and data[:len(base)] == base:
                    continue
                known = {hashlib.blake2b(base[a:b]).digest() for a, b in readable(base)[0]}
                new = base + b"".join(data[a:b] for a, b in kept if hashlib.blake2b(data[a:b]).digest() not in known)
                aside = path.with_name(path.name + ".damaged")
                n = 1
                while aside.exists():
                    n += 1
                    aside = path.with_name(f"{path.name}.damaged.{n}")
                os.link(path, aside)
                write_atomic(path, new)
            finally:
                os.close(fd)
            (log_dir / f"{name}.ok").unlink(missing_ok=True)  # the next open verifies the new file
            records = len(readable(new)[0])
            dropped = sum(b - a for a, b in lost)
            reports.append(f"{path}: rewritten with {records} events ({len(base)} bytes from git); "
                           f"{dropped} unreadable bytes dropped; the damaged file is kept as {aside.name}")
    return reports


def import_logs(repo: SkillsRepo, log_dir: Path, writer: str) -> tuple[dict[str, int], dict[str, str]]:
    """Copy the segments of every other writer's log found in git (`refs/evogit/**/logs/<writer>`) that are
    not yet in `<writer>.log`; returns bytes added per writer, and the refs refused (a segment that is not
    whole, decodable events, or a gap) with why: nothing of those is copied. A ref that has not moved since
    the last import, with its copy the size that import left, is skipped without reading anything."""
    seen_file = repo.state_dir / "imported.json"
    seen: dict[str, str] = {}
    changed = False
    try:
        seen = json.loads(seen_file.read_bytes())
        if not isinstance(seen, dict) or not all(isinstance(v, str) for v in seen.values()):
            raise ValueError("not an object of strings")
    except FileNotFoundError:
        seen = {}
    except (OSError, ValueError):  # a cache of what was imported: without it every log is checked again
        warn(f"{seen_file} was unreadable: treated as missing (every fetched log is checked again)")
        seen, changed = {}, True
    added: dict[str, int] = {}
    problems: dict[str, str] = {}
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


def signed_writers(repo: SkillsRepo, writer: str) -> frozenset[str]:
    """The other writers whose logs are signed, every commit of every ref of theirs, by a key the allowed-signers
    file (`gpg.ssh.allowedSignersFile`) lists for the principal named like the writer: their evidence counts here
    (projections.Trust). Empty without an allowed-signers file. Only commits not checked before are verified
    (`signed.json` remembers each ref's tip and verdict, for one allowed-signers file's content): with no ref
    moved it costs no ssh-keygen run."""
    allowed = signing.allowed_signers(repo.git.config)
    if allowed is None:
        return frozenset()
    try:
        who = hashlib.sha256(allowed.read_bytes()).hexdigest()
    except OSError:
        return frozenset()
    cache_file = repo.state_dir / "signed.json"
    try:
        cache = json.loads(cache_file.read_bytes())
        if not isinstance(cache, dict) or cache.get("allowed") != who or not isinstance(cache.get("refs"), dict):
            raise ValueError("another allowed-signers file")
    except (OSError, ValueError):
        cache = {"allowed": who, "refs": {}}
    refs: dict[str, list[Any]] = cache["refs"]
    verdicts: dict[str, bool] = {}
    changed = False
    for name in repo.git.references:
        if not _LOG_REF.match(name):
            continue
        other = name.rsplit("/", 1)[1]
        ref = repo.git.references.get(name)
        if other == writer or not _WRITER.match(other) or ref is None:
            continue
        tip = str(ref.target)
        known = refs.get(name)
        if not (isinstance(known, list) and len(known) == 2 and known[0] == tip):
            since = known[0] if isinstance(known, list) and len(known) == 2 and known[1] is True else None
            refs[name], changed = [tip, _all_signed(repo.git, tip, since, other, allowed)], True
        verdicts[other] = verdicts.get(other, True) and refs[name][1] is True
    if changed:
        write_atomic(cache_file, json.dumps(cache, indent=1, sort_keys=True).encode())
    return frozenset(w for w, ok in verdicts.items() if ok)


def _all_signed(git: pygit2.Repository, tip: str, since: str | None, principal: str, allowed: Path) -> bool:
    """Whether every commit from `tip` back (to `since`, a tip already found signed, if it is an ancestor) is
    signed by `principal`'s key."""
    try:
        walker = git.walk(tip)
        if since is not None and since in git and git.descendant_of(tip, since):
            walker.hide(since)
        return all(principal in signing.commit_signers(git, c, allowed) for c in walker)
    except (KeyError, ValueError, pygit2.GitError):
        return False


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
    trusted: list[str] = field(default_factory=list)  # writers whose events arrived and count here (evogit.trustWriter)
    claims: dict[str, Claims] = field(default_factory=dict)  # writers whose events arrived, not trusted: all they claim
    invalid: dict[str, int] = field(default_factory=dict)  # writer -> its events skipped as invalid, all told


def _git(repo: SkillsRepo, *args: str) -> str:
    """Run the git command line in the repository (through proc.run: it dies with evogit, in its own process
    group); a failure becomes one line: git's own reason."""
    exe = shutil.which("git")
    if exe is None:
        raise EvogitError("git is not installed (push and pull use the git command line)")
    try:
        done = proc.run([exe, "-C", str(repo.path), *args])
    except OSError as e:
        raise EvogitError(f"git {args[0]} could not start: {e}") from None
    out = (done.stdout + done.stderr).decode("utf-8", "replace")
    if done.returncode != 0:
        text = (done.stderr + done.stdout).decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reasons = [line for line in lines if line.startswith(("fatal:", "error:", "!"))] or lines or ["(no output)"]
        raise EvogitError(f"git {args[0]} failed: " + "; ".join(dict.fromkeys(reasons[:3])))
    return out


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
        if any(_BEHIND.search(part) and f"{LOGS}{writer}" in part for part in str(e).split("; ")):  # not ours
            raise EvogitError(
                f"{remote} refused this machine's log {LOGS}{writer}: it already holds a log under the writer id "
                f"{writer!r} that this repository did not write (another machine with the same id, or someone "
                f"squatting it). Choose another id (git config evogit.writer NEW-ID) and push again; sign your log "
                "(git config gpg.format ssh, user.signingkey) so that pullers can tell yours from a squatter's"
            ) from None
        if _BEHIND.search(str(e)):  # only then is pulling the remedy; any other refusal is shown as git says it
            raise EvogitError(f"{e} (the remote has commits this repository lacks: `evogit pull {remote}`, "
                              f"merge any diverged tool with git, then push again)") from None
        if _LOCKED.search(str(e)):
            raise EvogitError(f"{e} (another push to {remote} is updating the same refs, or one that was "
                              f"killed there left a lock file: try again once it has finished)") from None
        raise
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
        base = local.target if local is not None and git.descendant_of(theirs, local.target) else None
        if (local is None or base is not None) and (why := weakening(git, theirs, base)) is not None:
            report.refused[ref_name] = f"{why}; not taken (its cases are its contract)"
            continue
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
