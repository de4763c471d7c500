"""The skills repository: tool versions as git commits, builds as deterministic commits, versions as tags.

    refs/heads/tools/<name>                 source commits of one tool (lineage = ancestry)
    refs/tags/tools/<name>/<fingerprint>    the build commit of a green version (source tree + build/)

Writes are compare-and-swap on the ref and retried, so concurrent writers never lose a version. Reads never
trust a ref: tree entry names are checked before a tree's files are handed out, and malformed version tags are
skipped (the checks themselves are in verify.py).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import FileMode

from . import signing
from .errors import AmbiguousVersion, ConcurrentUpdate, InvalidVersion, RepoNotFound, ToolExists, ToolNotFound
from .events import version_key
from .manifest import MAX_NAME, NAME_RE, check_name
from .verify import BUILDER, TAG_PREFIX, PathCheck, Rebuild, Verdict, build_commit, check, check_paths, contents

__all__ = ["BRANCH_PREFIX", "BUILDER", "TAG_PREFIX", "SkillsRepo", "Version", "branch_ref", "common_dir", "parse_spec",
           "tag_ref"]

BRANCH_PREFIX = "refs/heads/tools/"
MIN_PREFIX = 4
INTACT = "intact-v1"  # versions found intact (verify.contents); bump the suffix when those checks change
CAS_ATTEMPTS = 200

README = """\
# evogit skills repository

Every tool lives on its own branch, `tools/<name>`; each commit there is one source version
(`tool.json`, `Cargo.toml`, `src/main.rs`, `tests/cases.jsonl`). A green build is a commit on top of it
that adds `build/tool.wasm` and `build/build.json`, tagged `tools/<name>/<sha256 of tool.wasm>`.

    git log --graph --oneline tools/word-count      # one tool's lineage
    git checkout tools/word-count && $EDITOR src/main.rs && git commit -am "..."   # builds and tags
    evogit list / describe / run / lineage / fork
"""


@dataclass(frozen=True)
class Version:
    """A green, tagged tool version."""

    name: str
    fingerprint: str
    build_commit: str
    source_commit: str

    @property
    def key(self) -> str:
        """`name@fingerprint`, whole: how events, metrics and every result name a version (events.version_key)."""
        return version_key(self.name, self.fingerprint)

    @property
    def short(self) -> str:
        """`name@<7 hex>`: how people read it."""
        return version_key(self.name, self.fingerprint[:7])


# Ref names are interned: pygit2 1.21 keeps a reference to the name string of every lookup (`references.get`,
# `name in references`, `lookup_reference`) and never releases it, so a fresh string per lookup is memory a
# long-running process (a server, its workers) never gets back: ~76 bytes per run, measured. Interned, the leaked
# references pile up on one object per name instead. Where a name comes from iterating the refs, iterate the
# Reference objects themselves (references.iterator()), which leaks nothing.
def tag_ref(name: str, fp: str) -> str:
    return sys.intern(f"{TAG_PREFIX}{name}/{fp}")


def branch_ref(name: str) -> str:
    return sys.intern(f"{BRANCH_PREFIX}{name}")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split `name[@fingerprint-prefix]`."""
    name, _, fp = spec.partition("@")
    check_name(name)
    if _ and not (len(fp) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in fp)):
        raise ToolNotFound(f"bad version {spec!r}: after '@' give at least {MIN_PREFIX} lowercase hex digits of the fingerprint")
    return name, (fp or None)


def common_dir(git: pygit2.Repository) -> Path:
    """The git directory every worktree of a repository shares — objects, refs, config, hooks, and evogit's
    state: `git.path` itself, or for a linked worktree (`git worktree add`, whose own git directory
    `.git/worktrees/<name>` holds little but its HEAD and index) the directory its `commondir` file names, as
    git reads it (gitrepository-layout(5); pygit2 1.21 does not expose libgit2's commondir)."""
    here = Path(git.path)
    try:
        named = (here / "commondir").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return here
    return (here / named).resolve() if named else here


class SkillsRepo:
    """A git repository of tools. Cheap to open; reads go straight to git."""

    def __init__(self, path: str | Path):
        try:
            self.git = pygit2.Repository(str(path))
        except pygit2.GitError:
            raise RepoNotFound(f"{path} is not a skills repository (run `evogit init {path}`)") from None
        self.path = Path(self.git.workdir or self.git.path)
        self.common_dir = common_dir(self.git)  # objects, refs, config, hooks: shared by every worktree
        self.state_dir = self.common_dir / "evogit"
        if not self.state_dir.is_dir():
            raise RepoNotFound(f"{path} is a git repository but not an evogit skills repository (run `evogit init {path}`)")
        self._intact: dict[str, bool] | None = None  # "<build commit> <name> <fp>" -> passes `verify.contents`
        self.first_init = False  # made a skills repository just now by `init` (it had no evogit state before)

    @classmethod
    def init(cls, path: str | Path, bare: bool = False) -> SkillsRepo:
        """Create (or adopt) a repository whose `main` branch holds a README; bare ones serve as shared remotes."""
        path = Path(path)
        try:
            git = pygit2.Repository(str(path))
        except pygit2.GitError:
            path.mkdir(parents=True, exist_ok=True)
            git = pygit2.init_repository(str(path), bare=bare, initial_head="main")
        state = common_dir(git) / "evogit"
        first = not state.is_dir()
        state.mkdir(exist_ok=True)
        if git.is_bare:  # a shared hub: git itself refuses malformed objects (a tree entry named `..`) on push
            git.config["receive.fsckObjects"] = True
        repo = cls(path)
        repo.first_init = first
        if git.head_is_unborn:
            sig = pygit2.Signature("evogit", "evogit@evogit.invalid")
            tree = repo.write_tree({"README.md": README.encode()})
            git.create_commit("HEAD", sig, sig, "Start a skills repository", tree, [])
            if not git.is_bare:
                git.checkout_head(strategy=pygit2.enums.CheckoutStrategy.FORCE)
        return repo

    # -- reading -----------------------------------------------------------------------------------------------
    def tools(self) -> list[str]:
        """Names of all tools (branches under tools/ with a valid name, pointing at a commit), sorted."""
        names = (r[len(BRANCH_PREFIX):] for r in self.git.references if r.startswith(BRANCH_PREFIX))
        return sorted(n for n in names if NAME_RE.match(n) and len(n) <= MAX_NAME and self._branch(n) is not None)

    def _branch(self, name: str) -> pygit2.Commit | None:
        try:
            ref = self.git.references.get(branch_ref(name))
            obj = self.git.get(ref.resolve().target) if ref is not None else None
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return obj if isinstance(obj, pygit2.Commit) else None

    def head(self, name: str) -> pygit2.Commit:
        commit = self._branch(name)
        if commit is None:
            if branch_ref(name) in self.git.references:
                raise ToolNotFound(f"tools/{name} does not point at a commit")
            raise ToolNotFound(f"no tool named {name!r}")
        return commit

    def tips(self, name: str) -> list[pygit2.Oid]:
        """Where tools/<name> is, here and in every remote fetched from: a version's source commit must be on
        the history of one of them."""
        tracking = [r for r in self.git.references
                    if r.startswith("refs/remotes/") and r.endswith(f"/tools/{name}") and r.count("/") == 4]
        found = []
        for ref_name in [branch_ref(name), *sorted(tracking)]:
            ref = self.git.references.get(ref_name)
            if ref is not None and isinstance(ref.target, pygit2.Oid) and isinstance(self.git.get(ref.target), pygit2.Commit):
                found.append(ref.target)
        return found

    def tips_index(self) -> Callable[[str], list[pygit2.Oid]]:
        """`tips` for every tool from one listing of the refs (a check of 1,000 tags listed them 1,000 times)."""
        found: dict[str, list[tuple[str, pygit2.Oid]]] = {}
        for ref in self.git.references.iterator():
            name = ref.name
            if name.startswith(BRANCH_PREFIX):
                tool = name[len(BRANCH_PREFIX):]
            elif name.startswith("refs/remotes/") and name.count("/") == 4 and name.split("/")[3] == "tools":
                tool = name.rsplit("/", 1)[1]
            else:
                continue
            target = ref.target
            if isinstance(target, pygit2.Oid) and isinstance(self.git.get(target), pygit2.Commit):
                found.setdefault(tool, []).append((name, target))
        # the local branch first, then the remote-tracking ones by name: the order `tips` gives
        index = {tool: [t for n, t in sorted(refs, key=lambda r: (r[0] != branch_ref(tool), r[0]))]
                 for tool, refs in found.items()}
        return lambda tool: index.get(tool, [])

    def commit(self, rev: str) -> pygit2.Commit:
        try:
            return self.git.revparse_single(rev).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError):
            raise ToolNotFound(f"no commit {rev!r}") from None

    def files(self, tree: pygit2.Tree) -> tuple[dict[str, bytes], set[str]]:
        """All regular files of a tree (path -> bytes) and the paths of any symlinks. Raises InvalidPackage for
        an entry name that must not reach a disk (`..`, `.git`, ...) or for paths that differ only in case."""
        files: dict[str, bytes] = {}
        links: set[str] = set()
        paths = PathCheck()
        stack: list[tuple[str, pygit2.Tree]] = [("", tree)]
        while stack:
            prefix, t = stack.pop()
            for entry in t:
                path = paths.add(prefix, entry.raw_name or b"")
                if entry.filemode == FileMode.TREE:
                    stack.append((path + "/", self.git[entry.id].peel(pygit2.Tree)))
                elif entry.filemode == FileMode.LINK:
                    links.add(path)
                elif entry.filemode in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE):
                    files[path] = self.git[entry.id].peel(pygit2.Blob).data
                else:
                    links.add(path)  # submodules are as unwelcome as links
        return files, links

    def read(self, commit: pygit2.Commit, path: str) -> bytes:
        try:
            return self.git[commit.tree[path].id].peel(pygit2.Blob).data
        except KeyError:
            raise ToolNotFound(f"{path} not found in {commit.id}") from None

    def versions(self, name: str | None = None) -> list[Version]:
        """Green versions (tags), of one tool or of all; oldest source commit first. A malformed tag (a bad
        name; not pointing straight at a commit with one parent) is skipped: `verify` reports it."""
        prefix = TAG_PREFIX + (f"{name}/" if name else "")
        found = []
        for ref in self.git.references.iterator():
            ref_name = ref.name
            if not ref_name.startswith(prefix):
                continue
            try:
                tool, fp, build = build_commit(self.git, ref_name[len("refs/tags/"):], ref.target)
            except InvalidVersion:
                continue
            found.append((build.commit_time, Version(tool, fp, str(build.id), str(build.parent_ids[0]))))
        return [v for _, v in sorted(found, key=lambda item: (item[0], item[1].name, item[1].fingerprint))]

    def intact(self, v: Version) -> bool:
        """Whether a version's build commit is what the builder writes around a tool.wasm that hashes to its
        fingerprint (`verify.contents`). The answer depends only on the (immutable) build commit and the tag's
        name, so versions found intact are remembered in .git/evogit/intact-v1, one line each: reading their
        trees and wasm again cost ~13 ms a version, 20 -> 330 ms for `list` of 24 tools."""
        if self._intact is None:
            try:
                lines = (self.state_dir / INTACT).read_text().split("\n")
            except (OSError, UnicodeDecodeError):
                lines = []
            self._intact = dict.fromkeys(lines, True)
        key = f"{v.build_commit} {v.name} {v.fingerprint}"
        if key not in self._intact:
            try:
                contents(self.git, v.name, v.fingerprint, self.git[v.build_commit].peel(pygit2.Commit))
                self._intact[key] = True
                with open(self.state_dir / INTACT, "a") as f:  # one short line per write(): appends never interleave
                    f.write(key + "\n")
            except InvalidVersion:
                self._intact[key] = False
            except OSError:  # a read-only repository still answers
                pass
        return self._intact[key]

    def verify(self, spec: str | None = None, rebuild: Rebuild | None = None,
               signers: Path | None = None) -> list[Verdict]:
        """Check this repository's version tags as a pulled tag is checked: all of them, one tool's (`name`) or
        one version (`name@<fp prefix>`), malformed ones included; with `rebuild`, rebuilding each here; with
        `signers` (an allowed-signers file), requiring a tag signed by one of its keys."""
        name, prefix = parse_spec(spec) if spec else (None, None)
        refs = sorted(r for r in self.git.references if r.startswith(TAG_PREFIX + (f"{name}/" if name else "")))
        if name is not None:
            self.head(name)  # an unknown tool is ToolNotFound
        if prefix is not None:
            refs = [r for r in refs if r.rpartition("/")[2].startswith(prefix)]
            if not refs:
                raise ToolNotFound(f"{name} has no version {prefix}")
            if len(refs) > 1:
                raise AmbiguousVersion(f"{spec} matches {len(refs)} versions; give more digits")
        verdicts, tips = [], self.tips_index()
        for ref_name in refs:
            ref = self.git.references.get(ref_name)
            if ref is not None:
                verdicts.append(check(self.git, ref_name[len("refs/tags/"):], ref.target, tips=tips, rebuild=rebuild,
                                      signers=signers))
        return verdicts

    def resolve(self, spec: str, known: list[Version] | None = None) -> Version:
        """`name@<fp prefix>` → that version; bare `name` → the newest green version on the tool's branch.

        `known` may pass this tool's versions when the caller already listed them (saves a scan of all refs).
        A version whose build commit is not intact (its tool.wasm does not hash to its name, ...) never answers
        a bare name: the next green one does.
        """
        name, prefix = parse_spec(spec)
        if prefix is not None:
            matches = [v for v in (known if known is not None else self.versions(name)) if v.fingerprint.startswith(prefix)]
            if len(matches) > 1:
                matches = [v for v in matches if self.intact(v)] or matches
            if not matches:
                self.head(name)  # raises ToolNotFound for an unknown tool
                raise ToolNotFound(f"{name} has no version {prefix}")
            if len(matches) > 1:
                raise AmbiguousVersion(f"{spec} matches {len(matches)} versions; give more digits")
            return matches[0]
        by_source: dict[str, list[Version]] = {}
        for v in known if known is not None else self.versions(name):
            by_source.setdefault(v.source_commit, []).append(v)
        # the branch's own line first (first parents, as `git log --first-parent`): after a merge that chose one
        # side (evogit resolve), that side's version; then whatever was merged in
        walker = self.walk(self.head(name).id)
        walker.simplify_first_parent()
        for commits in (walker, self.walk(self.head(name).id)):
            for commit in commits:
                for v in reversed(by_source.get(str(commit.id), [])):
                    if self.intact(v):
                        return v
        raise ToolNotFound(f"{name} has no green version yet (see `evogit describe {name}`)")

    def walk(self, start: pygit2.Oid | str) -> pygit2.Walker:
        return self.git.walk(start, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)

    # -- writing -----------------------------------------------------------------------------------------------
    def write_tree(self, files: dict[str, bytes]) -> pygit2.Oid:
        check_paths(files)  # paths from a model or a caller are as untrusted as trees from a remote
        index = pygit2.Index()
        for path, data in sorted(files.items()):
            index.add(pygit2.IndexEntry(path, self.git.create_blob(data), FileMode.BLOB))
        return index.write_tree(self.git)

    def commit_version(self, name: str, files: dict[str, bytes], message: str, *,
                       author: pygit2.Signature | None = None, start_at: str | None = None,
                       new: bool = False) -> str:
        """Commit a new source version on tools/<name>; returns the commit id.

        The new commit's parent is the branch head *at the moment it lands* (compare-and-swap on the ref,
        retried with backoff), so concurrent writers never overwrite each other. For a new branch, the
        parent is `start_at` (a fork's parent source commit) or the repository's root commit, so that
        `git log --graph --all` shows every tool growing from one trunk. With `new`, the branch must not exist
        (a created tool never lands on top of another one of that name): ToolExists otherwise.
        """
        check_name(name)
        sig = author or self.signature()
        tree = self.write_tree(files)
        ref = branch_ref(name)
        base = [pygit2.Oid(hex=start_at)] if start_at else self._root()
        for attempt in range(CAS_ATTEMPTS):
            current = self.git.references.get(ref)
            if new and current is not None:
                raise ToolExists(f"a tool named {name!r} already exists")
            parents = [current.target] if current is not None else base
            try:
                if current is None:
                    oid = self.git.create_commit(None, sig, sig, message, tree, parents)
                    self.git.references.create(ref, oid, force=False)
                else:
                    oid = self.git.create_commit(ref, sig, sig, message, tree, parents)
                return str(oid)
            except (pygit2.GitError, OSError, ValueError, pygit2.AlreadyExistsError):
                time.sleep(min(0.2, 0.002 * 2 ** min(attempt, 7)) * random.random())
        raise ConcurrentUpdate(f"tools/{name} kept moving; gave up after {CAS_ATTEMPTS} attempts")

    def _root(self) -> list[pygit2.Oid]:
        main = self.git.references.get("refs/heads/main")
        if main is None:
            return []
        for commit in self.git.walk(main.target, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE):
            return [commit.id]
        return []

    def create_branch(self, name: str, at: str) -> None:
        """Start tools/<name> at an existing commit (a fork)."""
        check_name(name)
        try:
            self.git.references.create(branch_ref(name), pygit2.Oid(hex=at), force=False)
        except (pygit2.AlreadyExistsError, ValueError):
            raise ToolExists(f"a tool named {name!r} already exists") from None

    def write_build(self, name: str, source: pygit2.Commit, outputs: dict[str, bytes], fingerprint: str, *,
                    mine: bool = False) -> Version:
        """Write the deterministic build commit (source tree + build/) and tag it, unless already tagged; returns
        the tagged version, or with `mine` the build commit written here (to compare with the tagged one).
        A tag of that name that is not intact (another module under this fingerprint) is replaced."""
        builder = self.git.TreeBuilder()
        for fname, data in sorted(outputs.items()):
            builder.insert(fname, self.git.create_blob(data), FileMode.BLOB)
        root = self.git.TreeBuilder(source.tree)
        root.insert("build", builder.write(), FileMode.TREE)
        sig = pygit2.Signature(*BUILDER, time=source.committer.time, offset=0)
        message = f"Build {name}@{fingerprint[:12]}\n\nEvogit-Fingerprint: {fingerprint}\n"
        oid = self.git.create_commit(None, sig, sig, message, root.write(), [source.id])
        ref = tag_ref(name, fingerprint)
        existing = self.git.references.get(ref)
        if existing is None:
            try:
                self.git.references.create(ref, self._tag_target(ref, oid, source, message), force=False)
            except pygit2.AlreadyExistsError:
                existing = self.git.references.get(ref)
        if existing is not None and existing.target != oid and not self._tag_intact(ref, existing.target):
            self.git.references.create(ref, self._tag_target(ref, oid, source, message), force=True)
            existing = None
        if existing is not None and not mine:  # tags never move: an identical binary keeps its first build commit
            build = self.git[existing.target].peel(pygit2.Commit)
            return Version(name, fingerprint, str(build.id), str(build.parent_ids[0]))
        return Version(name, fingerprint, str(oid), str(source.id))

    def _tag_target(self, ref: str, build: pygit2.Oid, source: pygit2.Commit, message: str) -> pygit2.Oid:
        """What a new version tag points at: the build commit, or with a signing key set up (git config
        gpg.format ssh, user.signingkey) a signed tag object on it, tagged by the user at the source commit's
        time (signing.py)."""
        key = signing.signing_key(self.git.config)
        if key is None:
            return build
        me = self.signature()
        tagger = pygit2.Signature(me.name, me.email, time=source.committer.time, offset=0)
        return signing.signed_tag(self.git, key, build, ref[len("refs/tags/"):], tagger, message)

    def _tag_intact(self, ref: str, target: pygit2.Oid | str) -> bool:
        try:
            name, fp, build = build_commit(self.git, ref[len("refs/tags/"):], target)
        except InvalidVersion:
            return False
        return self.intact(Version(name, fp, str(build.id), str(build.parent_ids[0])))

    def signature(self) -> pygit2.Signature:
        try:
            return self.git.default_signature
        except (KeyError, pygit2.GitError):
            return pygit2.Signature("evogit", "evogit@evogit.invalid")
