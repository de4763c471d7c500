"""Checks on what git brings in, in one place: tree entry names before anything touches a disk, and version
tags before they are trusted. Reading, building, `pull`, a hub's post-receive and `evogit verify` call them.

A version tag `refs/tags/tools/<name>/<fingerprint>` is good only if, stage by stage:

    name        <name> is a tool name and <fingerprint> 64 lowercase hex digits
    object      it points at a commit with exactly one parent: straight, or through a tag object of the same
                name that carries an SSH signature (a signed version tag, signing.py); never an unsigned tag
                object, a tree or a blob
    signature   (trust policy `signed`) the tag object is signed by a key of gpg.ssh.allowedSignersFile
    tree        that build commit's tree is its parent's (the source commit's) tree plus build/, which holds
                exactly tool.wasm and build.json as regular files
    wasm        tool.wasm hashes (sha256) to <fingerprint>
    interface   the interface section tool.wasm carries (artifact.py), if any, names the source tree's tool.json
                and tests/cases.jsonl
    build.json  parses and names the same tool and fingerprint, ok, and the wasm's size
    identity    author and committer are the builder at the source commit's time; the message names the fingerprint
    lineage     the source commit is on the history of tools/<name> (here, or a remote-tracking branch)
    rebuild     (trust policy `rebuild`) this machine builds the source commit to the same fingerprint, and so,
                build commits being deterministic, to the very same build commit

Listing versions applies name and object (a malformed ref is skipped, never an error); resolving one applies
tree to identity too, once per build commit and process, so a broken tag never hides a good version.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import msgspec
import pygit2
from pygit2.enums import FileMode

from . import signing
from .artifact import INTERFACE_FILES, interface_of
from .errors import EvogitError, InvalidInput, InvalidPackage, InvalidVersion
from .manifest import MAX_NAME, NAME_RE

TAG_PREFIX = "refs/tags/tools/"
BUILDER = ("evogit-builder", "builder@evogit.invalid")
TRUST = ("rebuild", "signed", "hash")
_FP = re.compile(r"^[0-9a-f]{64}\Z")
#: Code points HFS+ ignores in names, so that ".g\u200cit" is ".git" there (as git's is_hfs_dotgit knows).
_HFS_IGNORED = dict.fromkeys([0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF])

#: Builds (source commit, tool name) here, whatever tags exist; returns (fingerprint, id of the build commit
#: written); raises EvogitError if it does not build.
Rebuild = Callable[[pygit2.Commit, str], tuple[str, str]]


# -- tree entry names ----------------------------------------------------------------------------------------
def name_problem(raw: bytes) -> str | None:
    """Why a tree entry name must not reach a disk, or None: empty, `.`, `..`, a slash, backslash or NUL, not
    UTF-8, or a spelling of `.git` (any case, trailing dots or spaces, an NTFS stream or short name, HFS-ignored
    characters)."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8"
    if name in ("", ".", ".."):
        return "is a relative path component" if name else "is empty"
    for char, what in (("/", "a slash"), ("\\", "a backslash"), ("\0", "NUL")):
        if char in name:
            return f"contains {what}"
    if name.translate(_HFS_IGNORED).split(":", 1)[0].rstrip(". ").casefold() in (".git", "git~1"):
        return "is a spelling of .git"
    return None


class PathCheck:
    """Paths checked one entry at a time, as a tree is walked: each name may reach a disk, and no two paths
    (files or directories) differ only in case."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def add(self, parent: str, raw: bytes) -> str:
        """The path of entry `raw` in directory `parent` ('' or 'dir/'); InvalidPackage if it must not be written."""
        if problem := name_problem(raw):
            raise InvalidPackage(f"tree entry {parent + raw.decode('utf-8', 'backslashreplace')!r} {problem}")
        path = parent + raw.decode()
        first = self._seen.setdefault(path.casefold(), path)
        if first != path:
            a, b = sorted((first, path))
            raise InvalidPackage(f"paths {a!r} and {b!r} differ only in case")
        return path


def check_paths(paths: Iterable[str]) -> None:
    """Raise InvalidPackage unless every `a/b/c` path may be written as it is (see `PathCheck`)."""
    check = PathCheck()
    for path in paths:
        parent = ""
        for part in path.split("/"):
            parent = check.add(parent, part.encode("utf-8", "surrogateescape")) + "/"


# -- version tags --------------------------------------------------------------------------------------------
class Verdict(msgspec.Struct):
    """The outcome of checking one version tag; `stage` names the check that failed, `reason` says why."""

    tag: str  # tools/<name>/<fingerprint>: the ref without refs/tags/
    ok: bool = False
    tool: str = ""
    fingerprint: str = ""
    build_commit: str = ""
    source_commit: str = ""
    stage: str = ""
    reason: str = ""
    signed_by: list[str] = []  # with the allowed-signers file given: the principals who signed its tag


def split_tag(tag: str) -> tuple[str, str]:
    """`tools/<name>/<fingerprint>` → (name, fingerprint), if both are well-formed."""
    parts = tag.split("/")
    if len(parts) != 3 or parts[0] != "tools":
        raise InvalidVersion("name", "is not tools/<name>/<fingerprint>")
    name, fp = parts[1], parts[2]
    if not (NAME_RE.match(name) and len(name) <= MAX_NAME):
        raise InvalidVersion("name", f"{name!r} is not a valid tool name")
    if not _FP.match(fp):
        raise InvalidVersion("name", "its fingerprint is not 64 lowercase hex digits")
    return name, fp


def build_commit(git: pygit2.Repository, tag: str, target: pygit2.Oid | str) -> tuple[str, str, pygit2.Commit]:
    """The tool, fingerprint and build commit of a version tag whose name and object are well-formed (what
    any listing of versions needs); InvalidVersion otherwise."""
    name, fp = split_tag(tag)
    if not isinstance(target, pygit2.Oid):
        raise InvalidVersion("object", f"is a symbolic reference to {target}")
    obj = git.get(target)
    if obj is None:
        raise InvalidVersion("object", f"points at {str(target)[:10]}, which is not in this repository")
    if isinstance(obj, pygit2.Tag) and signing.tag_signature(git, obj.id) is not None:  # a signed version tag
        if obj.name != tag:
            raise InvalidVersion("object", f"points at a signed tag object named {obj.name[:80]!r}, not {tag!r}")
        obj = git.get(obj.target)
        if obj is None:
            raise InvalidVersion("object", "points at a signed tag of a commit that is not in this repository")
    if not isinstance(obj, pygit2.Commit):
        raise InvalidVersion("object", f"points at a {obj.type_str}, not a commit")
    if len(obj.parent_ids) != 1:
        raise InvalidVersion("object", f"is a commit with {len(obj.parent_ids) or 'no'} parent{'s' * (len(obj.parent_ids) != 1)}")
    return name, fp, obj


def contents(git: pygit2.Repository, name: str, fp: str, commit: pygit2.Commit) -> None:
    """Raise InvalidVersion unless `commit` is the build commit the builder writes around a tool.wasm of `fp`."""
    try:
        _contents(git, name, fp, commit)
    except (KeyError, ValueError, TypeError, pygit2.GitError) as e:  # objects missing or of the wrong type
        raise InvalidVersion("tree", f"its tree cannot be read: {e}") from None


def _contents(git: pygit2.Repository, name: str, fp: str, commit: pygit2.Commit) -> None:
    source = git.get(commit.parent_ids[0])
    if not isinstance(source, pygit2.Commit):
        raise InvalidVersion("tree", "its source commit is not in this repository")
    theirs = {e.name: (e.id, e.filemode) for e in source.tree}
    ours = {e.name: (e.id, e.filemode) for e in commit.tree if e.name != "build"}
    if "build" in theirs:
        raise InvalidVersion("tree", "its source tree has a build entry of its own")
    if ours != theirs:
        odd = sorted(set(ours) ^ set(theirs) | {k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k]})
        raise InvalidVersion("tree", f"its tree is not the source tree plus build/ ({', '.join(map(repr, odd))} differ)")
    if "tool.json" not in theirs or _json(git, theirs["tool.json"][0]).get("name") != name:
        raise InvalidVersion("tree", f"its source commit's tool.json does not name {name!r}")
    build = next((e for e in commit.tree if e.name == "build"), None)
    files = {e.name: e for e in git[build.id].peel(pygit2.Tree)} if build is not None and build.filemode == FileMode.TREE else {}
    if set(files) != {"tool.wasm", "build.json"} or any(e.filemode != FileMode.BLOB for e in files.values()):
        raise InvalidVersion("tree", f"build/ holds {', '.join(sorted(map(repr, files))) or 'nothing'}, "
                                     f"not exactly tool.wasm and build.json as regular files")
    wasm = git[files["tool.wasm"].id].peel(pygit2.Blob).data
    actual = hashlib.sha256(wasm).hexdigest()
    if actual != fp:
        raise InvalidVersion("wasm", f"tool.wasm hashes to {actual[:12]}, not {fp[:12]}")
    carried = interface_of(wasm)
    if carried is not None:
        for path in INTERFACE_FILES:
            try:
                data = source.tree[path].peel(pygit2.Blob).data
            except (KeyError, ValueError, pygit2.GitError):
                data = b""
            if carried.get(path) != hashlib.sha256(data).hexdigest():
                raise InvalidVersion("interface", f"tool.wasm was built for another {path} than its source commit's")
    record = _json(git, files["build.json"].id)
    if not record:
        raise InvalidVersion("build.json", "build/build.json is not a JSON object")
    for key, want in (("tool", name), ("fingerprint", fp), ("ok", True), ("wasm_bytes", len(wasm))):
        got = record.get(key, want if key == "wasm_bytes" else None)
        if got != want or type(got) is not type(want):
            raise InvalidVersion("build.json", f"build.json says {key} {got!r}, not {want!r}")
    expected = (BUILDER[0].encode(), BUILDER[1].encode(), source.committer.time, 0)
    for role, sig in (("author", commit.author), ("committer", commit.committer)):
        if (sig.raw_name, sig.raw_email, sig.time, sig.offset) != expected:
            who = f"{sig.raw_name.decode(errors='replace')} <{sig.raw_email.decode(errors='replace')}>"
            raise InvalidVersion("identity", f"its {role} is {who} at {sig.time}, not the builder at the source commit's time")
    if f"Evogit-Fingerprint: {fp}".encode() not in commit.raw_message:
        raise InvalidVersion("identity", "its message does not name the fingerprint")


def _json(git: pygit2.Repository, oid: pygit2.Oid) -> dict:
    """A blob's JSON object, or {} if it is anything else."""
    try:
        value = json.loads(git[oid].peel(pygit2.Blob).data)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def on_branch(git: pygit2.Repository, name: str, commit: pygit2.Commit, tips: Sequence[pygit2.Oid]) -> None:
    """Raise InvalidVersion unless the build commit's source commit is on the history of one of `tips`, or is a
    sibling: it forked from a version of this tool known here (where the two histories meet) and nothing on its
    way from there weakens the contract (two machines that both advanced a tool)."""
    source = commit.parent_ids[0]
    if not tips:
        raise InvalidVersion("lineage", f"there is no branch tools/{name}")
    if any(tip == source or git.descendant_of(tip, source) for tip in tips):
        return
    known = version_sources(git, name)
    for tip in tips:
        base = git.merge_base(tip, source)
        if base is not None and str(base) in known and _names(git, base) == name:
            if (weak := weakening(git, source, base)) is not None:
                raise InvalidVersion("lineage", f"a sibling of tools/{name}, but {weak[0]}")
            return
    raise InvalidVersion("lineage", f"its source commit {str(source)[:10]} is not on the history of tools/{name}, "
                                    "nor forked from a version of it known here")


def _names(git: pygit2.Repository, commit: pygit2.Oid) -> str | None:
    """The tool a source commit's tool.json names (None: it has none, e.g. the trunk's first commit)."""
    try:
        value = json.loads(git[git[commit].peel(pygit2.Commit).tree["tool.json"].id].peel(pygit2.Blob).data)
    except (KeyError, ValueError, RecursionError, pygit2.GitError):
        return None
    return value.get("name") if isinstance(value, dict) and isinstance(value.get("name"), str) else None


def version_sources(git: pygit2.Repository, name: str) -> set[str]:
    """The source commits of the version tags of tool `name` here (peeled; malformed tags are skipped)."""
    prefix, found = f"refs/tags/tools/{name}/", set()
    for ref in git.references.iterator():
        if ref.name.startswith(prefix):
            try:
                build = ref.peel(pygit2.Commit)
            except (KeyError, ValueError, pygit2.GitError):
                continue
            if len(build.parent_ids) == 1:
                found.add(str(build.parent_ids[0]))
    return found


def rebuilt(git: pygit2.Repository, name: str, fp: str, commit: pygit2.Commit, rebuild: Rebuild) -> None:
    """Raise InvalidVersion unless this machine builds the source commit to this very build commit."""
    try:
        local_fp, local_id = rebuild(commit.parents[0], name)
    except EvogitError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InvalidVersion("rebuild", f"does not build here: {first[:300]}") from None
    if local_fp != fp:
        raise InvalidVersion("rebuild", f"builds here to {local_fp[:12]}, not {fp[:12]}")
    if local_id != str(commit.id):
        raise InvalidVersion("rebuild", f"builds here to the same fingerprint but to build commit {local_id[:10]}, "
                                        f"not {str(commit.id)[:10]}: {difference(git, git[local_id], commit)}")


def difference(git: pygit2.Repository, ours: pygit2.Object, theirs: pygit2.Commit) -> str:
    """What differs between two build commits of the same wasm (so: metadata)."""
    mine = ours.peel(pygit2.Commit)
    parts = []
    if mine.raw_message != theirs.raw_message:
        parts.append("the message")
    for role in ("author", "committer"):
        a, b = getattr(mine, role), getattr(theirs, role)
        if (a.raw_name, a.raw_email, a.time, a.offset) != (b.raw_name, b.raw_email, b.time, b.offset):
            parts.append(f"the {role}")
    if mine.tree_id != theirs.tree_id:
        a, b = (_json(git, c.tree["build/build.json"].id) if "build" in c.tree else {} for c in (mine, theirs))
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        parts.append(f"build.json ({', '.join(keys)})" if keys else "the tree")
    return "they differ in " + ", ".join(parts) if parts else "they differ"


def check(git: pygit2.Repository, tag: str, target: pygit2.Oid | str, *,
          tips: Callable[[str], Sequence[pygit2.Oid]] | None = None, rebuild: Rebuild | None = None,
          signers: Path | None = None, intact: Callable[[str, str, pygit2.Commit], bool] | None = None) -> Verdict:
    """Every check on one version tag (`tools/<name>/<fp>` pointing at `target`): lineage only with `tips`
    (tool name → branch tips), the rebuild only with `rebuild`, the signature only with `signers` (the
    allowed-signers file: trust policy `signed`). `intact(name, fp, build commit)` may answer for the contents
    checks (tree to identity) from what it remembers (`SkillsRepo.intact`: once per build commit); when it says
    no, they run here, to give the reason."""
    verdict = Verdict(tag)
    try:
        name, fp, commit = build_commit(git, tag, target)
        verdict.tool, verdict.fingerprint = name, fp
        verdict.build_commit, verdict.source_commit = str(commit.id), str(commit.parent_ids[0])
        if intact is None or not intact(name, fp, commit):
            contents(git, name, fp, commit)
        if tips is not None:
            on_branch(git, name, commit, tips(name))
        if signers is not None:
            verdict.signed_by = signed_by_allowed(git, target, signers)
        if rebuild is not None:
            rebuilt(git, name, fp, commit, rebuild)
    except InvalidVersion as e:
        verdict.stage, verdict.reason = e.stage, str(e)
        return verdict
    verdict.ok = True
    return verdict


def signed_by_allowed(git: pygit2.Repository, target: pygit2.Oid | str, allowed: Path) -> list[str]:
    """The allowed principals who signed the version tag object `target`; InvalidVersion if none did."""
    if not isinstance(target, pygit2.Oid) or signing.tag_signature(git, target) is None:
        raise InvalidVersion("signature", "is not a signed tag (trust policy signed)")
    try:
        who = signing.tag_signers(git, target, allowed)
    except EvogitError as e:
        raise InvalidVersion("signature", f"its signature cannot be checked: {e}") from None
    if not who:
        raise InvalidVersion("signature", f"is signed by no key of the allowed-signers file {allowed}")
    return who


def trust_policy(config: pygit2.Config, remote: str | None = None) -> str:
    """How far version tags from `remote` are checked: `remote.<name>.evogitTrust`, else `evogit.trust`, else
    `rebuild` (every check and a rebuild here); `signed` is every check but the rebuild, and a tag signed by an
    allowed signer (gpg.ssh.allowedSignersFile); `hash` is every check but the rebuild, for a hub you control."""
    for key in ([f"remote.{remote}.evogitTrust"] if remote else []) + ["evogit.trust"]:
        if key in config:
            value = str(config[key]).strip().lower()
            if value not in TRUST:
                raise InvalidInput(f"git config {key} is {value!r}: use {' or '.join(TRUST)}")
            return value
    return "rebuild"


# -- the inheritance rule: a source commit keeps its parent's cases unless a trailer supersedes them ------------
_SUPERSEDES = re.compile(r"^Evogit-Supersedes: (.+?): (.+)$", re.M)
CASES_PATH = "tests/cases.jsonl"


def trailer_block(message: str) -> str:
    """The last paragraph of a commit message (where its trailers are, as git reads them)."""
    return message.strip().rsplit("\n\n", 1)[-1]


def supersedes(message: str) -> list[tuple[str, str]]:
    """The parent's cases a version no longer has to pass, and why (its commit's `Evogit-Supersedes` trailers).
    Trailers are read from the message's last paragraph only: evogit writes that paragraph itself after the
    task's text, so a task (or a model's words in it) cannot add or forge one."""
    return _SUPERSEDES.findall(trailer_block(message))


def cases_by_name(git: pygit2.Repository, commit: pygit2.Commit) -> dict[str, str]:
    """A source commit's cases by name, each as canonical JSON (what makes it the same case)."""
    try:
        blob = git[commit.tree[CASES_PATH].id]
    except KeyError:
        return {}
    if not isinstance(blob, pygit2.Blob):
        return {}
    out: dict[str, str] = {}
    for line in blob.data.decode("utf-8", "replace").splitlines():
        try:
            case = json.loads(line)
        except ValueError:
            continue
        if isinstance(case, dict) and isinstance(case.get("name"), str):
            out[case["name"]] = json.dumps(case, sort_keys=True)
    return out


def weakened(git: pygit2.Repository, commit: pygit2.Commit) -> str | None:
    """Why a tool's source commit weakens its parent's contract without saying so — a case of its parent
    (each parent, for a merge) missing or changed and not named by an `Evogit-Supersedes` trailer — or None."""
    if not commit.parents:
        return None
    mine = cases_by_name(git, commit)
    open_ = {case for case, _ in supersedes(commit.message)}
    for parent in commit.parents:
        for name, case in cases_by_name(git, parent).items():
            if name in open_:
                continue
            if name not in mine:
                return f"commit {str(commit.id)[:10]} drops the case {name!r} of its parent without an Evogit-Supersedes trailer"
            if mine[name] != case:
                return f"commit {str(commit.id)[:10]} changes the case {name!r} of its parent without an Evogit-Supersedes trailer"
    return None


def weakening(git: pygit2.Repository, tip: pygit2.Oid | str, base: pygit2.Oid | str | None) -> tuple[str, pygit2.Oid | None] | None:
    """None if no commit between `base` (exclusive; None: the root) and `tip` weakens its parent's contract
    without saying so; else the first reason (oldest commit first) and the newest commit on `tip`'s first-parent
    chain that holds no such commit (`base` or older: None), the sound part a pull may still take."""
    walker = git.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
    if base is not None:
        walker.hide(base)
    bad = [(c.id, why) for c in walker if (why := weakened(git, c)) is not None]
    if not bad:
        return None
    at: pygit2.Oid | None = pygit2.Oid(hex=str(tip))
    stop = pygit2.Oid(hex=str(base)) if base is not None else None
    while at is not None and at != stop:
        if all(at != b and not git.descendant_of(at, b) for b, _ in bad):
            return bad[0][1], at
        parents = git[at].peel(pygit2.Commit).parent_ids
        at = parents[0] if parents else None
    return bad[0][1], None
