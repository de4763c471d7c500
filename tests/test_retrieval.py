"""The retrieval model without a repository: deterministic fits, demotion, what the fit depends on."""

from __future__ import annotations

import numpy as np

from evogit import retrieval
from evogit.embed import Lexical
from evogit.retrieval import Candidate, Featurizer, Model, fingerprint_of

TOPICS = {"csv": "parse comma separated values", "hash": "hash a password with sha256", "count": "count the words"}


def candidates(tasks_per_tool: int, reverse: bool = False) -> list[Candidate]:
    out = []
    for name, text in TOPICS.items():
        tasks = [f"{text} number {i}" for i in range(tasks_per_tool)]
        out.append(Candidate(f"{name}@f", name, f"{name}: {text}",
                             solved={t: 1 for t in (reversed(tasks) if reverse else tasks)}))
    return out


def test_the_fit_is_the_same_whatever_order_the_tasks_arrived_in():
    many = 800  # 2,400 examples: more than one batch, so the mini-batch path is the one under test
    assert 3 * many > retrieval.BATCH
    a = Model(Featurizer(Lexical()), candidates(many))
    b = Model(Featurizer(Lexical()), candidates(many, reverse=True))
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
    assert [h.tool for h in a.search("sha256 of my password", 3)][0] == "hash"


def test_runs_and_failures_do_not_change_the_fit_fingerprint():
    base = candidates(5)
    used = candidates(5)
    used[0].runs, used[0].success_rate, used[0].failed = 10, 0.5, {"parse this": 1}
    assert fingerprint_of(base, "m", fit_only=True) == fingerprint_of(used, "m", fit_only=True)
    assert fingerprint_of(base, "m") != fingerprint_of(used, "m")
    used[1].solved["a new task"] = 1
    assert fingerprint_of(base, "m", fit_only=True) != fingerprint_of(used, "m", fit_only=True)


def test_failing_the_same_task_twice_brings_a_version_down_to_the_median():
    tools = candidates(5)
    query = "parse comma separated values number 2"
    assert Model(Featurizer(Lexical()), tools).search(query, 3)[0].tool == "csv"
    tools[0].failed = {query: 2}
    model = Model(Featurizer(Lexical()), tools)
    hits = model.search(query, 3, explain=True)
    assert hits[0].tool != "csv"
    csv = next(h for h in hits if h.tool == "csv")
    assert csv.why["demoted_for_failing"]["similarity"] > 0.99
