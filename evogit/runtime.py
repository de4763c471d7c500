"""The application service: every user-facing operation, called by the CLI (and later the agent and server).

It returns plain data; formatting is the caller's business.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import secrets
import shutil
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import msgspec
import pygit2

from . import events as ev
from . import hooks, jsonio, lineage
from . import limits as limits_mod
from .build import Builder, BuildRecord
from .contract import Contract, RunOutcome, interpret
from .errors import BuildFailed, EvogitError, InvalidInput, InvalidJSON, SandboxError, ToolExists, ToolNotFound
from .log import EventLog, FileLog, default_writer, warn
from .manifest import ToolManifest, check_name, manifest_json, parse_cases, parse_manifest
from .projections import (
    EmbeddingProjector,
    EmbeddingState,
    Projector,
    State,
    VersionMetrics,
    open_embeddings,
    open_projections,
    refresh,
    replay_all,
    task_key,
)
from .repo import BRANCH_PREFIX, SkillsRepo, Version, branch_ref, parse_spec
from .resources import resource
from .sandbox import DEFAULT_LIMITS, Limits, LoadedModule, RunResult, Sandbox, shutdown
from .share import PUSHED, PullReport, accept_tags, import_logs, quarantine_pushed, repair_logs
from .share import pull as git_pull
from .share import push as git_push
from .verify import Verdict, trust_policy

if TYPE_CHECKING:  # numpy, faiss and the embedders load only when retrieval is used (cold `evogit run`)
    from .embed import Embedder
    from .retrieval import Candidate, Featurizer, Hit, Model

Progress = Callable[[str, int, int, "BuildOutcome | None"], None]
P = TypeVar("P", Projector, EmbeddingProjector)


@dataclass
class BuildOutcome:
    """The result of building one source commit: a version, or the record of why not."""

    tool: str
    commit: str
    version: Version | None = None
    record: BuildRecord | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.version is not None


@dataclass
class ToolSummary:
    name: str
    description: str
    latest: Version | None
    versions: int
    head: str
    head_status: str  # green, failed or unbuilt


RunSink = Callable[[ev.ToolRun], None]


def _run_event(outcome: RunOutcome, stdin: bytes, result: RunResult | None, task: str | None) -> ev.ToolRun:
    return ev.ToolRun(
        tool=outcome.tool, fingerprint=outcome.fingerprint, input_sha256=hashlib.sha256(stdin).hexdigest(),
        ok=outcome.ok, error=outcome.error, exit_code=outcome.exit_code, wall_ms=round(outcome.wall_ms, 3),
        cpu_ms=round(result.cpu_ms, 3) if result else 0.0, fuel=outcome.fuel,
        output_bytes=len(result.stdout) if result else 0, task=task,
    )


class _Vec(NamedTuple):
    text: str
    vector: Any


@dataclass
class _Loaded:
    version: Version
    manifest: ToolManifest
    wasm: bytes
    contract: Contract = field(repr=False)
    module: LoadedModule | None = field(default=None, repr=False)


_OPEN: weakref.WeakSet[Runtime] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At interpreter exit, before finalisation: close the runtimes still open and stop the epoch ticker, so
    that no wasmtime thread calls into a finalising interpreter (which aborts the process)."""
    for rt in list(_OPEN):
        rt.close()
    shutdown()


_SUPERSEDES = re.compile(r"^Evogit-Supersedes: (.+?): (.+)$", re.M)


def supersedes(message: str) -> list[tuple[str, str]]:
    """The parent's cases a version no longer has to pass, and why (its commit's `Evogit-Supersedes` trailers)."""
    return _SUPERSEDES.findall(message)


def default_repo_path() -> Path:
    return Path(os.environ.get("EVOGIT_REPO") or Path.home() / ".evogit")


class Runtime:
    """Operations on one skills repository."""

    def __init__(self, path: str | Path | None = None, run_sink: RunSink | None = None,
                 log: EventLog | None = None):
        self.repo = SkillsRepo(path or default_repo_path())
        self.builder = Builder(self.repo)
        self._log = log
        self.run_sink: RunSink = run_sink or self._log_run
        self._loaded: dict[str, _Loaded] = {}
        self._resolved: dict[str, tuple[str | None, _Loaded]] = {}
        self._models: dict[str, tuple[Model, str]] = {}  # fingerprint -> (model, fingerprint of its fit)
        self._featurizers: dict[str, Featurizer] = {}  # embedder model id -> its featurizer
        self._metrics: Projector | None = None
        self._embeddings: EmbeddingProjector | None = None
        self._own_log = log is None
        _OPEN.add(self)

    def close(self) -> None:
        """Release what the runtime holds: compiled modules, wasmtime's output callbacks of finished runs
        (see sandbox.settle), and the event log it opened (synced first). Called at exit for every runtime
        still open; the runtime opens what it needs again if used afterwards."""
        self._loaded.clear()
        self._resolved.clear()
        self.builder.sandbox.close()
        if self._own_log and isinstance(self._log, FileLog):
            self._log.close()
            self._log = None
        _OPEN.discard(self)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _log_run(self, event: ev.ToolRun) -> None:
        self.log.append([event])

    @property
    def log(self) -> EventLog:
        """This repository's event log (`.git/evogit/log/`), opened on first use."""
        if self._log is None:
            self._log = FileLog(self.repo.state_dir / "log", self.writer())
        return self._log

    def writer(self) -> str:
        """This repository's writer id: $EVOGIT_WRITER, else `evogit.writer` from git config, else a new
        `<host>-<random>` stored there, so that two clones on one machine never share a log."""
        if env := os.environ.get("EVOGIT_WRITER"):
            return env
        config = self.repo.git.config
        if "evogit.writer" in config:
            return str(config["evogit.writer"])
        host = re.sub(r"[^A-Za-z0-9_-]+", "-", default_writer()).strip("-")[:40] or "local"
        existing = self.repo.state_dir / "log" / f"{host}.log"  # a log made before writer ids were stored
        writer = host if existing.exists() else f"{host}-{secrets.token_hex(3)}"
        config["evogit.writer"] = writer
        return writer

    def projections(self) -> Projector:
        """The projections, loaded from their snapshot and caught up with the log (and with logs of other
        machines that arrived by git). A runtime keeps them, and later calls read only the events since."""
        self._metrics = self._caught_up(self._metrics, "projections.msgpack", open_projections)
        return self._metrics

    def embeddings(self) -> EmbeddingProjector:
        """The embeddings of versions and tasks (a projection of its own: only a search needs them)."""
        self._embeddings = self._caught_up(self._embeddings, "embeddings.msgpack", open_embeddings)
        return self._embeddings

    def _caught_up(self, projector: P | None, name: str, open_: Callable[[EventLog, Path], P]) -> P:
        self._import_logs()
        path = self.repo.state_dir / name
        if projector is None:
            return open_(self.log, path)
        refresh(projector, self.log, path)
        return projector

    def replay(self, retrieval: bool = True, repair: bool = False) -> Projector:
        """Throw the projections away and rebuild them from the whole log; then refit the retrieval model
        and its FAISS index from them (unless `retrieval` is False). With `repair`, damaged log files are
        rewritten first from what can still be read (share.repair_logs; each repair is reported)."""
        if repair:
            if self._own_log and isinstance(self._log, FileLog):
                self._log.close()
                self._log = None
            for line in repair_logs(self.repo, self.repo.state_dir / "log", self.writer()):
                warn(line)
        self._import_logs()
        projector, self._embeddings = replay_all(self.log, self.repo.state_dir / "projections.msgpack",
                                                 self.repo.state_dir / "embeddings.msgpack")
        self._metrics = projector
        shutil.rmtree(self.repo.state_dir / "retrieval", ignore_errors=True)
        self._models.clear()
        if retrieval:
            self.retrieval_model()
        return projector

    def _import_logs(self) -> None:
        if isinstance(self.log, FileLog):
            import_logs(self.repo, self.log.dir, self.log.writer)  # refused logs are reported by `pull`

    # -- sharing -----------------------------------------------------------------------------------------------
    def _file_log(self) -> FileLog:
        if not isinstance(self.log, FileLog):
            raise EvogitError("this runtime's event log is in memory; there is nothing to share")
        return self.log

    def push(self, remote: str) -> list[str]:
        """Publish this machine's log into git and push tool branches, version tags and the log; returns the
        remote refs that were updated."""
        log = self._file_log()
        log.sync()
        return git_push(self.repo, log.dir, log.writer, remote)

    def pull(self, remote: str) -> tuple[PullReport, list[BuildOutcome]]:
        """Fetch tools, versions and logs; fast-forward tool branches; build heads that arrived unbuilt."""
        log = self._file_log()
        report = git_pull(self.repo, log.dir, log.writer, remote, self._rebuilt)
        moved = report.created + report.fast_forwarded
        return report, (self.build(moved) if moved else [])

    def verify(self, spec: str | None = None, rebuild: bool = False) -> list[Verdict]:
        """Check local version tags (all, one tool's, or one version) as a pulled tag is checked (verify.py);
        `rebuild` also rebuilds each here and compares the build commits."""
        return self.repo.verify(spec, self._rebuilt if rebuild else None)

    def _rebuilt(self, source: pygit2.Commit, name: str) -> tuple[str, str]:
        """Build a version's source commit here whatever tags say (verify.Rebuild): (fingerprint, build commit)."""
        v = self.builder.build(source, name, again=True)
        return v.fingerprint, v.build_commit

    def feedback(self, spec: str, task: str, solved: bool, note: str = "") -> ev.Feedback:
        """Record whether a version solved a task (it teaches retrieval which tools serve which tasks)."""
        _check_task(task)
        v = self.repo.resolve(spec)
        event = ev.Feedback(tool=v.name, fingerprint=v.fingerprint, task=task, solved=solved, note=note)
        self.log.append([event, *self._choice(task, f"{v.name}@{v.fingerprint}")])
        return event

    def _choice(self, task: str, version: str) -> list[ev.Retrieved]:
        """The caller's choice for a task it searched for and has not yet chosen for (the first run or feedback
        with that task after the search), as a Retrieved event without candidates (and so without a model)."""
        search = self.projections().state.searches.get(task_key(task))
        if search is None or search.chosen > search.order:
            return []
        return [ev.Retrieved(query=task, model="", candidates=[], choice=version)]

    def stats(self, spec: str | None = None) -> dict[str, dict[str, Any]]:
        """Metrics per version ("tool@fingerprint"), of one version, of one tool's versions, or of all."""
        versions = self.projections().state.versions
        if spec is None:
            keys = sorted(versions)
        elif "@" in spec:
            v = self.repo.resolve(spec)
            keys = [f"{v.name}@{v.fingerprint}"]
        else:
            self.repo.head(check_name(spec))
            keys = sorted(k for k in versions if k.rpartition("@")[0] == spec)
        out = {k: versions[k].summary() if k in versions else VersionMetrics().summary() for k in keys}
        self._add_lineage(out, versions)
        return out

    def cost(self) -> dict[str, Any]:
        """Tokens spent writing tools (every attempt of creates, mutations and teaching, rejected ones too), per
        tool and per model, from the log."""
        state = self.projections().state
        tools = {name or "(unnamed)": {"tokens": c.tokens, "prompt_tokens": c.prompt_tokens,
                                      "completion_tokens": c.completion_tokens, "attempts": c.attempts,
                                      "green": c.green, "by_kind": c.by_kind, "seconds": c.ms / 1000}
                 for name, c in sorted(state.costs.items())}
        models = {name: {"calls": m.calls, "failed": m.failed, "tokens": m.prompt_tokens + m.completion_tokens,
                         "prompt_tokens": m.prompt_tokens, "completion_tokens": m.completion_tokens,
                         "latency_ms": m.latency_ms, "by_purpose": m.by_purpose}
                  for name, m in sorted(state.models.items())}
        return {"tools": tools, "models": models, "tokens": sum(m["tokens"] for m in models.values())}

    def _add_lineage(self, out: dict[str, dict[str, Any]], versions: dict[str, VersionMetrics]) -> None:
        """Lineage-aware summaries: children, descendants, and the best descendant by success rate (runs
        break ties; at least one run). Lineage comes from git ancestry, metrics from the log."""
        graph = lineage.graph(self.repo)
        by_key = {f"{n.version.name}@{n.version.fingerprint}": n for n in graph.nodes.values()}
        for key, summary in out.items():
            node = by_key.get(key)
            seen: set[str] = set()
            stack = list(node.children) if node else []
            while stack:
                child = stack.pop()
                if child not in seen:
                    seen.add(child)
                    stack.extend(graph.nodes[child].children)
            best: tuple[float, int, str] | None = None
            for short in seen:
                v = graph.nodes[short].version
                m = versions.get(f"{v.name}@{v.fingerprint}")
                if m is not None and m.runs and (best is None or (m.ok / m.runs, m.runs) > best[:2]):
                    best = (m.ok / m.runs, m.runs, f"{v.name}@{v.fingerprint}")
            summary["children"] = len(node.children) if node else 0
            summary["descendants"] = len(seen)
            summary["best_descendant"] = ({"version": best[2], "success_rate": round(best[0], 4), "runs": best[1]}
                                          if best else None)

    def search(self, query: str, k: int = 5, explain: bool = False) -> tuple[list[Hit], Embedder]:
        """Rank tools for a task: descriptions, tasks they solved before, failures, usage (retrieval.py)."""
        if not query.strip():
            raise InvalidInput("the search query is empty")
        model, embedder = self.retrieval_model()
        if model is None:
            return [], embedder
        hits = model.search(query, k, explain)
        model.featurize.save()
        self.log.append([ev.Retrieved(query=query, model=model.featurize.model_id, candidates=[h.key for h in hits])])
        return hits, embedder

    def retrieval_model(self) -> tuple[Model | None, Embedder]:
        """The fitted retrieval model and its FAISS index over the newest green version of every tool
        (None if there are no tools), from the projections; fitted once per distinct input and cached."""
        from .embed import default_embedder
        from .retrieval import Candidate, Featurizer, Model, fingerprint_of

        embedder = default_embedder()
        state = self.projections().state
        versions = self.repo.versions()
        latest = {}
        for name in self.repo.tools():
            try:
                latest[name] = self.repo.resolve(name, [v for v in versions if v.name == name])
            except ToolNotFound:
                continue
        solved: dict[str, dict[str, int]] = {}
        for key, tasks in state.served.items():
            tool = key.rpartition("@")[0]
            for task, net in tasks.items():
                if net > 0:
                    solved.setdefault(tool, {})[task] = solved.get(tool, {}).get(task, 0) + net
        candidates = []
        for name, v in latest.items():
            key = f"{v.name}@{v.fingerprint}"
            manifest = parse_manifest(self.repo.read(self.repo.commit(v.build_commit), "tool.json"), check_schemas=False)
            metrics = state.versions.get(key)
            failed = {t: -n for t, n in state.served.get(key, {}).items() if n < 0}
            # what the tool is for: its examples and its schemas in words, then every task it solved
            known = {text: 1 for text in (*manifest.examples, manifest.schema_text()) if text}
            tasks = {**known, **solved.get(name, {})}
            candidates.append(Candidate(key, name, f"{name}: {manifest.description}", tasks, failed,
                                        metrics.runs if metrics else 0,
                                        (metrics.ok / metrics.runs) if metrics and metrics.runs else None))
        if not candidates:
            return None, embedder
        featurize = self._featurizers.get(embedder.model_id)
        if featurize is None or featurize.embedder is not embedder:
            slug = hashlib.sha1(embedder.model_id.encode()).hexdigest()[:12]
            featurize = Featurizer(embedder, self.repo.state_dir / "vectors" / f"{slug}.vec")
            self._featurizers[embedder.model_id] = featurize
        fp = fingerprint_of(candidates, featurize.model_id)
        embeddings = self.embeddings()
        remembered = (fp, id(embeddings), embeddings.applied)  # the same inputs: the featurizer knows every vector
        if featurize.remembered != remembered:
            self._remember_vectors(featurize, candidates, embeddings.state)
            featurize.remembered = remembered
        if fp in self._models:
            model, fit = self._models[fp]
        else:
            fit = fingerprint_of(candidates, featurize.model_id, fit_only=True)
            cache = self.repo.state_dir / "retrieval" / f"{fit[:32]}.npy"
            model = Model(featurize, candidates, cache)
            self._models = {fp: (model, fit)}  # only the current one: a long-lived runtime sees many
            for stale in cache.parent.glob("*.npy"):  # one fitted model is kept: the current one
                if stale != cache:
                    stale.unlink(missing_ok=True)
        self._set_demand(model, fit, state)
        return model, embedder

    def _set_demand(self, model: Model, fit: str, state: State) -> None:
        """Estimate what the recent searches ask for (retrieval.demand_window) and add it to the model's
        scores; the shares are cached per fit and window, and re-estimated once per DEMAND_EVERY searches."""
        from .retrieval import demand_window

        window = demand_window([(s.order, (key, s.text)) for key, s in state.searches.items() if s.text])
        if not window:
            if model.demand_share is not None:
                model.set_demand(None)
                model.demand_cache = None
            return
        key = hashlib.sha256("/".join([fit, *(k for k, _ in window)]).encode()).hexdigest()[:32]
        cache = self.repo.state_dir / "retrieval" / f"{key}.demand"
        if model.demand_from([text for _, text in window], cache):
            model.featurize.save()
            for stale in cache.parent.glob("*.demand"):  # the current estimate is kept
                if stale != cache:
                    stale.unlink(missing_ok=True)

    def _remember_vectors(self, featurize: Featurizer, candidates: list[Candidate], state: EmbeddingState) -> None:
        """Vectors of tool descriptions and of the tasks tools solved or failed come from Embedded events;
        new ones are embedded once and logged, so they travel with the log and replay needs no model."""
        import numpy as np

        model = featurize.embedder.model_id
        known: dict[str, Any] = dict(state.vectors.get(model, {}))
        fresh = [c for c in candidates if c.key not in known or known[c.key].text != c.text]
        if fresh:
            vectors = featurize.embedder.embed([c.text for c in fresh])
            self.log.append([ev.Embedded(tool=c.tool, fingerprint=c.key.rpartition("@")[2],
                                         model=model, text=c.text,
                                         vector=[float(x) for x in vec]) for c, vec in zip(fresh, vectors, strict=True)])
            for c, vec in zip(fresh, vectors, strict=True):
                known[c.key] = _Vec(c.text, vec)
        featurize.prefill({c.text: np.asarray(known[c.key].vector, np.float32) for c in candidates})

        tasks = state.tasks.get(model, {})
        featurize.prefill({k: np.frombuffer(t.vector, np.float32) for k, t in tasks.items()}, by_key=True)
        texts = sorted({t for c in candidates for t in (*c.solved, *c.failed)} - {c.text for c in candidates})
        new = [t for t in texts if task_key(t) not in tasks]
        if new:
            vectors = featurize.semantic(new)  # from the local cache when it has them
            self.log.append([ev.Embedded(tool="", fingerprint="", model=model, text=t, vector=[float(x) for x in v],
                                         id=ev.fact_id("embedded", model, task_key(t)))
                             for t, v in zip(new, vectors, strict=True)])

    # -- creating a library ------------------------------------------------------------------------------------
    @classmethod
    def init(cls, path: str | Path, *, starter: Path | None | bool = True, bare: bool = False,
             progress: Progress | None = None) -> tuple[Runtime, list[BuildOutcome]]:
        """Create a skills repository, install its hooks and import + build the starter library."""
        repo = SkillsRepo.init(path, bare=bare)
        hooks.install(Path(repo.git.path))
        rt = cls(path)
        rt.writer()  # fixed now, before two processes could pick different ids
        outcomes: list[BuildOutcome] = []
        if starter:
            source = resource("skills-repo") if starter is True else Path(starter)
            outcomes = rt.import_tools(source, progress=progress)
        return rt, outcomes

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
                self._committed(manifest.name, self.repo.commit_version(manifest.name, files, message), message)
            outcome = self._build(self.repo.head(manifest.name), manifest.name)
            outcomes.append(outcome)
            if progress:
                progress(d.name, i + 1, len(dirs), outcome)
        return outcomes

    # -- reading -----------------------------------------------------------------------------------------------
    def list_tools(self) -> list[ToolSummary]:
        versions = self.repo.versions()
        by_tool: dict[str, list[Version]] = {}
        for v in versions:
            by_tool.setdefault(v.name, []).append(v)
        out = []
        for name in self.repo.tools():
            head = self.repo.head(name)
            mine = by_tool.get(name, [])
            try:
                latest: Version | None = self.repo.resolve(name, mine)
            except ToolNotFound:
                latest = None
            if any(v.source_commit == str(head.id) for v in mine):
                status = "green"
            else:
                record = self.builder.last_record(head)
                # a head that built to a binary already tagged (same code, new cases) is green as that version
                status = "unbuilt" if record is None else "green" if record.ok else "failed"
            try:
                description = parse_manifest(self.repo.read(head, "tool.json"), check_schemas=False).description
            except EvogitError:
                description = "(tool.json is invalid)"
            out.append(ToolSummary(name, description, latest, len(mine), str(head.id), status))
        return out

    def describe(self, spec: str) -> dict[str, Any]:
        """Everything about one version: manifest, schemas, cases, build record, lineage."""
        v = self.repo.resolve(spec)
        build = self.repo.commit(v.build_commit)
        manifest = parse_manifest(self.repo.read(build, "tool.json"), check_schemas=False)
        cases = parse_cases(self.repo.read(build, "tests/cases.jsonl"))
        lin = lineage.for_tool(self.repo, v.name)
        node = lin.nodes.get(v.short)
        head = self.repo.head(v.name)
        source = self.repo.commit(v.source_commit)
        return {
            "tool": v.name, "version": v.short, "fingerprint": v.fingerprint,
            "description": manifest.description, "tags": manifest.tags,
            "input_schema": manifest.input_schema, "output_schema": manifest.output_schema,
            "cases": [msgspec.to_builtins(c) for c in cases],
            "build": jsonio.decode(self.repo.read(build, "build/build.json"), what="build/build.json"),
            "source_commit": v.source_commit, "build_commit": v.build_commit,
            "message": source.message.strip(),
            "superseded": [{"case": case, "reason": reason} for case, reason in supersedes(source.message)],
            "author": f"{source.author.name} <{source.author.email}>",
            "parents": node.parents if node else [], "children": node.children if node else [],
            "versions": [x.short for x in self.repo.versions(v.name)],
            "head": str(head.id), "head_is_this_version": str(head.id) == v.source_commit,
            "metrics": self.stats(f"{v.name}@{v.fingerprint}")[f"{v.name}@{v.fingerprint}"],
        }

    def lineage(self, name: str) -> lineage.Lineage:
        return lineage.for_tool(self.repo, check_name(name))

    # -- building ----------------------------------------------------------------------------------------------
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
            outcome = self._build(commit, branch, force=force)
            outcomes.append(outcome)
            if progress:
                progress(label, i + 1, len(targets), outcome)
        return outcomes

    def _build(self, commit: pygit2.Commit, branch: str | None, *, force: bool = False) -> BuildOutcome:
        try:
            version = self.builder.build(commit, branch, force=force)
            outcome = BuildOutcome(version.name, str(commit.id), version=version)
            record = self.builder.last_record(commit)
            self.log.append([ev.BuildSucceeded(
                tool=version.name, commit=str(commit.id), fingerprint=version.fingerprint,
                unit_tests=record.unit_tests.get("passed", 0) if record else 0,
                cases=len(record.cases) if record else 0,
                id=ev.fact_id("build", str(commit.id), version.fingerprint))])
        except BuildFailed as e:
            record = e.record if isinstance(e.record, BuildRecord) else None
            outcome = BuildOutcome(record.tool if record else (branch or "?"), str(commit.id), record=record,
                                   error=str(e))
            self.log.append([ev.BuildFailed(
                tool=outcome.tool, commit=str(commit.id), stage=(record.stage or "") if record else "",
                message=(record.message or "") if record else str(e),
                id=ev.fact_id("build-failed", str(commit.id), (record.message or "") if record else str(e)))])
        return outcome

    def committed_and_built(self, name: str, commit: str, message: str) -> BuildOutcome:
        """Record a source commit made for `name` elsewhere (the authoring loop) and build it."""
        self._committed(name, commit, message)
        return self._build(self.repo.commit(commit), name)

    def _committed(self, name: str, commit: str, message: str) -> str:
        self.log.append([ev.VersionCommitted(tool=name, commit=commit, message=message.splitlines()[0],
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
        commit = self._committed(new_name, self.repo.commit_version(new_name, files, message), message)
        return self._build(self.repo.commit(commit), new_name)

    def commit(self, name: str, files: dict[str, bytes], message: str, *, build: bool = True) -> BuildOutcome:
        """Commit a new source version of `name` (as evogit's own commits do) and build it."""
        oid = self._committed(name, self.repo.commit_version(name, files, message), message)
        if not build:
            return BuildOutcome(name, oid)
        return self._build(self.repo.commit(oid), name)

    # -- running -----------------------------------------------------------------------------------------------
    def default_limits(self) -> Limits:
        """Run limits from the repo's git config (`evogit.timeout`, `evogit.fuel`, `evogit.memory` in MiB,
        `evogit.maxOutput` and `evogit.maxInput` in bytes), falling back to the built-in defaults; a value out of
        its range is an InvalidLimit naming the key (evogit/limits.py)."""
        return limits_mod.from_config(self.repo.git.config, DEFAULT_LIMITS)

    def load(self, spec: str) -> _Loaded:
        """Resolve and load a version once per process; a bare name is re-resolved only if its branch moved."""
        name, prefix = parse_spec(spec)
        ref = None if prefix else self.repo.git.references.get(branch_ref(name))
        marker = str(ref.target) if ref is not None else None
        cached = self._resolved.get(spec)
        if cached is not None and cached[0] == marker:
            return cached[1]
        v = self.repo.resolve(spec)
        hit = self._loaded.get(v.build_commit)
        if hit is None:
            build = self.repo.commit(v.build_commit)
            manifest = parse_manifest(self.repo.read(build, "tool.json"), check_schemas=False)
            hit = _Loaded(v, manifest, self.repo.read(build, "build/tool.wasm"), Contract(manifest))
            self._loaded[v.build_commit] = hit
        self._resolved[spec] = (marker, hit)
        return hit

    def run(self, spec: str, stdin: bytes, limits: Limits = DEFAULT_LIMITS, task: str | None = None) -> RunOutcome:
        """Validate input, run the version in the sandbox, validate output; a ToolRun event goes to the sink
        (the log), with the task it served if the caller says."""
        if task is not None:
            _check_task(task)
        if self.run_sink == self._log_run:
            _ = self.log  # a damaged log (LogCorrupted) fails the run before it starts, not after
        outcome, result = self._run(self.load(spec), stdin, limits)
        self.run_sink(_run_event(outcome, stdin, result, task))
        if task and (choice := self._choice(task, f"{outcome.tool}@{outcome.fingerprint}")):
            self.log.append(choice)
        return outcome

    def _run(self, tool: _Loaded, stdin: bytes, limits: Limits) -> tuple[RunOutcome, RunResult | None]:
        v = tool.version
        outcome = RunOutcome(v.name, v.fingerprint, ok=False)
        if len(stdin) > limits.max_input:
            outcome.error, outcome.detail = "invalid_input", _too_large(limits)
            return outcome, None
        try:
            value = jsonio.decode(stdin, what="input")
        except InvalidJSON as e:
            outcome.error, outcome.detail = "invalid_input", str(e)
            return outcome, None
        problem = tool.contract.input_problem(value)
        del value  # the tool reads the bytes: a big input's decoded copy need not live through the run
        if problem:
            outcome.error, outcome.detail = "invalid_input", problem
            return outcome, None
        if tool.module is None:
            try:
                tool.module = self.builder.sandbox.load(tool.wasm, v.fingerprint)  # verifies the fingerprint
            except SandboxError as e:
                outcome.error, outcome.detail = e.kind, str(e)
                return outcome, None
        loaded = tool.module
        result = self.builder.sandbox.run(loaded, stdin, limits, argv=(v.name,))
        interpret(outcome, result, tool.contract)
        return outcome, result

    # -- hooks -------------------------------------------------------------------------------------------------
    def on_hook(self, name: str, stdin: str = "") -> list[BuildOutcome]:
        """Build what a git hook reports: HEAD after a commit or merge, pushed tool branch tips on receive."""
        if name in ("post-commit", "post-merge"):
            if self.repo.git.head_is_unborn or self.repo.git.head_is_detached:
                return []
            ref = self.repo.git.head.name
            if not ref.startswith(BRANCH_PREFIX):
                return []
            tool = ref[len(BRANCH_PREFIX):]
            return [self._build(self.repo.head(tool), tool)]
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
                    outcomes.append(self._build(self.repo.commit(new), tool))
            targets = {r[len(PUSHED) + 5:]: str(self.repo.git.references[r].target)
                       for r in self.repo.git.references if r.startswith(PUSHED + "tags/")}
            _, refused, known = accept_tags(self.repo, PUSHED, trust_policy(self.repo.git.config), self._rebuilt)
            for tag, why in {**known, **refused}.items():
                outcomes.append(BuildOutcome(tag.split("/")[1] if "/" in tag else tag, targets.get(tag, ""),
                                             error=f"tag {tag} refused: {why}"))
            return outcomes
        raise InvalidInput(f"unknown hook {name!r} (known: {', '.join(hooks.HOOKS)})")


def run_wasm(path: Path, stdin: bytes, limits: Limits = DEFAULT_LIMITS) -> RunOutcome:
    """Run any WASI command module under the same sandbox and limits, without schemas or a repository."""
    wasm = Path(path).read_bytes()
    sandbox = Sandbox()
    try:
        loaded = sandbox.load(wasm, cache=False)  # only modules evogit compiled itself are ever deserialized
    except SandboxError as e:
        return RunOutcome(Path(path).name, "", ok=False, error=e.kind, detail=str(e))
    outcome = RunOutcome(Path(path).name, loaded.fingerprint, ok=False)
    if len(stdin) > limits.max_input:  # no schema, so nothing is decoded, but the size limit holds
        outcome.error, outcome.detail = "invalid_input", _too_large(limits)
        return outcome
    return interpret(outcome, sandbox.run(loaded, stdin, limits, argv=(Path(path).stem,)))


def _too_large(limits: Limits) -> str:
    return f"input is larger than {limits.max_input:,} bytes (raise --max-input or git config evogit.maxInput)"


def _check_task(task: str) -> None:
    if not task.strip():
        raise InvalidInput("the task is blank: say what the tool was used for")


def _is_branch(repo: SkillsRepo, name: str) -> bool:
    try:
        return f"{BRANCH_PREFIX}{name}" in repo.git.references
    except ValueError:  # not a valid ref name (too long, odd characters): no tool has it
        return False
