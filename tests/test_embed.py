"""Embedders: the numpy MiniLM gives sentence-transformers' vectors; the fallback is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evogit.embed import Lexical, MiniLM, RemoteEmbedder

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


def test_minilm_matches_sentence_transformers():
    # tests/data/minilm_reference.json was made with sentence-transformers + torch 2.13 on the same weights.
    got = MiniLM().embed(REFERENCE["texts"])
    want = np.array(REFERENCE["vectors"], np.float32)
    assert MiniLM.model_id == REFERENCE["model"]
    assert np.abs(got - want).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_minilm_is_semantic():
    v = MiniLM().embed(["turn a comma separated file into json", "csv-to-json: Parse CSV text into JSON rows",
                        "compute the sha256 hash of a string"])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_lexical_is_deterministic_and_unit_length():
    a, b = Lexical().embed(["count words", "count words"]), Lexical().embed(["count words", ""])
    assert np.array_equal(a[0], b[0]) and abs(float(np.linalg.norm(a[0])) - 1) < 1e-5
    assert not b[1].any()


def test_direction_words_tell_csv_to_json_from_json_to_csv():
    # the same words in the other order: a bag of words (and MiniLM, nearly) cannot tell them apart
    csv_to_json, json_to_csv, task = Lexical().embed(["csv-to-json: convert csv text to json",
                                                      "json-to-csv: convert json text to csv",
                                                      "turn a spreadsheet into json"])
    assert task @ csv_to_json > task @ json_to_csv + 0.05


def test_remote_embedder_reports_failures_in_one_line():
    from evogit.errors import EvogitError

    emb = RemoteEmbedder("text-embedding-3-small", base_url="http://127.0.0.1:9/v1", api_key="x")
    emb.client = emb.client.with_options(max_retries=0, timeout=2)
    with pytest.raises(EvogitError, match="embedding endpoint failed"):
        emb.embed(["hello"])


def test_remote_embedder_through_a_loopback_openai_compatible_server(embeddings_server):
    import hashlib

    url, seen = embeddings_server
    emb = RemoteEmbedder("test-embed", base_url=url, api_key="k")
    v = emb.embed(["alpha", "beta"])
    assert emb.model_id == "openai:test-embed" and v.shape == (2, 8)
    assert seen == [("/v1/embeddings", "test-embed", ["alpha", "beta"])]
    want = np.array([b / 255 for b in hashlib.sha256(b"alpha").digest()[:8]], np.float32)
    assert np.allclose(v[0], want / np.linalg.norm(want), atol=1e-6)  # order restored by index


def test_vector_store_appends_and_survives_a_torn_record(tmp_path):
    import numpy as np

    from evogit.embed import Lexical
    from evogit.retrieval import Featurizer

    store = tmp_path / "vectors" / "m.vec"
    first = Featurizer(Lexical(), store)
    a = first.semantic(["parse a csv file", "count words"])
    first.save()
    size = store.stat().st_size
    second = Featurizer(Lexical(), store)
    assert np.array_equal(second.semantic(["parse a csv file", "count words"]), a)
    second.semantic(["hash a password"])
    second.save()  # appends only the new vector
    record = 20 + 4 * Lexical.DIM
    assert store.stat().st_size == size + record
    with store.open("ab") as f:
        f.write(b"\x01" * (record // 2))  # a crash in the middle of an append
    third = Featurizer(Lexical(), store)
    assert len(third._semantic) == 3
    third.semantic(["sort lines"])
    third.save()  # cuts the torn record first
    assert store.stat().st_size == size + 2 * record
    assert len(Featurizer(Lexical(), store)._semantic) == 4
