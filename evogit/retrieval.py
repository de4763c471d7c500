"""Retrieval that learns from use: rank tools for a task by what they say they do *and* by the tasks they
served before.

Features are the semantic embedding concatenated with the lexical one (names, rare words, which way a
conversion goes). A multinomial logistic regression is fitted over the tools, starting from their description
vectors, pulled toward them by a prior worth a few examples (so a tool known from a handful of texts ranks
much as its description does), and trained on the descriptions plus every task a tool solved (Feedback, and
runs recorded with a task). A version that failed a task is demoted for similar tasks, and usage and
success rate act as small priors. The fitted tool vectors live in a FAISS inner-product index (the bias is
one more dimension), so a query is one search. `explain` says where a score came from; every hit carries what a fast-path decision needs
(evogit.decide): the model's probability for it and how near the query is to what it is known for.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np

from .atomic import write_atomic
from .embed import Embedder, Lexical
from .projections import task_key

# faiss's OpenMP threads and numpy's BLAS threads oversubscribe 2 cores: a tiny fit went from 0.1 s to 7 s.
# One thread is also what single queries want (design note §6).
faiss.omp_set_num_threads(1)
T = TypeVar("T")

TEMPERATURE = 20.0
EPOCHS = 80  # full-batch steps, while the examples fit in one batch
BATCH = 2048  # beyond that, mini-batches (a fixed shuffle): the fit's cost stops growing with the solved tasks
BATCH_STEPS = 120
LEARNING_RATE = 2.0
MOMENTUM = 0.7  # Nesterov: the ranks of 300 plain gradient steps (bench_retrieval) in a quarter of the time
# The prior: each tool's vector is pulled toward its description's (the zero-shot ranking) as if by this many
# examples, so a tool known from a handful of texts stays near zero-shot and one with many solved tasks is
# fitted by them. The small L2 toward 0 alone let the fit memorise a fresh starter library's 4-5 texts per
# tool (training loss 0.000 after 13 epochs) with words that outweighed the descriptions: word-frequency
# ranked 21st for "count how many times each word occurs", which its description alone ranks first. The L2
# stays: without it ToolE's fixed split (bench_retrieval) gives 75.3 / 91.8, with it 75.6 / 92.1.
PRIOR_EXAMPLES = 4.0
L2 = 1e-3
# Share of a version's lead over the median score that a failure takes away, per failure (up to 3), scaled by
# how similar the failed task is to the query (0 at similarity 0.5, 1 at the same task): failing this very task
# twice brings it down to the median. A share, not a number of logits, so it does not depend on the fit's scale.
DEMOTION = 0.5
# Demand: how often each tool is asked for, estimated from the log's recent searches (unlabeled queries) by EM
# over the fitted model's posteriors (label-shift adaptation, Saerens et al. 2002), shrunk toward the share each
# tool had in the fit's examples by DEMAND_PSEUDO searches per tool, and added as
# DEMAND_WEIGHT * log(demand share / share in the fit), within ±DEMAND_CLIP: the fit already leans toward the
# tools that solved many tasks, so only demand beyond that counts.
DEMAND_WEIGHT = 0.75
DEMAND_PSEUDO = 5.0
DEMAND_CLIP = 1.5
DEMAND_STEPS = 20
# A search counts toward demand as far as it is like something the tools are known for (cosine of its semantic
# vector to the nearest description or solved task: 0 up to DEMAND_ON[0], 1 from DEMAND_ON[1]; MiniLM): a search
# that no tool fits (an agent about to create one) would otherwise raise whichever tool is closest to everything.
# On ToolE 95% of queries are at 0.47 or more from the tools they belong to, and 95% of them at 0.31 or less
# from the starter library.
DEMAND_ON = (0.3, 0.5)
DEMAND_WINDOW = 2000  # the newest searches it is estimated from...
DEMAND_EVERY = 50  # ...re-estimated once per this many new searches (a pure function of the log, cached)
POSTERIOR_DEPTH = 1024  # a hit's probability is normalised over this many best tools (all, in smaller libraries)


@dataclass
class Candidate:
    key: str  # "tool@fingerprint"
    tool: str
    text: str  # "name: description"
    solved: dict[str, int] = field(default_factory=dict)  # task -> times solved (any version of the tool)
    failed: dict[str, int] = field(default_factory=dict)  # task -> times this version failed it
    runs: int = 0
    success_rate: float | None = None


@dataclass
class Hit:
    key: str
    tool: str
    score: float
    why: dict[str, Any]
    description: str = ""
    # What a decision needs (evogit.decide): the model's probability that this is the tool (softmax over the
    # scores of every tool, or of the best POSTERIOR_DEPTH), the cosine of the query's semantic vector to the
    # nearest text the tool is known for (its description, examples, solved tasks), the cosine of its
    # description to the next hit's (two tools that say nearly the same are easily confused: csv-to-json and
    # json-to-csv), and its runs and success rate.
    probability: float = 0.0
    nearest: float = 0.0
    like_next: float = 0.0
    runs: int = 0
    success_rate: float | None = None


class Featurizer:
    """Text -> [semantic ⊕ lexical] unit vectors. Semantic vectors are memoised; the ones this machine
    embedded (queries, mostly) are appended to `store` if given (derived data: deleting it only costs
    re-embedding)."""

    def __init__(self, embedder: Embedder, store: Path | None = None):
        self.embedder = embedder
        self.lexical = Lexical()
        self.model_id = embedder.model_id + ("" if isinstance(embedder, Lexical) else "+" + Lexical.model_id)
        self.store = store
        self._semantic: dict[str, np.ndarray] = _read_vectors(store) if store is not None else {}
        self._new: dict[str, np.ndarray] = {}
        self.remembered: object = None  # the caller's note of what it last prefilled from
        self._dim: int | None = None

    def prefill(self, semantic: dict[str, np.ndarray], by_key: bool = False) -> None:
        """Use semantic vectors computed earlier (e.g. from Embedded events), by text or by `task_key`; one that
        is not of the embedder's dimension, or not finite, is passed over (embedded again when needed)."""
        vectors = {k: np.asarray(v, np.float32) for k, v in semantic.items()}
        dim = self.dim(vectors.values())
        for text, v in vectors.items():
            if v.ndim == 1 and v.shape[0] == dim and np.isfinite(v).all():
                self._semantic.setdefault(text if by_key else task_key(text), v)

    def dim(self, others: Iterable[np.ndarray] = ()) -> int | None:
        """The embedder's dimension: one it has made here, else the commonest among `others` (vectors from the
        log: a forged one of another length is outvoted by the honest ones it would break)."""
        if self._dim is None:
            known = next(iter(self._semantic.values()), None)
            if known is not None:
                self._dim = int(known.shape[0])
            else:
                lengths = Counter(int(v.shape[0]) for v in others if v.ndim == 1)
                return lengths.most_common(1)[0][0] if lengths else None
        return self._dim

    def semantic(self, texts: list[str]) -> np.ndarray:
        """The semantic vectors alone (embedding only what is not known yet)."""
        self._ensure(texts)
        return np.array([self._semantic[task_key(t)] for t in texts], np.float32)

    def _ensure(self, texts: list[str]) -> list[str]:
        keys = [task_key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in self._semantic))
        if missing:
            for text, vec in zip(missing, self.embedder.embed(missing), strict=True):
                self._semantic[task_key(text)] = self._new[task_key(text)] = vec.astype(np.float32)
        return keys

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), np.float32)
        keys = self._ensure(texts)
        parts = [np.array([self._semantic[k] for k in keys], np.float32)]
        if not isinstance(self.embedder, Lexical):
            parts.append(self.lexical.embed(texts))
        feats = np.hstack(parts)
        feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        return feats.astype(np.float32)

    def save(self) -> None:
        """Append what was embedded since the last save to the store."""
        if self.store is not None and self._new:
            _append_vectors(self.store, self._new)
            self._new = {}


# The vector store: a header (magic, dimensions) and fixed-size records (sha1 of the text, float32 vector),
# appended under an exclusive lock. A torn last record is ignored on reading and cut before the next append.
_MAGIC = b"EVV1"


def _records(dim: int) -> np.dtype:
    return np.dtype([("key", "u1", (20,)), ("vec", "<f4", (dim,))])


def _read_vectors(path: Path) -> dict[str, np.ndarray]:
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if len(data) < 8 or data[:4] != _MAGIC:
        return {}
    records = _records(int.from_bytes(data[4:8], "little"))
    table = np.frombuffer(data, records, count=(len(data) - 8) // records.itemsize, offset=8)
    return {key.tobytes().hex(): vec for key, vec in zip(table["key"], table["vec"], strict=True)}


def _append_vectors(path: Path, new: dict[str, np.ndarray]) -> None:
    dim = len(next(iter(new.values())))
    records = _records(dim)
    table = np.zeros(len(new), records)
    table["key"] = np.frombuffer(b"".join(bytes.fromhex(k) for k in new), np.uint8).reshape(-1, 20)
    table["vec"] = np.array(list(new.values()), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        size = f.seek(0, os.SEEK_END)
        header = os.pread(f.fileno(), 8, 0)
        if size < 8 or header != _MAGIC + dim.to_bytes(4, "little"):
            f.truncate(0)  # new, or made by another model's dimensions: start over
            f.write(_MAGIC + dim.to_bytes(4, "little"))
        elif (size - 8) % records.itemsize:
            f.truncate(size - (size - 8) % records.itemsize)  # a torn record from a crash
        f.write(table.tobytes())


class Model:
    """Fitted tool vectors in a FAISS index, with what is needed to explain and demote."""

    def __init__(self, featurize: Featurizer, candidates: list[Candidate], cache: Path | None = None):
        """Fit (or load from `cache`, a file named by what the fit depends on) the tool vectors. With the fit
        cached, the descriptions and solved tasks are featurized only if a search asks for explanations."""
        self.featurize, self.candidates = featurize, candidates
        n = len(candidates)
        # sorted, so that the fit does not depend on the order the projections saw the tasks in
        self.solved_tasks = [(task, j) for j, c in enumerate(candidates) for task, t in sorted(c.solved.items()) if t > 0]
        dim = featurize([candidates[0].text]).shape[1]
        labels = np.array(list(range(n)) + [j for _, j in self.solved_tasks])
        # each task a tool solved counts once, however often: solving it again changes its priors (runs and
        # success rate, at query time), not the fit, so a repeated task never costs a refit
        weights = np.ones(len(labels))
        self.fit_share = np.bincount(labels, weights, minlength=n) / weights.sum()  # each tool's share of the fit
        fitted = _load_fit(cache, dim, n) if cache is not None else None
        if fitted is None:
            x = self._features
            fitted = _fit(x, labels, weights.astype(np.float32), x[:n].copy())
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(cache, np.hstack([fitted[0], fitted[1][:, None]]).astype(np.float32).tobytes())
        self.weights, self.bias = fitted
        self.demand = np.zeros(n, np.float32)
        self.demand_share: np.ndarray | None = None
        self.demand_cache: Path | None = None  # the file the demand was loaded from or saved to
        self.use(candidates)

    def use(self, candidates: list[Candidate]) -> None:
        """Take the candidates' usage (runs, success rates, failures), applied at query time: the same fit
        (equal `fingerprint_of(..., fit_only=True)`), new priors, demotions and index, without refitting."""
        self.candidates = candidates
        self.failed_tasks = [(task, j) for j, c in enumerate(candidates) for task, t in sorted(c.failed.items()) if t > 0]
        self.failed_counts = [min(3, candidates[j].failed[task]) for task, j in self.failed_tasks]
        self.priors = np.array([_prior(c) for c in candidates], np.float32)
        self._index()
        self.failed_vecs = self.featurize([t for t, _ in self.failed_tasks]) if self.failed_tasks else None

    def _index(self) -> None:
        self.index = faiss.IndexFlatIP(self.weights.shape[1] + 1)
        self.index.add(np.hstack([self.weights * TEMPERATURE, (self.bias + self.priors + self.demand)[:, None]])
                       .astype(np.float32))

    def estimate_demand(self, queries: list[str]) -> np.ndarray:
        """Each candidate's share of the demand behind `queries` (past searches, whose tools are unknown):
        EM over the fitted model's posteriors (without any demand of its own), shrunk toward `fit_share`; each
        search weighs as much as it is like what the tools are known for (DEMAND_ON)."""
        n = len(self.candidates)
        if not queries:
            return self.fit_share
        known = self.featurize.semantic([c.text for c in self.candidates] + [task for task, _ in self.solved_tasks])
        nearest = (self.featurize.semantic(queries) @ known.T).max(1)
        weight = np.clip((nearest - DEMAND_ON[0]) / (DEMAND_ON[1] - DEMAND_ON[0]), 0.0, 1.0)[:, None]
        z = TEMPERATURE * (self.featurize(queries) @ self.weights.T) + self.bias + self.priors
        z -= z.max(1, keepdims=True)
        posterior = np.exp(z.astype(np.float64))
        posterior /= posterior.sum(1, keepdims=True)
        share = self.fit_share
        for _ in range(DEMAND_STEPS):
            q = posterior * (share / self.fit_share)
            q *= weight / q.sum(1, keepdims=True)
            share = (q.sum(0) + DEMAND_PSEUDO * n * self.fit_share) / (weight.sum() + DEMAND_PSEUDO * n)
        return share

    def set_demand(self, share: np.ndarray | None) -> None:
        """Add the demand (shares from `estimate_demand`, None for none) to every candidate's score."""
        self.demand_share = share
        self.demand = (np.zeros(len(self.candidates)) if share is None else
                       np.clip(DEMAND_WEIGHT * np.log(share / self.fit_share), -DEMAND_CLIP, DEMAND_CLIP)).astype(np.float32)
        self._index()

    def demand_from(self, queries: list[str], cache: Path) -> bool:
        """Set the demand behind `queries`, loaded from `cache` (a file named by what the estimate depends on)
        if it is there, else estimated and saved to it; True if it was estimated."""
        if self.demand_cache == cache:
            return False
        self.demand_cache = cache
        try:
            share = np.frombuffer(cache.read_bytes(), np.float64)
        except OSError:
            share = np.zeros(0)
        fresh = share.size != len(self.candidates)
        if fresh:
            share = self.estimate_demand(queries)
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, share.tobytes())
        self.set_demand(share)
        return fresh

    @cached_property
    def _features(self) -> np.ndarray:
        """Descriptions, then solved tasks (the fit's rows): for explanations."""
        return self.featurize([c.text for c in self.candidates] + [task for task, _ in self.solved_tasks])

    @cached_property
    def _known(self) -> list[np.ndarray]:
        """Per candidate, the semantic vectors of its description (first) and of the tasks it solved."""
        texts = [c.text for c in self.candidates] + [task for task, _ in self.solved_tasks]
        owner = np.array(list(range(len(self.candidates))) + [j for _, j in self.solved_tasks])
        vectors = self.featurize.semantic(texts)
        order = np.argsort(owner, kind="stable")
        return np.split(vectors[order], np.cumsum(np.bincount(owner, minlength=len(self.candidates)))[:-1])

    @property
    def desc(self) -> np.ndarray:
        return self._features[: len(self.candidates)]

    @property
    def solved_vecs(self) -> np.ndarray | None:
        return self._features[len(self.candidates):] if self.solved_tasks else None

    def nearness(self, query: str, tool: str) -> float | None:
        """The cosine of `query` to the nearest text `tool` is known for (what a hit's `nearest` is), or None
        if no candidate is that tool."""
        for j, c in enumerate(self.candidates):
            if c.tool == tool:
                return float((self._known[j] @ self.featurize.semantic([query])[0]).max())
        return None

    def search(self, query: str, k: int = 5, explain: bool = False) -> list[Hit]:
        q = self.featurize([query])
        n = len(self.candidates)
        depth = n if self.failed_tasks else min(n, max(k, POSTERIOR_DEPTH))
        scores, idx = self.index.search(np.hstack([q, [[1.0]]]).astype(np.float32), depth)
        found = idx[0] >= 0
        order, score = idx[0][found], scores[0][found].astype(np.float64)  # best first
        demoted: dict[int, tuple[str, float, float]] = {}  # candidate -> (task, similarity, penalty)
        if self.failed_vecs is not None:
            median = float(np.median(score))
            at = np.full(n, -1)
            at[order] = np.arange(len(order))
            worst: dict[int, tuple[str, float, float]] = {}  # candidate -> (task, similarity, share) of its worst failure
            sims = self.failed_vecs @ q[0]
            for (task, j), sim, times in zip(self.failed_tasks, sims, self.failed_counts, strict=True):
                share = min(1.0, DEMOTION * times * (round(float(sim), 4) - 0.5) / 0.5)  # the same task: 1, not 0.9999999
                if share > 0 and at[j] >= 0 and score[at[j]] > median and (j not in worst or share > worst[j][2]):
                    worst[j] = (task, float(sim), share)
            for j, (task, sim, share) in worst.items():
                lowered = median + (1.0 - share) * (score[at[j]] - median)  # exactly the median at a share of 1
                demoted[j] = (task, sim, float(score[at[j]] - lowered))
                score[at[j]] = lowered
        # demotion only moves versions down: the new top k is among the first k + (number demoted)
        head = [(int(j), float(v)) for j, v in zip(order[:k + len(demoted)], score[:k + len(demoted)], strict=True)]
        top = sorted(head, key=lambda item: (-item[1], item[0] in demoted))[:k]  # a tie: demoted last
        logz = float(np.logaddexp.reduce(score))
        qs = self.featurize.semantic([query])[0]
        hits = []
        for j, value in top:
            c = self.candidates[j]
            why: dict[str, Any] = {}
            if explain:
                why["description_similarity"] = round(float(self.desc[j] @ q[0]), 4)
                if self.solved_vecs is not None:
                    mine = [(t, float(v @ q[0])) for (t, jj), v in zip(self.solved_tasks, self.solved_vecs, strict=True) if jj == j]
                    if mine:
                        task, sim = max(mine, key=lambda item: item[1])
                        why["closest_solved_task"] = {"task": task, "similarity": round(sim, 4), "tasks_solved": len(mine)}
                if j in demoted:
                    why["demoted_for_failing"] = {"task": demoted[j][0], "similarity": round(demoted[j][1], 4),
                                                  "penalty": round(demoted[j][2], 4)}
                why["prior"] = round(float(self.priors[j]), 4)
                if self.demand_share is not None:
                    why["demand"] = {"share_of_searches": round(float(self.demand_share[j]), 4),
                                     "boost": round(float(self.demand[j]), 4)}
                why["runs"], why["success_rate"] = c.runs, c.success_rate
            hits.append(Hit(c.key, c.tool, round(value, 4), why, c.text.removeprefix(f"{c.tool}: "),
                            probability=float(np.exp(value - logz)), nearest=float((self._known[j] @ qs).max()),
                            runs=c.runs, success_rate=c.success_rate))
        for (j, _), (after, _), h in zip(top, top[1:], hits, strict=False):
            h.like_next = float(self._known[j][0] @ self._known[after][0])
        return hits


def demand_window(searches: list[tuple[tuple[int, str, int], T]]) -> list[T]:
    """The searches demand is estimated from: of those made so far, as (order, query), the first
    `DEMAND_EVERY * k` in log order (k as large as possible), and of those the newest DEMAND_WINDOW."""
    ordered = sorted(searches, key=lambda item: item[0])
    cut = len(ordered) - len(ordered) % DEMAND_EVERY
    return [query for _, query in ordered[max(0, cut - DEMAND_WINDOW):cut]]


def _load_fit(path: Path, dim: int, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        flat = np.frombuffer(path.read_bytes(), np.float32)
    except OSError:
        return None
    if flat.size != n * (dim + 1):
        return None
    table = flat.reshape(n, dim + 1)
    return table[:, :dim].copy(), table[:, dim].copy()


def _prior(c: Candidate) -> float:
    """Usage and success as a small nudge on the logit scale (at most ±0.3)."""
    if c.success_rate is None or not c.runs:
        return 0.0
    return 0.6 * (c.success_rate - 0.5) * min(1.0, c.runs / 20)


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, init: np.ndarray,
         dual: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted softmax regression by gradient descent with Nesterov momentum, the weights pulled toward `init`
    (PRIOR_EXAMPLES) and a little toward 0 (L2): full batch while the examples fit in one, else BATCH_STEPS
    mini-batches in a fixed shuffle (deterministic either way). In a full batch a rising objective halves the
    step and drops the momentum: with the prior, the fixed step oscillated on a small library (the starter
    library's objective after 10, 20, 40, 80 epochs: 0.43, 0.38, 0.75, 0.09; the ranks moved with it)."""
    n, rows = init.shape[0], len(x)
    prior = np.float32(min(PRIOR_EXAMPLES / rows, 0.25))  # per example, as the loss is a mean; capped for stability
    init = init.astype(np.float32)
    weights, bias = init.copy(), np.zeros(n, np.float32)
    if n < 2:
        return weights, bias
    if dual is None:  # the same fit in the rows' span, where that is cheaper (`_fit_dual`)
        dual = rows <= min(BATCH, x.shape[1]) and np.array_equal(init, x[:n])
    if dual:
        return _fit_dual(x, y, w, n, prior)
    step_w, step_b = np.zeros_like(weights), np.zeros_like(bias)
    scale = (w / w.sum() * rows).astype(np.float32)  # each example's weight, 1 on average
    shuffle = np.random.default_rng(0)
    batches: list[np.ndarray] = []
    rate, last = LEARNING_RATE, np.inf
    for _ in range(EPOCHS if rows <= BATCH else BATCH_STEPS):
        if rows <= BATCH:
            xb, yb, sb = x, y, scale
        else:
            if not batches:
                order = shuffle.permutation(rows)
                batches = [order[i:i + BATCH] for i in range(0, rows - BATCH + 1, BATCH)][::-1]
            pick = batches.pop()
            xb, yb, sb = x[pick], y[pick], scale[pick]
        ahead_w, ahead_b = weights + MOMENTUM * step_w, bias + MOMENTUM * step_b
        z, p, total = _softmax(TEMPERATURE * (xb @ ahead_w.T) + ahead_b)
        if rows <= BATCH:
            objective = float((sb * (np.log(total) - z[np.arange(len(xb)), yb])).mean()
                              + 0.5 * prior * np.square(ahead_w - init).sum() + 0.5 * L2 * np.square(ahead_w).sum())
            if objective > last:
                rate /= 2
                step_w[:], step_b[:] = 0.0, 0.0
            last = objective
        p[np.arange(len(xb)), yb] -= 1.0
        g = p * (sb / len(xb))[:, None]
        step_w = MOMENTUM * step_w - rate * (TEMPERATURE * (g.T @ xb) + prior * (ahead_w - init) + L2 * ahead_w)
        step_b = MOMENTUM * step_b - rate * g.sum(0)
        weights += step_w
        bias += step_b
    return weights, bias


def _softmax(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise softmax of logits: the shifted logits, the probabilities, and each row's normaliser."""
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    total = p.sum(1)
    p /= total[:, None]
    return z, p, total


def _fit_dual(x: np.ndarray, y: np.ndarray, w: np.ndarray, n: int, prior: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The full-batch fit of `_fit` when the tool vectors start at the first n rows of x, computed in the rows'
    span: every step of `_fit` adds a combination of the rows of x to the weights, so W = B @ x throughout, and
    each step needs only the Gram matrix K = x @ x.T (rows x rows) instead of x itself (rows x dims). The
    same steps, objective and step halving, in other coordinates (the weights agree with `_fit`'s to 1e-7).
    With fewer rows than dimensions it is cheaper: the starter library's 130 rows of 2,432 dimensions fit in
    11 ms instead of 27, 400 rows in 29 instead of 87, 1,000 in 216 instead of 316."""
    rows = len(x)
    x = x.astype(np.float32)
    k = x @ x.T
    start = np.zeros((n, rows), np.float32)
    start[np.arange(n), np.arange(n)] = 1.0
    coef, bias = start.copy(), np.zeros(n, np.float32)
    step_c, step_b = np.zeros_like(coef), np.zeros_like(bias)
    scale = (w / w.sum() * rows).astype(np.float32)
    at = np.arange(rows)
    rate, last = LEARNING_RATE, np.inf
    for _ in range(EPOCHS):
        ahead_c, ahead_b = coef + MOMENTUM * step_c, bias + MOMENTUM * step_b
        z, p, total = _softmax(TEMPERATURE * (k @ ahead_c.T) + ahead_b)
        moved = ahead_c - start
        objective = float((scale * (np.log(total) - z[at, y])).mean()
                          + 0.5 * prior * (moved * (moved @ k)).sum() + 0.5 * L2 * (ahead_c * (ahead_c @ k)).sum())
        if objective > last:
            rate /= 2
            step_c[:], step_b[:] = 0.0, 0.0
        last = objective
        p[at, y] -= 1.0
        g = p * (scale / rows)[:, None]
        step_c = MOMENTUM * step_c - rate * (TEMPERATURE * g.T + prior * moved + L2 * ahead_c)
        step_b = MOMENTUM * step_b - rate * g.sum(0)
        coef += step_c
        bias += step_b
    return (coef @ x).astype(np.float32), bias


def fingerprint_of(candidates: list[Candidate], model_id: str, *, fit_only: bool = False) -> str:
    """What a model depends on; equal fingerprints mean it can be reused. The fit itself depends only on
    the descriptions and the set of solved tasks (`fit_only`): runs, success rates and failures are applied
    at query time, so recording them (or solving a known task again) never costs a refit."""
    h = hashlib.sha256(f"{model_id}/{EPOCHS}/{BATCH}/{BATCH_STEPS}/{LEARNING_RATE}/{MOMENTUM}/{PRIOR_EXAMPLES}/{L2}".encode())
    for c in candidates:
        fields = (c.key, c.text, sorted(task for task, net in c.solved.items() if net > 0))
        h.update(repr(fields if fit_only else (*fields, sorted(c.failed.items()), c.runs, c.success_rate)).encode())
    return h.hexdigest()
