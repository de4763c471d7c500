"""Sharing with plain git: push and pull of tool branches, version tags and event logs, verification of what
arrives (verify.py), and the git hooks that build what is committed, merged or pushed to a hub."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pygit2

from .. import hooks, signing
from ..errors import EvogitError, InvalidInput
from ..manifest import check_name
from ..projections import Claims
from ..repo import BRANCH_PREFIX, TAG_PREFIX, SkillsRepo, Version, branch_ref
from ..share import (
    PUSHED,
    QUARANTINE,
    PullReport,
    PushReport,
    accept_tags,
    default_remote,
    quarantine_pushed,
    require_signed,
    unsigned_updates,
)
from ..share import pull as git_pull
from ..share import push as git_push
from ..verify import Verdict, build_commit, check, trust_policy, weakening
from .building import Building, Progress
from .results import BuildOutcome
from .state import LocalState

ARRIVED = QUARANTINE + "arrived/"  # version tags git brought in itself (a clone, a fetch --tags), until checked
VOUCHED = "vouched-tags"  # in the state dir: "<tag> <target>" lines, each tag found sound here (checked once)


class Sharing:
    """Moves the library between machines, and builds what git hooks report."""

    def __init__(self, repo: SkillsRepo, state: LocalState, building: Building):
        self.repo, self.state, self.building = repo, state, building
        self.builder = building.builder

    def push(self, remote: str | None = None) -> PushReport:
        """Publish this machine's log into git and push tool branches, version tags and the log to `remote`
        (None: the upstream, as git chooses it): what was updated, and what was skipped as unsound here (see
        share.push)."""
        remote = remote or default_remote(self.repo)
        log = self.state.file_log()
        log.sync()
        return git_push(self.repo, log.dir, log.writer, remote)

    def pull(self, remote: str | None = None,
             progress: Callable[[str], None] = lambda line: None) -> tuple[PullReport, list[BuildOutcome]]:
        """Fetch tools, versions and logs from `remote` (None: the upstream, as git chooses it); fast-forward
        tool branches; build heads that arrived unbuilt."""
        remote = remote or default_remote(self.repo)
        log = self.state.file_log()
        report = git_pull(self.repo, log.dir, log.writer, remote, self._rebuilt, progress)
        if report.logs:  # what the logs that arrived claim, and whose count here
            trust, state = self.state.trust(), self.state.projections().state
            report.trusted = sorted(w for w in report.logs if w in trust)
            report.claims = {w: state.claims.get(w, Claims()) for w in sorted(report.logs) if w not in trust}
            report.invalid = {w: n for w, n in sorted(state.invalid.items()) if w in report.logs}
            report.unknown = {w: n for w, n in sorted(state.unknown.items()) if w in report.logs}
        moved = report.created + report.fast_forwarded
        if moved and trust_policy(self.repo.git.config, remote) == "signed":
            # under `signed`, code arrives as a version an allowed key vouched for or is not built: a head whose
            # signed tag was refused (or never came) would otherwise become a version of this machine's own
            for tool in list(moved):
                head = str(self.repo.head(tool).id)
                if not any(v.source_commit == head for v in self.repo.versions(tool)):
                    moved.remove(tool)
                    report.unbuilt[tool] = ("no version of its head signed by an allowed key arrived (trust policy "
                                            f"signed); `evogit build {tool}` builds it here")
        if moved:
            progress(f"building {len(moved)} tool head{'s' * (len(moved) != 1)} that arrived")
        return report, (self.building.build(moved) if moved else [])

    def verify(self, spec: str | None = None, rebuild: bool = False, signed: bool = False) -> list[Verdict]:
        """Check local version tags (all, one tool's, or one version) as a pulled tag is checked (verify.py);
        `rebuild` also rebuilds each here and compares the build commits; `signed` requires each tag signed by
        a key of the allowed-signers file (gpg.ssh.allowedSignersFile)."""
        signers = None
        if signed:
            signers = signing.allowed_signers(self.repo.git.config)
            if signers is None:
                raise InvalidInput("checking signatures needs an allowed-signers file: git config "
                                   "gpg.ssh.allowedSignersFile PATH")
        return self.repo.verify(spec, self._rebuilt if rebuild else None, signers)

    def _rebuilt(self, source: pygit2.Commit, name: str) -> tuple[str, str]:
        """Build a version's source commit here whatever tags say (verify.Rebuild): (fingerprint, build commit)."""
        v = self.builder.build(source, name, again=True)
        return v.fingerprint, v.build_commit

    # -- what plain git brought in --------------------------------------------------------------------------------
    def arrived(self, remote: str | None = None, *, adopt: bool = False,
                progress: Progress | None = None) -> tuple[PullReport, list[BuildOutcome]]:
        """Take what plain git brought in (a `git clone`, `git pull`, `git fetch --tags`) as `evogit pull` takes
        it, without fetching anything. With `adopt` (the first `evogit init` of a repository git made): a local
        tool branch for each remote-tracking one that has none, unless its commits weaken a contract (as a pull
        refuses them). Then every version tag not vouched for here is checked under the trust policy of `remote`
        (default: the upstream) and a refused one is taken out of refs/tags; then every tool head with no
        version and no build record is built (under trust `signed`, reported unbuilt instead)."""
        report, outcomes, _ = self._arrived(remote, adopt, progress)
        return report, outcomes

    def _arrived(self, remote: str | None, adopt: bool = False, progress: Progress | None = None,
                 ) -> tuple[PullReport, list[BuildOutcome], dict[str, str]]:
        """`arrived`, and the targets of the tags it checked."""
        if remote is None:
            remote = self._upstream()
        report = PullReport()
        if adopt and not self.repo.git.is_bare:
            self._adopt(report, remote)
        report.accepted_tags, report.refused_tags, targets = self._check_tags(remote)
        return report, self._build_unbuilt(report, remote, progress), targets

    def _upstream(self) -> str | None:
        try:
            return default_remote(self.repo)
        except EvogitError:  # no remote at all: the global trust policy
            return None

    def _adopt(self, report: PullReport, first: str | None) -> None:
        """A local tool branch for each remote-tracking one (of remote `first`, then the others) that has none,
        tracking it; one whose commits weaken a contract is taken only up to them, as a pull takes it. Each such
        remote gets `tagOpt --no-tags` unless it has a tagOpt."""
        git = self.repo.git
        names = sorted((n for n in git.remotes.names() if n), key=lambda n: (n != first, n))
        for remote in names:
            tracking = f"refs/remotes/{remote}/tools/"
            found = sorted(r.name for r in git.references.iterator() if r.name.startswith(tracking))
            if found and f"remote.{remote}.tagopt" not in git.config:
                # as `evogit clone` (git clone --no-tags) leaves it: a plain fetch or pull no longer brings version
                # tags unchecked (git follows every tag whose commit it has); `evogit pull` brings them checked
                git.config[f"remote.{remote}.tagOpt"] = "--no-tags"
            for ref_name in found:
                tool = ref_name[len(tracking):]
                try:
                    check_name(tool)
                    if branch_ref(tool) in git.references:
                        continue
                    tip = git.references[ref_name].peel(pygit2.Commit).id
                except EvogitError:
                    report.refused[ref_name] = "not a valid tool name; left alone"
                    continue
                except (KeyError, ValueError, pygit2.GitError):
                    report.refused[ref_name] = "does not point at a commit; left alone"
                    continue
                if (weak := weakening(git, tip, None)) is not None:
                    why, sound = weak
                    taken = f"; taken up to {str(sound)[:10]}, the commits before it" if sound is not None else ""
                    report.refused[ref_name] = f"{why}; not taken (its cases are its contract){taken}"
                    if sound is None:
                        continue
                    tip = sound
                git.references.create(branch_ref(tool), tip, force=False)
                # its upstream, as `git checkout tools/<name>` sets it: a plain `git pull` there works
                with contextlib.suppress(KeyError, ValueError, pygit2.GitError):
                    git.branches.local[f"tools/{tool}"].upstream = git.branches.remote[f"{remote}/tools/{tool}"]
                report.created.append(tool)

    def _check_tags(self, remote: str | None) -> tuple[list[str], dict[str, str], dict[str, str]]:
        """Check each version tag git brought in that is not vouched for here — not checked before, nor the
        build of a commit built here — as a pull checks it: moved into a quarantine, then `accept_tags` under the
        trust policy. Returns the tags accepted, those refused (taken out of refs/tags) with why, and the targets
        of the tags checked."""
        git, memory = self.repo.git, self.repo.state_dir / VOUCHED
        try:
            seen = set(memory.read_text().splitlines())
        except (OSError, UnicodeDecodeError):
            seen = set()
        vouched: list[str] = []
        fresh: list[tuple[str, str]] = []  # (ref name, target)
        for ref in git.references.iterator():
            ref_name = ref.name
            if not ref_name.startswith(TAG_PREFIX):
                continue
            tag, target = ref_name[len("refs/tags/"):], str(ref.target)
            if not isinstance(ref.target, pygit2.Oid) or f"{tag} {target}" in seen:  # a symbolic one: verify lists it
                continue
            if self._built_here(tag, ref.target):
                vouched.append(f"{tag} {target}")
            else:
                fresh.append((ref_name, target))
        accepted: list[str] = []
        refused: dict[str, str] = {}
        targets = {ref_name[len("refs/tags/"):]: target for ref_name, target in fresh}
        if fresh:
            for ref_name, target in fresh:
                git.references.create(ARRIVED + ref_name[len("refs/"):], pygit2.Oid(hex=target), force=True)
                with contextlib.suppress(KeyError, pygit2.GitError):  # another hook moved it meanwhile
                    git.references.delete(ref_name)
            accepted, refused, known = accept_tags(self.repo, ARRIVED, trust_policy(git.config, remote), self._rebuilt)
            refused.update(known)
            vouched += [f"{tag} {targets[tag]}" for tag in accepted if tag in targets]
        if vouched:
            try:
                with open(memory, "a") as f:  # one short line per write: appends never interleave
                    for line in vouched:
                        f.write(line + "\n")
            except OSError:  # a cache: the next hook checks them again
                pass
        return accepted, refused, targets

    def _built_here(self, tag: str, target: pygit2.Oid | str) -> bool:
        """Whether a version tag is the build of a source commit this repository built green to that fingerprint
        (its build record says so) and passes the checks short of a rebuild: this machine's own work."""
        try:
            name, fp, commit = build_commit(self.repo.git, tag, target)
        except EvogitError:  # InvalidVersion
            return False
        record = self.builder.last_record(str(commit.parent_ids[0]))
        return (record is not None and record.ok and record.tool == name and record.fingerprint == fp
                and check(self.repo.git, tag, target, tips=self.repo.tips).ok)

    def _build_unbuilt(self, report: PullReport, remote: str | None,
                       progress: Progress | None = None) -> list[BuildOutcome]:
        """Build every tool head that has no version (an intact tag on it) and was never built here (no build
        record): what arrived, and only that; not one whose version a pull fetched into its quarantine and has yet
        to decide on. Under trust `signed` such a head is reported in `report.unbuilt` instead, as a pull reports
        it: code arrives vouched for by an allowed key, or is not built."""
        built = {v.source_commit for v in self.repo.versions() if self.repo.intact(v)}
        pending: set[str] = set()  # versions a pull fetched and has yet to decide on (git runs this hook inside `evogit pull`
        # when it fast-forwards the checked-out branch): that pull takes or refuses them, then builds what is left;
        # a pull's quarantine keeps the tags it accepted (the remote's as last fetched): those are decided
        quarantined: list[pygit2.Reference] = []
        ours: dict[str, pygit2.Oid | str] = {}
        for ref in self.repo.git.references.iterator():
            if ref.name.startswith(QUARANTINE) and "/tags/tools/" in ref.name:
                quarantined.append(ref)
            elif ref.name.startswith(TAG_PREFIX):
                ours[ref.name] = ref.target
        for ref in quarantined:
            if ours.get("refs/tags/" + "/".join(ref.name.split("/")[-3:])) != ref.target:
                with contextlib.suppress(KeyError, ValueError, pygit2.GitError):
                    pending.update(str(p) for p in ref.peel(pygit2.Commit).parent_ids)
        todo = []
        for tool in self.repo.tools():
            head = self.repo.head(tool)
            if str(head.id) in built or str(head.id) in pending or self.builder.last_record(head) is not None:
                continue
            todo.append(tool)
        if todo and trust_policy(self.repo.git.config, remote) == "signed":
            for tool in todo:
                report.unbuilt[tool] = ("no version of its head signed by an allowed key (trust policy signed); "
                                        f"`evogit build {tool}` builds it here")
            return []
        return self.building.build(todo, progress=progress) if todo else []

    def on_hook(self, name: str, stdin: str = "") -> list[BuildOutcome]:
        """Build what a git hook reports: HEAD after a commit; after a merge (`git pull`, `git merge`), what
        arrived (`arrived`: version tags checked, unbuilt tool heads built), and so after a rebase (`git pull
        --rebase`: post-rewrite); pushed tool branch tips on receive."""
        if name in ("post-merge", "post-rewrite"):
            report, outcomes, targets = self._arrived(None)
            for tag in report.accepted_tags:
                _, fp, build = build_commit(self.repo.git, tag, pygit2.Oid(hex=targets[tag]))
                outcomes.append(BuildOutcome(tag.split("/")[1], str(build.parent_ids[0]), version=Version(
                    tag.split("/")[1], fp, str(build.id), str(build.parent_ids[0]))))
            for tag, why in report.refused_tags.items():
                outcomes.append(BuildOutcome(tag.split("/")[1] if "/" in tag else tag, targets.get(tag, ""),
                                             error=f"tag {tag} refused: {why}"))
            for tool, why in report.unbuilt.items():
                outcomes.append(BuildOutcome(tool, str(self.repo.head(tool).id), error=f"not built: {why}"))
            return outcomes
        if name == "post-commit":
            if self.repo.git.head_is_unborn or self.repo.git.head_is_detached:
                return []
            ref = self.repo.git.head.name
            if not ref.startswith(BRANCH_PREFIX):
                return []
            tool = ref[len(BRANCH_PREFIX):]
            return [self.building.build_one(self.repo.head(tool), tool)]
        if name == "pre-receive":  # the hook runs this only on a hub that requires signing
            pushed = [(p[0], p[1], p[2]) for p in (line.split() for line in stdin.splitlines()) if len(p) == 3]
            if require_signed(self.repo.git.config) and (unsigned := unsigned_updates(self.repo, pushed)):
                raise EvogitError("push refused (this hub requires signing): " + "; ".join(unsigned))
            return []
        if name == "post-receive":
            # the pushed tags first: a pushed head whose version arrived with it and passes this hub's trust policy
            # is not compiled again (a hub under `rebuild` rebuilds each version to accept it); then the heads left
            # without a version are built
            updates = [parts for parts in (line.split() for line in stdin.splitlines()) if len(parts) == 3]
            quarantine_pushed(self.repo, [(new, ref) for _, new, ref in updates])  # out of refs/tags until checked
            targets = {r.name[len(PUSHED) + 5:]: str(r.target) for r in self.repo.git.references.iterator()
                       if r.name.startswith(PUSHED + "tags/")}
            _, refused, known = accept_tags(self.repo, PUSHED, trust_policy(self.repo.git.config), self._rebuilt)
            outcomes = []
            versions: dict[tuple[str, str], Version] | None = None  # (source commit, tool) -> an intact version
            for _, new, ref in updates:
                if ref.startswith(BRANCH_PREFIX) and set(new) != {"0"}:
                    try:  # a pushed branch that no tool could be named after is reported, not built
                        tool = check_name(ref[len(BRANCH_PREFIX):])
                    except EvogitError as e:  # InvalidName
                        outcomes.append(BuildOutcome("?", new, error=str(e)))
                        continue
                    if versions is None:
                        versions = {(v.source_commit, v.name): v for v in self.repo.versions() if self.repo.intact(v)}
                    if (version := versions.get((new, tool))) is not None:
                        outcomes.append(BuildOutcome(tool, new, version=version))
                        continue
                    outcomes.append(self.building.build_one(self.repo.commit(new), tool))
            for tag, why in {**known, **refused}.items():
                outcomes.append(BuildOutcome(tag.split("/")[1] if "/" in tag else tag, targets.get(tag, ""),
                                             error=f"tag {tag} refused: {why}"))
            return outcomes
        raise InvalidInput(f"unknown hook {name!r} (known: {', '.join(hooks.HOOKS)})")


