"""The application service: every user-facing operation, called by the CLI, the authoring loop and (later) the
tool functions and the server. It returns typed values (results.py); formatting is the caller's business.

`Runtime` is the composition root. Each concern lives in its own module and owns its cache:

    state      LocalState   writer id, event log, projections caught up with it, replay
    building   Building     commits and builds (VersionCommitted / BuildSucceeded / BuildFailed)
    running    Running      load once per process, validate, run in the sandbox, run records to a sink
    library    Library      list, describe, lineage, stats, cost
    searching  Searching    the retrieval model and its FAISS index, search, feedback
    sharing    Sharing      push, pull, verify, git hooks

Collaborators can be passed in (a factory of the Builder — another compiler, sandbox or rules —, an in-memory
log, a run sink); the defaults are built here, in one place.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pygit2

from .. import events as ev
from .. import hooks, lineage
from ..build import Builder
from ..contract import RunOutcome
from ..errors import EvogitError, InvalidInput
from ..log import EventLog
from ..projections import Claims, EmbeddingProjector, Projector
from ..repo import SkillsRepo
from ..resources import resource
from ..sandbox import DEFAULT_LIMITS, Limits, shutdown
from ..share import PullReport, PushReport
from ..verify import TRUST, Verdict
from .building import Building, Progress
from .library import Library, supersedes
from .results import BuildOutcome, CostReport, Description, Supersession, ToolSummary, VersionStats
from .running import Running, RunSink, _Loaded, run_wasm
from .searching import Searching
from .sharing import Sharing
from .state import LocalState

if TYPE_CHECKING:
    from ..embed import Embedder
    from ..retrieval import Hit, Model

__all__ = ["BuildOutcome", "Description", "Progress", "Runtime", "Supersession", "ToolSummary", "default_repo_path",
           "run_wasm", "supersedes"]

_OPEN: weakref.WeakSet[Runtime] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At interpreter exit, before finalisation: close the runtimes still open and stop the epoch ticker, so
    that no wasmtime thread calls into a finalising interpreter (which aborts the process)."""
    for rt in list(_OPEN):
        rt.close()
    shutdown()


def default_repo_path() -> Path:
    """$EVOGIT_REPO, else the skills repository the current directory is in (as git finds its repository: a
    clone, a worktree), else ~/.evogit."""
    if os.environ.get("EVOGIT_REPO"):
        return Path(os.environ["EVOGIT_REPO"])
    try:
        found = pygit2.discover_repository(os.getcwd())
        if found is not None:
            return SkillsRepo(found).path
    except (OSError, pygit2.GitError, EvogitError):  # not in one, or in a git repository that is not a library
        pass
    return Path.home() / ".evogit"


class Runtime:
    """Operations on one skills repository."""

    def __init__(self, path: str | Path | None = None, run_sink: RunSink | None = None,
                 log: EventLog | None = None, *, builder: Callable[[SkillsRepo], Builder] = Builder):
        self.repo = SkillsRepo(path or default_repo_path())
        self.builder = builder(self.repo)
        self.state = LocalState(self.repo, log)
        self.building = Building(self.repo, self.builder, self.state)
        self.running = Running(self.repo, self.builder.sandbox, self.state, run_sink)
        self.library = Library(self.repo, self.builder, self.state)
        self.searching = Searching(self.repo, self.state, self.running)
        self.sharing = Sharing(self.repo, self.state, self.building)
        self.adopted: PullReport | None = None  # what `init(adopt=True)` took from the repository git made
        _OPEN.add(self)

    def close(self) -> None:
        """Release what the runtime holds: compiled modules, wasmtime's output callbacks of finished runs
        (see sandbox.settle), and the event log it opened (synced first). Called at exit for every runtime
        still open; the runtime opens what it needs again if used afterwards."""
        self.running.close()
        self.builder.sandbox.close()
        self.state.close()
        _OPEN.discard(self)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def init(cls, path: str | Path, *, starter: Path | None | bool = True, bare: bool = False,
             progress: Progress | None = None, require_signed: bool = False,
             adopt: bool = False) -> tuple[Runtime, list[BuildOutcome]]:
        """Create a skills repository, install its hooks and import + build the starter library. A hub made
        with `require_signed` takes only version tags signed by an allowed key and logs signed by their
        writer's key (evogit.requireSigned, and trust policy signed for what it checks itself).

        With `adopt` (`evogit init`), a repository git made (`git clone` of a skills repository or hub) that was
        never a skills repository first takes what it holds as `evogit pull` would (Sharing.arrived: local tool
        branches for the remote's, every version tag checked under the trust policy, unbuilt heads built); what
        was taken and refused is `rt.adopted`."""
        repo = SkillsRepo.init(path, bare=bare)
        hooks.install(repo.common_dir)  # git runs a worktree's hooks from there too
        if require_signed:
            repo.git.config["evogit.requireSigned"] = True
            repo.git.config["evogit.trust"] = "signed"
        rt = cls(path)
        rt.writer()  # fixed now, before two processes could pick different ids
        outcomes: list[BuildOutcome] = []
        if adopt and repo.first_init:  # before the starter import, which would start a tool the clone has
            rt.adopted, outcomes = rt.sharing.arrived(adopt=True, progress=progress)
        if starter:
            source = resource("skills-repo") if starter is True else Path(starter)
            outcomes += rt.import_tools(source, progress=progress)
        return rt, outcomes

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def log(self) -> EventLog:
        return self.state.log

    def writer(self) -> str:
        return self.state.writer()

    def projections(self) -> Projector:
        return self.state.projections()

    def embeddings(self) -> EmbeddingProjector:
        return self.state.embeddings()

    def replay(self, retrieval: bool = True, repair: bool = False) -> Projector:
        """Rebuild every projection from the whole log (`repair`: damaged log files first), then refit the
        retrieval model and its FAISS index from them (unless `retrieval` is False)."""
        projector = self.state.replay(repair)
        self.searching.forget()
        if retrieval:
            self.searching.retrieval_model()
        return projector

    # -- building ------------------------------------------------------------------------------------------------
    def import_tools(self, source: Path, progress: Progress | None = None) -> list[BuildOutcome]:
        return self.building.import_tools(source, progress)

    def build(self, revs: list[str] | None = None, *, force: bool = False,
              progress: Progress | None = None) -> list[BuildOutcome]:
        return self.building.build(revs, force=force, progress=progress)

    def commit(self, name: str, files: dict[str, bytes], message: str, *, build: bool = True) -> BuildOutcome:
        return self.building.commit(name, files, message, build=build)

    def committed_and_built(self, name: str, commit: str, message: str) -> BuildOutcome:
        return self.building.committed_and_built(name, commit, message)

    def fork(self, spec: str, new_name: str, description: str | None = None) -> BuildOutcome:
        return self.building.fork(spec, new_name, description)

    def resolve(self, tool: str, fingerprint: str) -> BuildOutcome:
        """End a divergence of `tool` by choosing the version `fingerprint` (share.resolve), and build the merge
        (the chosen version's tree: its binary, already tagged)."""
        from ..share import resolve

        resolve(self.repo, tool, fingerprint)
        return self.building.build([tool])[0]

    # -- running -------------------------------------------------------------------------------------------------
    @property
    def run_sink(self) -> RunSink:
        return self.running.run_sink

    @run_sink.setter
    def run_sink(self, sink: RunSink) -> None:
        self.running.run_sink = sink

    def default_limits(self) -> Limits:
        return self.running.default_limits()

    def load(self, spec: str) -> _Loaded:
        return self.running.load(spec)

    def run(self, spec: str, stdin: bytes, limits: Limits = DEFAULT_LIMITS, task: str | None = None) -> RunOutcome:
        return self.running.run(spec, stdin, limits, task)

    # -- reading -------------------------------------------------------------------------------------------------
    def list_tools(self) -> list[ToolSummary]:
        return self.library.list_tools()

    def describe(self, spec: str) -> Description:
        return self.library.describe(spec)

    def lineage(self, name: str) -> lineage.Lineage:
        return self.library.lineage(name)

    def stats(self, spec: str | None = None) -> dict[str, VersionStats]:
        return self.library.stats(spec)

    def cost(self) -> CostReport:
        return self.library.cost()

    def untrusted(self) -> tuple[dict[str, Claims], dict[str, int]]:
        """What the logs of writers this repository does not trust claim (counted, never applied), and how
        many events each writer had that were invalid (skipped)."""
        state = self.state.projections().state
        return dict(sorted(state.claims.items())), dict(sorted(state.invalid.items()))

    # -- search and learning ---------------------------------------------------------------------------------------
    def search(self, query: str, k: int = 5, explain: bool = False) -> tuple[list[Hit], Embedder]:
        return self.searching.search(query, k, explain)

    def fit(self, task: str, tool: str) -> float | None:
        return self.searching.fit(task, tool)

    def retrieval_model(self) -> tuple[Model | None, Embedder]:
        return self.searching.retrieval_model()

    def feedback(self, spec: str, task: str, solved: bool, note: str = "") -> ev.Feedback:
        return self.searching.feedback(spec, task, solved, note)

    # -- sharing -------------------------------------------------------------------------------------------------
    def push(self, remote: str | None = None) -> PushReport:
        return self.sharing.push(remote)

    def pull(self, remote: str | None = None,
             progress: Callable[[str], None] = lambda line: None) -> tuple[PullReport, list[BuildOutcome]]:
        return self.sharing.pull(remote, progress)

    @classmethod
    def clone(cls, url: str, path: str | Path, *, trust: str | None = None,
              progress: Callable[[str], None] = lambda line: None) -> tuple[Runtime, PullReport, list[BuildOutcome]]:
        """A working skills repository from a hub or another one: git clone (the user's git, credentials and
        configuration; no tags), evogit's state and hooks, then a pull from origin, which checks every version
        under the trust policy (`trust`: remote.origin.evogitTrust) and imports the logs."""
        from ..share import clone

        path = Path(path)
        if trust is not None and trust not in TRUST:
            raise InvalidInput(f"trust policy {trust!r}: use {' or '.join(TRUST)}")
        progress(f"cloning {url} into {path} (git clone)")
        clone(url, path)
        rt, _ = cls.init(path, starter=False)
        if trust is not None:
            rt.repo.git.config["remote.origin.evogitTrust"] = trust
        progress("hooks installed; pulling versions and logs from origin")
        report, outcomes = rt.pull("origin", progress)
        return rt, report, outcomes

    def verify(self, spec: str | None = None, rebuild: bool = False, signed: bool = False) -> list[Verdict]:
        return self.sharing.verify(spec, rebuild, signed)

    def on_hook(self, name: str, stdin: str = "") -> list[BuildOutcome]:
        return self.sharing.on_hook(name, stdin)

