"""The fast-path decision: pure on small synthetic hits, then on real starter tools found by a real search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evogit import decide as fast
from evogit.decide import decide
from evogit.retrieval import Hit
from evogit.runtime import Runtime

from .conftest import starter_subset

MINILM = fast.CALIBRATED_FOR


def hit(tool: str, score: float, probability: float, nearest: float, like_next: float = 0.2, runs: int = 0,
        success_rate: float | None = None) -> Hit:
    return Hit(f"{tool}@{'ab' * 32}", tool, score, {}, probability=probability, nearest=nearest,
               like_next=like_next, runs=runs, success_rate=success_rate)


# word-count's description is as like word-frequency's as in the starter library (cosine 0.68)
CLEAR = [hit("word-count", 9.0, 0.99, 0.85, like_next=0.68), hit("word-frequency", 4.0, 0.01, 0.55)]


def test_a_clear_lead_with_a_valid_input_is_reused():
    d = decide(CLEAR, True, model_id=MINILM)
    assert d.reuse and d.tool == CLEAR[0].key and d.confidence >= fast.THRESHOLD
    assert "validates" in d.reason


def test_a_direction_sensitive_pair_with_nearly_equal_scores_is_not_reused():
    # csv->json vs json->csv: both close to the task, neither clearly ahead
    hits = [hit("json-to-csv", 11.1, 0.51, 0.86, like_next=0.87), hit("csv-to-json", 11.0, 0.49, 0.86)]
    d = decide(hits, True, model_id=MINILM)
    assert not d.reuse and d.tool == hits[0].key
    assert "not sure enough" in d.reason and "csv-to-json@abababa is close" in d.reason


def test_a_clear_lead_over_a_tool_that_says_nearly_the_same_is_not_enough():
    # "I have a spreadsheet exported as comma-separated values and need JSON": the ranking puts json-to-csv
    # ahead of csv-to-json with probability 0.82, and json-to-csv knows a task 0.80 like it; but the two
    # descriptions are 0.87 alike (the starter library's csv <-> json pair)
    twins = [hit("json-to-csv", 8.5, 0.82, 0.80, like_next=0.87), hit("csv-to-json", 7.0, 0.18, 0.75)]
    d = decide(twins, True, model_id=MINILM)
    assert not d.reuse and d.reason.endswith("csv-to-json@abababa is much like it")
    unlike = [hit("json-to-csv", 8.5, 0.82, 0.80, like_next=0.15), hit("word-count", 7.0, 0.18, 0.75)]
    assert decide(unlike, True, model_id=MINILM).reuse


def test_a_wider_lead_means_more_confidence_and_so_does_a_nearer_known_task():
    probabilities = [fast.confidence([hit("a", 1.0, p, 0.7), hit("b", 0.0, 1 - p, 0.5)]) for p in (0.5, 0.8, 0.95, 0.99)]
    assert probabilities == sorted(probabilities) and len(set(probabilities)) == 4
    nearness = [fast.confidence([hit("a", 1.0, 0.9, x)]) for x in (0.3, 0.5, 0.7, 0.9)]
    assert nearness == sorted(nearness) and len(set(nearness)) == 4


def test_a_task_unlike_anything_the_top_tool_is_known_for_is_not_reused():
    # the only tool in a library wins the softmax whatever the task: its probability alone proves nothing
    d = decide([hit("word-count", 3.0, 0.99, 0.2)], True, model_id=MINILM)
    assert not d.reuse and d.confidence < 0.5


def test_an_input_that_breaks_the_schema_is_not_reused():
    asked: list[str] = []
    d = decide(CLEAR, lambda key: asked.append(key) or False, model_id=MINILM)
    assert not d.reuse and asked == [CLEAR[0].key]
    assert d.reason == "the input does not match word-count@abababa's input schema"
    assert not decide(CLEAR, False, model_id=MINILM).reuse


def test_no_input_means_no_fast_path():
    d = decide(CLEAR, None, model_id=MINILM)
    assert not d.reuse and d.tool == CLEAR[0].key and "no input" in d.reason


def test_a_tool_that_keeps_failing_is_not_reused_however_well_it_matches():
    failing = [hit("word-count", 9.0, 0.99, 0.85, like_next=0.68, runs=20, success_rate=0.1), CLEAR[1]]
    d = decide(failing, True, model_id=MINILM)
    assert not d.reuse and d.confidence < 0.3
    new = [hit("word-count", 9.0, 0.99, 0.85, like_next=0.68, runs=0), CLEAR[1]]
    assert fast.confidence(new) == fast.confidence(CLEAR)  # no runs: no penalty


def test_another_embedder_gets_no_fast_path():
    d = decide(CLEAR, True, model_id="openai:text-embedding-3-small")
    assert not d.reuse and "calibrated for" in d.reason


def test_an_empty_library_decides_nothing():
    d = decide([], True, model_id=MINILM)
    assert (d.reuse, d.tool, d.confidence) == (False, None, 0.0)


@pytest.fixture
def csv_rt(tmp_path: Path) -> Runtime:
    """Both directions of csv <-> json and one unrelated tool, built from the starter library."""
    return starter_subset(tmp_path, ("csv-to-json", "json-to-csv", "word-count"))


def validator(rt: Runtime, value: object):
    return lambda key: rt.load(key).contract.input_problem(value) is None


@pytest.mark.slow
def test_a_clear_paraphrase_reuses_and_a_direction_sensitive_one_does_not(csv_rt: Runtime):
    value = {"csv": "name,age\nada,36\n"}
    hits, embedder = csv_rt.search("parse comma separated text into json rows", 3)
    d = decide(hits, validator(csv_rt, value), model_id=embedder.model_id)
    assert d.reuse and d.tool is not None and d.tool.startswith("csv-to-json@"), d
    outcome = csv_rt.run(d.tool, json.dumps(value).encode())
    assert outcome.ok and outcome.output == {"rows": [{"name": "ada", "age": "36"}], "count": 1}

    for task in ("turn this JSON array of objects into a CSV file", "make a csv from an array of json rows",
                 "I have a spreadsheet exported as comma-separated values and need JSON"):  # ranked json-to-csv first
        hits, embedder = csv_rt.search(task, 3)
        d = decide(hits, True, model_id=embedder.model_id)
        assert not d.reuse and d.reason.startswith("not sure enough"), (task, d)


@pytest.mark.slow
def test_a_confident_match_whose_input_breaks_the_schema_asks_the_model(csv_rt: Runtime):
    hits, embedder = csv_rt.search("parse comma separated text into json rows", 3)
    d = decide(hits, validator(csv_rt, {"text": "name,age"}), model_id=embedder.model_id)
    assert not d.reuse and d.tool is not None and d.tool.startswith("csv-to-json@")
    assert "input schema" in d.reason
