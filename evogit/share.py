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

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pygit2
from pygit2.enums import FileMode

from . import proc, signing
from .atomic import write_atomic
from .errors import EvogitError, InvalidInput, InvalidName, InvalidVersion
from .log import MARK_BYTES, LogCorrupted, _decode_chunks, _scan, own_writers, readable, warn
from .manifest import check_name
from .projections import Claims
from .repo import BRANCH_PREFIX, TAG_PREFIX, SkillsRepo, Version
from .verify import (
    TRUST,
    Rebuild,
    Verdict,
    cases_by_name,
    check,
    name_problem,
    signed_by_allowed,
    trust_policy,
    version_sources,
    weakening,
)

LOGS = "refs/evogit/logs/"
REMOTE_LOGS = "refs/evogit/remotes/"
QUARANTINE = "refs/evogit/quarantine/"
PACK_AFTER = 64  # accepting this many version tags at once packs the refs (`git pack-refs --all`)
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
    not yet in `<writer>.log` (never into this repository's own logs, under any id it wrote: log.own_writers); returns bytes added per writer, and the refs refused (a segment that is not
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
    own = own_writers(log_dir) | {writer}  # this repository's own logs, today's and any earlier id's, are its own
    for name in repo.git.references:
        if not _LOG_REF.match(name):
            continue
        other = name.rsplit("/", 1)[1]
        ref = repo.git.references.get(name)
        if other in own or not _WRITER.match(other) or ref is None:
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
    diverged: list[str] = field(default_factory=list)  # both sides advanced: see choose_head
    logs: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # log refs not imported, branches not taken, and why
    accepted_tags: list[str] = field(default_factory=list)  # version tags (tools/<name>/<fp>) new here
    refused_tags: dict[str, str] = field(default_factory=dict)  # version tags refused by this pull, and why
    unbuilt: dict[str, str] = field(default_factory=dict)  # tool -> why its head that arrived was not built here
    trusted: list[str] = field(default_factory=list)  # writers whose events arrived and count here (evogit.trustWriter)
    claims: dict[str, Claims] = field(default_factory=dict)  # writers whose events arrived, not trusted: all they claim
    invalid: dict[str, int] = field(default_factory=dict)  # writer -> its events skipped as invalid, all told
    unknown: dict[str, int] = field(default_factory=dict)  # writer -> its events of types unknown here, skipped
    heads: dict[str, str] = field(default_factory=dict)  # diverged tool -> the version its branch is at now (rule)


def _run_git(repo: SkillsRepo, *args: str) -> proc.Completed:
    """Run the git command line in the repository (through proc.run: it dies with evogit, in its own process
    group), whatever its exit status."""
    exe = shutil.which("git")
    if exe is None:
        raise EvogitError("git is not installed (push and pull use the git command line)")
    try:
        return proc.run([exe, "-C", str(repo.path), *args])
    except OSError as e:
        raise EvogitError(f"git {args[0]} could not start: {e}") from None


def _git(repo: SkillsRepo, *args: str) -> str:
    """Run the git command line in the repository; a failure becomes one line: git's own reason."""
    done = _run_git(repo, *args)
    out = (done.stdout + done.stderr).decode("utf-8", "replace")
    if done.returncode != 0:
        text = (done.stderr + done.stdout).decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reasons = [line for line in lines if line.startswith(("fatal:", "error:", "!"))] or lines or ["(no output)"]
        raise EvogitError(f"git {args[0]} failed: " + "; ".join(dict.fromkeys(reasons[:3])))
    return out


def default_remote(repo: SkillsRepo) -> str:
    """The remote a push or pull without one uses, as git chooses it: the checked-out branch's upstream
    (branch.<name>.remote), else `origin`, else the only remote there is."""
    git, names = repo.git, [n for n in repo.git.remotes.names() if n]
    if not git.head_is_unborn and not git.head_is_detached:
        branch = git.head.shorthand
        key = f"branch.{branch}.remote"
        if key in git.config and (upstream := str(git.config[key])) and upstream != ".":
            return upstream
    if "origin" in names:
        return "origin"
    if len(names) == 1:
        return names[0]
    if not names:
        raise InvalidInput("no remote given and this repository has none: `evogit remote add NAME URL`, or give "
                           "the remote (a path or URL) on the command line")
    raise InvalidInput(f"no remote given and no upstream set: choose one of {', '.join(sorted(names))}")


class RemoteInfo(msgspec.Struct):
    name: str
    url: str
    trust: str  # the trust policy for what is pulled from it (remote.<name>.evogitTrust, else evogit.trust)


def remotes(repo: SkillsRepo) -> list[RemoteInfo]:
    return [RemoteInfo(r.name, r.url or "", trust_policy(repo.git.config, r.name))
            for r in sorted(repo.git.remotes, key=lambda r: r.name or "") if r.name]


def add_remote(repo: SkillsRepo, name: str, url: str, trust: str | None = None) -> RemoteInfo:
    """`git remote add NAME URL` (a relative path made absolute), with its trust policy if given."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise InvalidInput(f"{name[:80]!r} is not a remote name (letters, digits, . _ -; at most 64)")
    if name in repo.git.remotes.names():
        raise InvalidInput(f"a remote named {name!r} already exists (`evogit remote remove {name}` first)")
    if trust is not None and trust not in TRUST:
        raise InvalidInput(f"trust policy {trust!r}: use {' or '.join(TRUST)}")
    url = url if "://" in url or not Path(url).exists() else str(Path(url).resolve())
    if not url.strip() or url.startswith("-"):
        raise InvalidInput(f"{url[:80]!r} is not a remote URL or path")
    repo.git.remotes.create(name, url)
    if trust is not None:
        repo.git.config[f"remote.{name}.evogitTrust"] = trust
    return RemoteInfo(name, url, trust_policy(repo.git.config, name))


def remove_remote(repo: SkillsRepo, name: str) -> None:
    """`git remote remove NAME`, and every ref evogit kept for it (tracking branches, fetched logs, quarantine).
    What its logs brought stays in this machine's log: events are facts, and replay keeps them."""
    if name not in repo.git.remotes.names():
        raise InvalidInput(f"no remote named {name[:80]!r} (`evogit remote list`)")
    repo.git.remotes.delete(name)
    for prefix in (f"refs/remotes/{name}/", f"{REMOTE_LOGS}{name}/", f"{QUARANTINE}remotes/{name}/"):
        for ref in [r.name for r in repo.git.references.iterator() if r.name.startswith(prefix)]:
            repo.git.references.delete(ref)


def clone(url: str, path: Path) -> None:
    """`git clone --no-tags URL PATH` with the user's git (credentials, ssh, configuration): the tool branches
    arrive as origin's tracking refs, and no tag is taken before evogit's pull has checked it."""
    exe = shutil.which("git")
    if exe is None:
        raise EvogitError("git is not installed (clone uses the git command line)")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidInput(f"{path} already exists and is not an empty directory")
    source = url if "://" in url or not Path(url).exists() else str(Path(url).resolve())
    try:
        done = proc.run([exe, "clone", "--no-tags", "--quiet", "--", source, str(path)])
    except OSError as e:
        raise EvogitError(f"git clone could not start: {e}") from None
    if done.returncode != 0:
        text = (done.stderr + done.stdout).decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reasons = [line for line in lines if line.startswith(("fatal:", "error:"))] or lines or ["(no output)"]
        raise EvogitError("git clone failed: " + "; ".join(dict.fromkeys(reasons[:3])))


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


@dataclass
class PushReport:
    updated: list[str] = field(default_factory=list)  # remote refs this push updated
    skipped: dict[str, str] = field(default_factory=dict)  # local refs not pushed: they fail the local checks, why
    refused: dict[str, str] = field(default_factory=dict)  # refs the remote refused, and git's reason


def push(repo: SkillsRepo, log_dir: Path, writer: str, remote: str) -> PushReport:
    """Publish the log; push every tool branch and version tag that passes the local checks (each other one is
    skipped with its reason: one bad branch must not block all sharing) and the log ref. Raises, once the rest
    is pushed, if the remote refused any ref, naming each and git's reason."""
    remote = _where(repo, remote)
    publish_log(repo, log_dir, writer)
    git = repo.git
    theirs = _remote_refs(repo, remote, writer)
    # only what differs from the remote is checked and named: a ref named to git push costs a match against every
    # remote ref (1,101 named refs: 1.8-2.1 s), and one the remote holds already has nothing to send
    ours = {ref.name: str(ref.target) for ref in git.references.iterator()
            if ref.name.startswith((BRANCH_PREFIX, TAG_PREFIX)) or ref.name == LOGS + writer}
    moved = sorted(r for r, target in ours.items() if theirs.get(r) != target)
    report = PushReport(skipped=unsound_refs(repo, {r for r in moved if r != LOGS + writer}))
    tracking = f"refs/remotes/{_remote_name(repo, remote)}/tools/"
    refs = [r for r in moved if r != LOGS + writer and r not in report.skipped and not _behind(git, r, tracking)]
    if LOGS + writer in moved:
        refs.append(LOGS + writer)
    if not refs:
        return report
    leases = _sibling_leases(repo, refs, tracking)
    done = _run_git(repo, "push", "--porcelain", *(f"--force-with-lease={r}:{t}" for r, t in leases.items()),
                    remote, *(f"{'+' * (r in leases)}{r}:{r}" for r in refs))
    out = done.stdout.decode("utf-8", "replace")
    # porcelain: "<flag>\t<from>:<to>\t<summary>"; "=" is up to date, "!" rejected
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1 and ":" in parts[1]:
            to = parts[1].split(":", 1)[1]
            if parts[0] in "*+ -":
                report.updated.append(to)
            elif parts[0] == "!":
                report.refused[to] = parts[2].strip()
    if done.returncode != 0 and not report.refused:  # nothing said per ref: the push as a whole failed
        text = (done.stderr + done.stdout).decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reasons = [line for line in lines if line.startswith(("fatal:", "error:", "remote: Error"))] or lines
        message = "git push failed: " + "; ".join(dict.fromkeys(reasons[:3] or ["(no output)"]))
        if _LOCKED.search(text):
            message += (f" (another push to {remote} is updating the same refs, or one that was killed there "
                        "left a lock file: try again once it has finished)")
        raise EvogitError(message)
    if report.refused:
        said = [line[len("remote:"):].strip() for line in done.stderr.decode("utf-8", "replace").splitlines()
                if line.startswith("remote:") and ("Error" in line or "refused" in line)]
        raise EvogitError(_refusals(remote, writer, report) + (f"; the remote said: {' '.join(said[:3])}"
                                                              if said else ""))
    return report


def _remote_refs(repo: SkillsRepo, remote: str, writer: str) -> dict[str, str]:
    """What the remote's tool branches, version tags and this writer's log point at now (`git ls-remote`)."""
    out = {}
    for line in _git(repo, "ls-remote", "--refs", remote, f"{BRANCH_PREFIX}*", f"{TAG_PREFIX}*",
                     LOGS + writer).splitlines():
        oid, _, name = line.partition("\t")
        if name and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", oid):
            out[name] = oid
    return out


def _sibling_leases(repo: SkillsRepo, refs: list[str], tracking: str) -> dict[str, str]:
    """The tool branches whose tip on the remote (as last fetched) is a sibling version here, diverged from
    ours, that choose_head kept ours over: ref -> that tip. They are pushed over it, only if the remote is still
    there (a lease); the sibling stays on the remote as its version tag."""
    git, out = repo.git, {}
    for ref in refs:
        if not ref.startswith(BRANCH_PREFIX) or (theirs := git.references.get(tracking + ref[len(BRANCH_PREFIX):])) is None:
            continue
        ours = git.references[ref].target
        if theirs.target == ours or git.descendant_of(ours, theirs.target) or git.descendant_of(theirs.target, ours):
            continue
        tool = ref[len(BRANCH_PREFIX):]
        if str(theirs.target) in version_sources(git, tool) and choose_head(repo, tool, theirs.target, move=False):
            out[ref] = str(theirs.target)
    return out


def _behind(git: pygit2.Repository, ref: str, tracking: str) -> bool:
    """Whether tool branch `ref` is strictly behind the remote's as last fetched: nothing to send (the remote's
    newer commits may be ones a pull refused here, which pushing the older tip would only see rejected)."""
    if not ref.startswith(BRANCH_PREFIX) or (theirs := git.references.get(tracking + ref[len(BRANCH_PREFIX):])) is None:
        return False
    ours = git.references[ref].target
    return theirs.target != ours and git.descendant_of(theirs.target, ours)


def _refusals(remote: str, writer: str, report: PushReport) -> str:
    """One line for the refs a remote refused (the rest were pushed), with what to do where it is known."""
    said = []
    for ref, why in report.refused.items():
        if ref == LOGS + writer and _BEHIND.search(f"[rejected] {why}"):
            said.append(f"{ref}: {remote} already holds a log under the writer id {writer!r} that this repository "
                        "did not write (another machine with the same id, or someone squatting it). Choose another "
                        "id (git config evogit.writer NEW-ID) and push again; sign your log (git config gpg.format "
                        "ssh, user.signingkey) so that pullers can tell yours from a squatter's")
        elif _BEHIND.search(f"[rejected] {why}"):
            said.append(f"{ref}: {why} (the remote has commits this repository lacks: `evogit pull {remote}`, merge "
                        "any diverged tool with git, then push again)")
        else:
            said.append(f"{ref}: {why}")
    pushed = f"{len(report.updated)} refs pushed; " if report.updated else ""
    return f"{remote} refused {len(report.refused)} ref{'s' * (len(report.refused) != 1)} ({pushed}the rest is " \
           f"up to date): " + "; ".join(said)


def unsound_refs(repo: SkillsRepo, only: set[str] | None = None) -> dict[str, str]:
    """The tool branches and version tags a push would publish (all, or those in `only`) that fail the checks a
    receiving evogit (and git's own fsck) applies: a branch not named like a tool or with a tree entry that must
    not reach a disk anywhere in its history, a tag that fails verification. ref -> one-line reason. A tag's
    contents (its wasm read and hashed) are checked once per build commit (`repo.intact` remembers them); its
    name, object and lineage on every push."""
    git, out = repo.git, dict[str, str]()
    if only is not None and not only:
        return out
    trees: dict[pygit2.Oid, str | None] = {}
    refs = sorted(ref.name for ref in git.references.iterator()
                  if ref.name.startswith((BRANCH_PREFIX, TAG_PREFIX)) and (only is None or ref.name in only))
    for ref_name in (r for r in refs if r.startswith(BRANCH_PREFIX)):
        try:
            check_name(ref_name[len(BRANCH_PREFIX):])
            tip = git.references[ref_name].peel(pygit2.Commit)
        except (InvalidName, ValueError, KeyError, pygit2.GitError) as e:
            out[ref_name] = f"not a tool branch ({str(e)[:200]})"
            continue
        try:
            for commit in git.walk(tip.id):
                if (problem := _tree_problem(git, commit.tree, trees)) is not None:
                    out[ref_name] = f"commit {str(commit.id)[:10]} has a tree entry that {problem}"
                    break
        except RecursionError:  # a tree nested thousands deep: no tool package is
            out[ref_name] = "its history holds a tree nested too deeply to check"
        except (KeyError, ValueError, pygit2.GitError) as e:  # objects missing or of the wrong type
            out[ref_name] = f"its history cannot be read ({str(e)[:200]})"
    tags = [r for r in refs if r.startswith(TAG_PREFIX)]
    tips = repo.tips_index() if tags else lambda name: []
    for ref_name in tags:
        verdict = check(git, ref_name[len("refs/tags/"):], git.references[ref_name].target, tips=tips,
                        intact=lambda name, fp, build: repo.intact(Version(name, fp, str(build.id),
                                                                           str(build.parent_ids[0]))))
        if not verdict.ok:
            out[ref_name] = verdict.reason
    return out


def _tree_problem(git: pygit2.Repository, tree: pygit2.Tree, seen: dict[pygit2.Oid, str | None]) -> str | None:
    """Why a tree (with its subtrees) must not be published, or None; `seen` remembers trees checked."""
    if tree.id in seen:
        return seen[tree.id]
    problem = None
    for entry in tree:
        raw = entry.raw_name or b""
        if (why := name_problem(raw)) is not None:
            problem = f"{why}: {raw.decode('utf-8', 'replace')[:60]!r}"
        elif entry.filemode == FileMode.TREE:
            problem = _tree_problem(git, git[entry.id].peel(pygit2.Tree), seen)
        if problem is not None:
            break
    seen[tree.id] = problem
    return problem


def pull(repo: SkillsRepo, log_dir: Path, writer: str, remote: str, rebuild: Rebuild,
         progress: Callable[[str], None] = lambda line: None) -> PullReport:
    """Fetch, fast-forward tool branches, accept the version tags that pass the checks of the remote's trust
    policy (`rebuild` builds a source commit here, see verify.py), import the logs; `progress` hears one line
    per phase."""
    remote = _where(repo, remote)
    name = _remote_name(repo, remote)
    trust = trust_policy(repo.git.config, name if name == remote else None)
    tracking = f"refs/remotes/{name}/tools/"
    quarantine = f"{QUARANTINE}remotes/{name}/"
    _git(repo, "fetch", "--no-tags", remote,
         f"+{BRANCH_PREFIX}*:{tracking}*",
         f"+{TAG_PREFIX}*:{quarantine}tags/tools/*",
         f"+{LOGS}*:{REMOTE_LOGS}{name}/logs/*")
    progress(f"fetched from {remote}")
    report = PullReport()
    git = repo.git
    memory_file = repo.state_dir / "refused-branches.json"  # weakening tips refused before: not walked again
    try:
        memory = json.loads(memory_file.read_text())
    except (OSError, ValueError):
        memory = {}
    memory = memory if isinstance(memory, dict) else {}
    remembered = dict(memory)
    siblings: list[tuple[str, pygit2.Oid | str]] = []  # diverged tools and the remote's tip
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
        if local is not None and local.target != theirs and not git.descendant_of(theirs, local.target) \
                and not git.descendant_of(local.target, theirs):
            met = git.merge_base(local.target, theirs)  # diverged: what theirs adds since the two met
            if met is not None and (weak := weakening(git, theirs, met)) is not None:
                report.refused[ref_name] = f"{weak[0]}; not taken (its cases are its contract)"
                continue
            report.diverged.append(tool)
            siblings.append((tool, theirs))
            continue
        base = local.target if local is not None and git.descendant_of(theirs, local.target) else None
        seen, at = memory.get(ref_name), {"target": str(theirs), "base": str(base)}
        if isinstance(seen, dict) and {k: seen.get(k) for k in at} == at and isinstance(seen.get("reason"), str):
            report.refused[ref_name] = seen["reason"]  # the same tip on the same base: the same verdict
            continue
        if (local is None or base is not None) and (weak := weakening(git, theirs, base)) is not None:
            why, sound = weak
            taken = f"; taken up to {str(sound)[:10]}, the commits before it" if sound is not None else ""
            report.refused[ref_name] = f"{why}; not taken (its cases are its contract){taken}"
            memory[ref_name] = {**at, "reason": report.refused[ref_name]}
            if sound is None:
                continue
            theirs = sound  # the commits before the weakening one still arrive
        else:
            memory.pop(ref_name, None)
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
    if memory != remembered:
        write_atomic(memory_file, json.dumps(memory, indent=1, sort_keys=True).encode())
    progress(f"tool branches: {len(report.created)} new, {len(report.fast_forwarded)} moved, "
             f"{len(report.diverged)} diverged; checking version tags (trust policy {trust})")
    report.accepted_tags, report.refused_tags, _ = accept_tags(repo, quarantine, trust, rebuild, mirror=True)
    for tool, theirs in siblings:
        if (head := choose_head(repo, tool, theirs)) is not None:
            report.heads[tool] = head
    progress(f"version tags: {len(report.accepted_tags)} accepted, {len(report.refused_tags)} refused; "
             "importing event logs")
    report.logs, refused_logs = import_logs(repo, log_dir, writer)
    report.refused.update(refused_logs)
    return report


def choose_head(repo: SkillsRepo, tool: str, theirs: pygit2.Oid | str, *, move: bool = True) -> str | None:
    """The rule for a tool both sides advanced, the same on every machine, so that all agree after a round of
    pulls: when both tips are green versions here, the branch is at the one committed later (the larger commit
    id on a tie); the other stays a version (its tag), runnable by fingerprint, a sibling in the lineage, and the
    tool is listed as diverged until someone merges it or chooses (`evogit resolve`). Returns the version the
    branch is at (name@fingerprint), or None when the rule does not apply (a tip that is not a green version
    here; the branch checked out in the work tree): then the branch is left as it is."""
    git = repo.git
    local = git.references.get(BRANCH_PREFIX + tool)
    if local is None:
        return None
    ours = local.target
    by_source = {v.source_commit: v for v in repo.versions(tool)}
    mine, other = by_source.get(str(ours)), by_source.get(str(theirs))
    if mine is None or other is None:
        return None
    a, b = git[ours].peel(pygit2.Commit), git[theirs].peel(pygit2.Commit)
    if (b.commit_time, str(b.id)) < (a.commit_time, str(a.id)):
        return mine.key
    if not move:
        return None
    if not git.is_bare and not git.head_is_detached and git.head.name == BRANCH_PREFIX + tool:
        return None  # the work tree is on it: git merge or evogit resolve, by the person working there
    local.set_target(theirs, f"evogit pull: diverged; {other.key} is the later version")
    return other.key


def resolve(repo: SkillsRepo, tool: str, fingerprint: str) -> str:
    """End a divergence by choosing: commit on tools/<tool> a merge of its head and every version off its
    history, whose tree is the chosen version's (its first parent, so that the branch's line is the chosen one),
    superseding with a reason the cases of the others that the chosen version does not keep. Every machine
    fast-forwards to it. Returns the merge commit's id."""
    git = repo.git
    chosen = repo.resolve(f"{tool}@{fingerprint}")
    head = repo.head(tool)
    off = [v for v in repo.versions(tool) if v.source_commit != str(head.id)
           and not git.descendant_of(head.id, v.source_commit)]
    if not off:
        raise InvalidInput(f"tools/{tool} has not diverged: every version is on its history (to go back to an "
                           "older one, commit its files with git)")
    if not git.is_bare and not git.head_is_detached and git.head.name == BRANCH_PREFIX + tool:
        raise InvalidInput(f"tools/{tool} is checked out in the work tree: resolve it there with git merge, or "
                           "check out another branch first")
    parents: list[str] = []
    for oid in dict.fromkeys([chosen.source_commit, str(head.id), *(v.source_commit for v in off)]):
        if not any(p == oid or git.descendant_of(p, oid) for p in parents):
            parents = [p for p in parents if not git.descendant_of(oid, p) or p == chosen.source_commit] + [oid]
    source = git[chosen.source_commit].peel(pygit2.Commit)
    kept = cases_by_name(git, source)
    trailers: list[str] = []
    for other in parents[1:]:
        for name, case in cases_by_name(git, git[other].peel(pygit2.Commit)).items():
            if kept.get(name) != case and not any(t.startswith(f"Evogit-Supersedes: {name}: ") for t in trailers):
                trailers.append(f"Evogit-Supersedes: {name}: evogit resolve chose {chosen.short}, which does not "
                                f"keep it as {str(other)[:10]} had it")
    message = f"Resolve {tool}: choose {chosen.short}\n\nThe versions off the branch are merged into its history; " \
              f"the tree is {chosen.short}'s.\n" + ("\n" + "\n".join(trailers) + "\n" if trailers else "")
    sig = repo.signature()
    merge = git.create_commit(None, sig, sig, message, source.tree.id, [pygit2.Oid(hex=p) for p in parents])
    ref = git.references[BRANCH_PREFIX + tool]
    if ref.target != head.id:
        raise EvogitError(f"tools/{tool} moved while resolving it; run evogit resolve again")
    ref.set_target(merge, f"evogit resolve: choose {chosen.short}")
    return str(merge)


# -- a hub that requires signing ------------------------------------------------------------------------------
def require_signed(config: pygit2.Config) -> bool:
    """Whether this repository (a hub) takes only signed version tags and event logs (evogit.requireSigned)."""
    try:
        return "evogit.requiresigned" in config and config.get_bool("evogit.requiresigned")
    except (ValueError, pygit2.GitError) as e:
        raise InvalidInput(f"bad evogit.requireSigned in git config: {e}") from None


def unsigned_updates(repo: SkillsRepo, updates: list[tuple[str, str, str]]) -> list[str]:
    """On a hub that requires signing (pre-receive: `(old, new, ref)` lines, the pushed objects still in git's
    quarantine), why each update must be refused: a version tag that is not a tag signed by an allowed key, a
    log commit not signed by its writer's own key (so nobody can write under another's id), or the deletion of
    either. Empty: the push may go in."""
    git, zero = repo.git, "0" * 40
    allowed = signing.allowed_signers(git.config)
    if allowed is None:
        return ["this hub requires signing (evogit.requireSigned) but has no allowed-signers file: "
                "git config gpg.ssh.allowedSignersFile PATH"]
    if (quarantine := os.environ.get("GIT_QUARANTINE_PATH")):
        git.odb.add_disk_alternate(quarantine)  # where receive-pack keeps the pushed objects until we say yes
    out = []
    for old, new, ref in updates:
        if not (ref.startswith(TAG_PREFIX) or ref.startswith(LOGS)):
            continue
        if new == zero:
            out.append(f"{ref}: a hub that requires signing keeps every version tag and log")
        elif ref.startswith(TAG_PREFIX):
            try:
                signed_by_allowed(git, pygit2.Oid(hex=new), allowed)
            except InvalidVersion as e:
                out.append(f"{ref}: {e}")
        elif not _all_signed(git, new, None if old == zero else old, ref[len(LOGS):], allowed):
            out.append(f"{ref}: not every commit is signed by the key allowed for the writer "
                       f"{ref[len(LOGS):][:60]!r} (gpg.ssh.allowedSignersFile)")
    return out


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


def _same_build(git: pygit2.Repository, a: pygit2.Oid | str, b: pygit2.Oid | str) -> bool:
    """Whether two version tag targets are (or are tags of) the same build commit."""
    try:
        return git[a].peel(pygit2.Commit).id == git[b].peel(pygit2.Commit).id
    except (KeyError, ValueError, TypeError, pygit2.GitError):
        return False


def _signed(git: pygit2.Repository, target: pygit2.Oid | str) -> bool:
    return isinstance(target, pygit2.Oid) and signing.tag_signature(git, target) is not None


def accept_tags(repo: SkillsRepo, quarantine: str, trust: str, rebuild: Rebuild, *,
                mirror: bool = False) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Move each version tag out of `<quarantine>tags/tools/` into refs/tags if it passes every check (and,
    under trust `rebuild`, rebuilds here to the same build commit), and takes it out of the quarantine. Returns
    the tags accepted, those refused now with why, and those refused before (remembered, not checked again).

    With `mirror` (a pull's quarantine: the remote's tags as last fetched), a tag whose refs/tags target is the
    quarantined one (accepted now or before) stays in the quarantine, so that the next fetch has nothing to write
    for it, and is not looked at again while the two agree; every other one is checked and leaves the quarantine
    as before (a tag moved on the remote is checked again, and refused: tags never move)."""
    git = repo.git
    memory_file = repo.state_dir / "refused-tags.json"
    try:
        memory = json.loads(memory_file.read_text())
    except (OSError, ValueError):
        memory = {}
    memory = memory if isinstance(memory, dict) else {}
    signers = None
    if trust == "signed":
        signers = signing.allowed_signers(git.config)
        if signers is None:
            raise InvalidInput("the trust policy signed needs an allowed-signers file: git config "
                               "gpg.ssh.allowedSignersFile PATH (lines of `<principal> <key type> <public key>`)")
    accepted: list[str] = []
    refused: dict[str, str] = {}
    known: dict[str, str] = {}
    changed = False
    prefix = quarantine + "tags/"
    quarantined: dict[str, pygit2.Oid | str] = {}
    ours: dict[str, pygit2.Oid | str] = {}  # refs/tags/tools/*, with `mirror`: one listing, not a lookup per tag
    for each in git.references.iterator():
        if each.name.startswith(prefix):
            quarantined[each.name] = each.target
        elif mirror and each.name.startswith(TAG_PREFIX):
            ours[each.name] = each.target
    tips = repo.tips_index()  # the branches do not move while tags are checked

    def intact(name: str, fp: str, build: pygit2.Commit) -> bool:  # contents checked once per build commit, and
        # remembered (repo.intact): building the heads that arrived, listing and running them read it, not the wasm
        return repo.intact(Version(name, fp, str(build.id), str(build.parent_ids[0])))

    for ref_name in sorted(quarantined):
        listed = quarantined[ref_name]
        if mirror and isinstance(listed, pygit2.Oid) and ours.get("refs/tags/" + ref_name[len(prefix):]) == listed:
            continue  # already ours, its mirror already here: nothing to check, nothing for the next fetch to write
        ref = git.references.get(ref_name)
        if ref is None:
            continue
        tag, target = ref_name[len(prefix):], ref.target
        here = git.references.get("refs/tags/" + tag)
        seen = memory.get(tag)
        if here is not None and here.target == target:
            pass  # already ours
        elif here is not None and _same_build(git, here.target, target) and not _signed(git, here.target):
            # the same build commit, and theirs is a signed tag where ours is not: theirs, once it passes
            verdict = check(git, tag, target, tips=tips, signers=signers, intact=intact)
            if verdict.ok and _signed(git, target):
                git.references.create("refs/tags/" + tag, target, force=True)
                accepted.append(tag)
        elif (isinstance(seen, dict) and seen.get("target") == str(target)
                and (seen.get("stage") != "rebuild" or trust == "rebuild") and seen.get("stage") != "signature"):
            known[tag] = str(seen.get("reason", ""))
        else:
            if here is not None and check(git, tag, here.target).ok:
                verdict = Verdict(tag, stage="exists", reason=f"this repository's tag points at {str(here.target)[:10]}, "
                                                              f"this one at {str(target)[:10]}: tags never move")
            else:
                verdict = check(git, tag, target, tips=tips, rebuild=rebuild if trust == "rebuild" else None,
                                signers=signers, intact=intact)
            if verdict.ok:
                git.references.create("refs/tags/" + tag, target, force=True)  # a rebuild made it, or a broken one was here
                accepted.append(tag)
                changed = memory.pop(tag, None) is not None or changed
            else:
                refused[tag] = verdict.reason
                memory[tag] = {"target": str(target), "stage": verdict.stage, "reason": verdict.reason}
                changed = True
        now = git.references.get("refs/tags/" + tag) if mirror else None
        if now is None or now.target != target:
            ref.delete()  # only once decided: a pull killed mid-check leaves the rest for the next one
    if changed:
        write_atomic(memory_file, json.dumps(memory, indent=1, sort_keys=True).encode())
    if len(accepted) >= PACK_AFTER:
        # each accepted tag (and its quarantine ref) is a loose ref file: listing 2,200 loose refs took 20 ms, packed
        # 2.3 ms, and every command lists them; pack-refs is git gc's own step, safe beside other git writers
        with contextlib.suppress(EvogitError):  # only an optimisation: a repository with loose refs works
            _run_git(repo, "pack-refs", "--all")
    return accepted, refused, known
