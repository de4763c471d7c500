"""Sharing with plain git: push and pull of tool branches, version tags and event logs, verification of what
arrives (verify.py), and the git hooks that build what is committed, merged or pushed to a hub."""

from __future__ import annotations

from collections.abc import Callable

import pygit2

from .. import hooks, signing
from ..errors import EvogitError, InvalidInput
from ..manifest import check_name
from ..projections import Claims
from ..repo import BRANCH_PREFIX, SkillsRepo
from ..share import (
    PUSHED,
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
from ..verify import Verdict, trust_policy
from .building import Building
from .results import BuildOutcome
from .state import LocalState


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

    def on_hook(self, name: str, stdin: str = "") -> list[BuildOutcome]:
        """Build what a git hook reports: HEAD after a commit or merge, pushed tool branch tips on receive."""
        if name in ("post-commit", "post-merge"):
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
            updates = [parts for parts in (line.split() for line in stdin.splitlines()) if len(parts) == 3]
            quarantine_pushed(self.repo, [(new, ref) for _, new, ref in updates])  # pushed tags are checked below
            outcomes = []
            for _, new, ref in updates:
                if ref.startswith(BRANCH_PREFIX) and set(new) != {"0"}:
                    try:  # a pushed branch that no tool could be named after is reported, not built
                        tool = check_name(ref[len(BRANCH_PREFIX):])
                    except EvogitError as e:  # InvalidName
                        outcomes.append(BuildOutcome("?", new, error=str(e)))
                        continue
                    outcomes.append(self.building.build_one(self.repo.commit(new), tool))
            targets = {r[len(PUSHED) + 5:]: str(self.repo.git.references[r].target)
                       for r in self.repo.git.references if r.startswith(PUSHED + "tags/")}
            _, refused, known = accept_tags(self.repo, PUSHED, trust_policy(self.repo.git.config), self._rebuilt)
            for tag, why in {**known, **refused}.items():
                outcomes.append(BuildOutcome(tag.split("/")[1] if "/" in tag else tag, targets.get(tag, ""),
                                             error=f"tag {tag} refused: {why}"))
            return outcomes
        raise InvalidInput(f"unknown hook {name!r} (known: {', '.join(hooks.HOOKS)})")


