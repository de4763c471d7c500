"""Search and learning: the fitted retrieval model and its FAISS index over the newest green version of every
tool (retrieval.py), kept per process and refitted only when its inputs change, the demand estimated from
the search log, and feedback that teaches it."""

from __future__ import annotations

import hashlib
import shutil
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import events as ev
from ..errors import InvalidInput, ToolNotFound
from ..events import split_key
from ..manifest import parse_manifest
from ..projections import EmbeddingState, State, task_key
from ..repo import SkillsRepo
from .running import Running, check_task
from .state import LocalState

if TYPE_CHECKING:  # numpy, faiss and the embedders load only when retrieval is used (cold `evogit run`)
    from ..embed import Embedder
    from ..retrieval import Candidate, Featurizer, Hit, Model


class _Vec(NamedTuple):
    text: str
    vector: Any


class Searching:
    """Owns the retrieval model (only the current one) and one featurizer per embedder."""

    def __init__(self, repo: SkillsRepo, state: LocalState, running: Running):
        self.repo, self.state, self.running = repo, state, running
        self._models: dict[str, tuple[Model, str]] = {}  # fingerprint -> (model, fingerprint of its fit)
        self._featurizers: dict[str, Featurizer] = {}  # embedder model id -> its featurizer

    def forget(self) -> None:
        """Drop the fitted model and its caches (after a replay: it is refitted from the new projections)."""
        shutil.rmtree(self.repo.state_dir / "retrieval", ignore_errors=True)
        self._models.clear()

    def feedback(self, spec: str, task: str, solved: bool, note: str = "") -> ev.Feedback:
        """Record whether a version solved a task (it teaches retrieval which tools serve which tasks)."""
        check_task(task)
        v = self.repo.resolve(spec)
        event = ev.Feedback(tool=v.name, fingerprint=v.fingerprint, task=task, solved=solved, note=note)
        self.state.log.append([event, *self.running.choice(task, v.key)])
        return event

    def search(self, query: str, k: int = 5, explain: bool = False) -> tuple[list[Hit], Embedder]:
        """Rank tools for a task: descriptions, tasks they solved before, failures, usage (retrieval.py)."""
        if not query.strip():
            raise InvalidInput("the search query is empty")
        check_task(query, "search query")
        model, embedder = self.retrieval_model()
        if model is None:
            return [], embedder
        hits = model.search(query, k, explain)
        model.featurize.save()
        self.state.log.append([ev.Retrieved(query=query, model=model.featurize.model_id, candidates=[h.key for h in hits])])
        return hits, embedder

    def fit(self, task: str, tool: str) -> float | None:
        """The calibrated chance that `tool` does what `task` asks (decide.fit), from how near the task is to what
        the tool is known for; None when it cannot be judged (no such tool in the index, or an embedder the
        calibration was not fitted for)."""
        from ..decide import CALIBRATED_FOR
        from ..decide import fit as fit_of

        model, embedder = self.retrieval_model()
        if model is None or embedder.model_id != CALIBRATED_FOR:
            return None
        nearest = model.nearness(task, tool)
        return None if nearest is None else fit_of(nearest)

    def retrieval_model(self) -> tuple[Model | None, Embedder]:
        """The fitted retrieval model and its FAISS index over the newest green version of every tool
        (None if there are no tools), from the projections; fitted once per distinct input and cached."""
        from ..embed import default_embedder
        from ..retrieval import Candidate, Featurizer, Model, fingerprint_of

        embedder = default_embedder()
        state = self.state.projections().state
        versions = self.repo.versions()
        latest = {}
        for name in self.repo.tools():
            try:
                latest[name] = self.repo.resolve(name, [v for v in versions if v.name == name])
            except ToolNotFound:
                continue
        solved: dict[str, dict[str, int]] = {}
        for key, tasks in state.served.items():
            tool = split_key(key)[0]
            for task, net in tasks.items():
                if net > 0:
                    solved.setdefault(tool, {})[task] = solved.get(tool, {}).get(task, 0) + net
        candidates = []
        for name, v in latest.items():
            key = v.key
            manifest = parse_manifest(self.repo.read(self.repo.commit(v.build_commit), "tool.json"), check_schemas=False)
            metrics = state.versions.get(key)
            failed = {t: -n for t, n in state.served.get(key, {}).items() if n < 0}
            # what the tool is for: its examples and its schemas in words, then every task it solved
            known = {text: 1 for text in (*manifest.examples, manifest.schema_text()) if text}
            tasks = {**known, **solved.get(name, {})}
            candidates.append(Candidate(key, name, f"{name}: {manifest.description}", tasks, failed,
                                        metrics.runs - metrics.refused if metrics else 0,  # runs that started
                                        metrics.success_rate if metrics else None))
        if not candidates:
            return None, embedder
        featurize = self._featurizers.get(embedder.model_id)
        if featurize is None or featurize.embedder is not embedder:
            slug = hashlib.sha1(embedder.model_id.encode()).hexdigest()[:12]
            featurize = Featurizer(embedder, self.repo.state_dir / "vectors" / f"{slug}.vec")
            self._featurizers[embedder.model_id] = featurize
        fp = fingerprint_of(candidates, featurize.model_id)
        embeddings = self.state.embeddings()
        remembered = (fp, id(embeddings), embeddings.applied)  # the same inputs: the featurizer knows every vector
        if featurize.remembered != remembered:
            self._remember_vectors(featurize, candidates, embeddings.state)
            featurize.remembered = remembered
        if fp in self._models:
            model, fit = self._models[fp]
        elif (fit := fingerprint_of(candidates, featurize.model_id, fit_only=True)) in (
                current := {f: m for m, f in self._models.values()}):
            model = current[fit]  # only usage changed (runs, success rates, failures): no refit, no rebuild
            model.use(candidates)
            self._models = {fp: (model, fit)}
        else:
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
        from ..retrieval import demand_window

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
            self.state.log.append([ev.Embedded(tool=c.tool, fingerprint=split_key(c.key)[1],
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
            self.state.log.append([ev.Embedded(tool="", fingerprint="", model=model, text=t, vector=[float(x) for x in v],
                                         id=ev.fact_id("embedded", model, task_key(t)))
                             for t, v in zip(new, vectors, strict=True)])

