"""The repository's local state: its writer id, its event log, and the two projections caught up with it
(and with the logs of other machines that arrived by git). Each runtime keeps one, and later calls read only
the events appended since, by this process or any other."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import EvogitError, InvalidInput
from ..log import OWN, EventLog, FileLog, default_writer, own_writers, warn
from ..projections import (
    EmbeddingProjector,
    Projector,
    Trust,
    open_embeddings,
    open_projections,
    refresh,
    replay_all,
    save_snapshot,
)
from ..repo import SkillsRepo
from ..share import import_logs, repair_logs, signed_writers
from ..signing import allowed_signers

P = TypeVar("P", Projector, EmbeddingProjector)


class LocalState:
    """Owns the log (opened on first use) and the projections' in-memory copies."""

    def __init__(self, repo: SkillsRepo, log: EventLog | None = None):
        self.repo = repo
        self._log = log
        self._own_log = log is None
        self._metrics: Projector | None = None
        self._embeddings: EmbeddingProjector | None = None
        self._imported: tuple[object, ...] | None = None  # _refs_stamp() at the last import
        self._trust: tuple[tuple[object, ...], Trust] | None = None  # trust() and the _trust_key() it was made at
        self._signers: Path | None = None

    @property
    def log(self) -> EventLog:
        """This repository's event log (`.git/evogit/log/`), opened on first use."""
        if self._log is None:
            self._log = FileLog(self.repo.state_dir / "log", self.writer())
        return self._log

    def file_log(self) -> FileLog:
        if not isinstance(self.log, FileLog):
            raise EvogitError("this runtime's event log is in memory; there is nothing to share")
        return self.log

    def close(self) -> None:
        """Save projection snapshots with events applied since their last save, and close the log."""
        for projector, name in ((self._metrics, "projections.msgpack"), (self._embeddings, "embeddings.msgpack")):
            if projector is not None and projector.unsaved:
                try:
                    save_snapshot(projector, self.repo.state_dir / name)
                except OSError as e:  # a snapshot is a cache: the next open reads the log further instead
                    warn(f"could not save {name}: {e}")
        if self._own_log and isinstance(self._log, FileLog):
            self._log.close()
            self._log = None

    def writer(self) -> str:
        """This repository's writer id: $EVOGIT_WRITER, else `evogit.writer` from git config, else a new
        `<host>-<random>` stored there, so that two clones on one machine never share a log."""
        if env := os.environ.get("EVOGIT_WRITER"):
            return _checked_writer(env, "EVOGIT_WRITER")
        config = self.repo.git.config
        if "evogit.writer" in config:
            return _checked_writer(str(config["evogit.writer"]), "git config evogit.writer")
        host = re.sub(r"[^A-Za-z0-9_-]+", "-", default_writer()).strip("-")[:40] or "local"
        existing = self.repo.state_dir / "log" / f"{host}.log"  # a log made before writer ids were stored
        writer = host if existing.exists() else f"{host}-{secrets.token_hex(3)}"
        config["evogit.writer"] = writer
        return writer

    def trust(self) -> Trust:
        """Whose events count: this repository's writer's (under today's id and any it wrote under before); each
        writer whose log is signed by the key the allowed-signers file lists for it (share.signed_writers); and each named by `git config --add evogit.trustWriter
        WRITER` (trusted by name alone: for a hub where nobody else can push to that writer's log ref). Every
        other writer's events are imported and kept, and counted as claims only."""
        key = self._trust_key()
        if self._trust is not None and self._trust[0] == key:
            return self._trust[1]
        try:
            named = frozenset(str(w).strip() for w in self.repo.git.config.get_multivar("evogit.trustWriter"))
        except (KeyError, ValueError):
            named = frozenset()
        writer = self.writer()
        earlier = own_writers(self.repo.state_dir / "log") - {writer}  # this repository's own, under an old id
        trust = Trust(writer, named | earlier | signed_writers(self.repo, writer))
        signers = allowed_signers(self.repo.git.config)
        # cached under the key taken before reading (a change made meanwhile is seen next time); a newly known
        # allowed-signers file changes the key, which costs one more reading
        self._trust = (key if signers == self._signers else self._trust_key(signers), trust)
        self._signers = signers
        return trust

    def _refs_stamp(self) -> tuple[object, ...]:
        """Changes whenever a log ref may have moved: the stat of packed-refs and of everything under refs/evogit/
        (a few stat calls, where listing the refs through libgit2 cost a millisecond for every run recorded with a
        task)."""
        git_dir = self.repo.common_dir  # a worktree's refs (but HEAD) and packed-refs are the common ones
        items: list[object] = [_stamp(git_dir / "packed-refs")]
        stack = [str(git_dir / "refs" / "evogit")]
        while stack:
            try:
                with os.scandir(stack.pop()) as found:
                    for e in found:
                        st = e.stat(follow_symlinks=False)
                        items.append((e.path, st.st_mtime_ns, st.st_size))
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
            except OSError:
                continue
        return tuple(items)

    def _copies_stamp(self, own: str) -> tuple[object, ...]:
        """The other writers' log copies, name and size (a copy cut short or deleted is imported again)."""
        try:
            with os.scandir(self.repo.state_dir / "log") as found:
                return tuple(sorted((e.name, e.stat().st_size) for e in found if not e.name.startswith(f"{own}.")))
        except OSError:
            return ()

    def _trust_key(self, signers: Path | None = None) -> tuple[object, ...]:
        """What trust() depends on: the log refs, git config files, the allowed-signers file, EVOGIT_WRITER."""
        home = Path(os.path.expanduser("~"))
        xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        files = [self.repo.common_dir / "config", Path(self.repo.git.path) / "config.worktree", home / ".gitconfig",
                 xdg / "git" / "config"]
        if (signers := signers or self._signers) is not None:
            files.append(signers)
        files.append(self.repo.state_dir / "log" / OWN)
        return (self._refs_stamp(), _stamp(*files), os.environ.get("EVOGIT_WRITER"),
                os.environ.get("GIT_CONFIG_GLOBAL"))

    def projections(self) -> Projector:
        """The projections, loaded from their snapshot and caught up with the log (and with logs of other
        machines that arrived by git)."""
        self._metrics = self._caught_up(self._metrics, "projections.msgpack", open_projections)
        return self._metrics

    def embeddings(self) -> EmbeddingProjector:
        """The embeddings of versions and tasks (a projection of its own: only a search needs them)."""
        self._embeddings = self._caught_up(self._embeddings, "embeddings.msgpack", open_embeddings)
        return self._embeddings

    def _caught_up(self, projector: P | None, name: str, open_: Callable[[EventLog, Path, Trust], P]) -> P:
        self.import_logs()
        path = self.repo.state_dir / name
        trust = self.trust()
        if projector is None or projector.trust != trust:
            return open_(self.log, path, trust)
        refresh(projector, self.log, path)
        return projector

    def replay(self, repair: bool = False) -> Projector:
        """Throw the projections away and rebuild them from the whole log. With `repair`, damaged log files are
        rewritten first from what can still be read (share.repair_logs; each repair is reported)."""
        if repair:
            self.close()
            for line in repair_logs(self.repo, self.repo.state_dir / "log", self.writer()):
                warn(line)
        self.import_logs()
        self._metrics, self._embeddings = replay_all(self.log, self.repo.state_dir / "projections.msgpack",
                                                     self.repo.state_dir / "embeddings.msgpack", self.trust())
        return self._metrics

    def import_logs(self) -> None:
        """Copy what arrived in other writers' log refs into the log (share.import_logs), unless nothing there
        has moved since the last import by this process."""
        if isinstance(self.log, FileLog):
            refs = self._refs_stamp()
            if (refs, self._copies_stamp(self.log.writer)) != self._imported:
                import_logs(self.repo, self.log.dir, self.log.writer)  # refused logs are reported by `pull`
                # the refs as they were before the import (one that moved meanwhile is imported next time), the
                # copies as the import left them
                self._imported = (refs, self._copies_stamp(self.log.writer))


def _stamp(*paths: Path) -> tuple[object, ...]:
    out: list[object] = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


_WRITER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")


def _checked_writer(writer: str, where: str) -> str:
    """A writer id is a file name and a ref's last component: letters, digits, '.', '_', '-', at most 100."""
    if not _WRITER.match(writer) or ".." in writer or writer.endswith((".lock", ".")):
        raise InvalidInput(f"{where} = {writer[:60]!r} is not a valid writer id (letters, digits, '.', '_', '-'; "
                           "at most 100, starting with a letter or digit)")
    return writer
