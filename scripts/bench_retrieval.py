"""Retrieval benchmark on ToolE (../shared/data/toole: 199 tools, 20,544 single-tool queries).

  zero-shot: rank by "name: description" only (cosine, all-MiniLM-L6-v2), all queries — the README's
             reference is R@1 54.0 / R@5 76.3 / MRR@10 63.6
  learning from use: each tool's queries sorted by sha1 of the text; the first 20 are recorded as solved
             tasks (history), the rest are the test set; evogit's retrieval model (evogit/retrieval.py)
             vs. the zero-shot ranking of the same test queries as the baseline
  learning curve: 5 and 10 solved tasks per tool on the same test set; and "more use", where half of each
             tool's remaining queries are recorded too and the other half is tested
  demand: the same test queries searched one by one as a stream (sha1 order of "stream" + text), with the
             demand estimated from the searches logged before each one, as `evogit search` does
             (retrieval.demand_window: re-estimated every DEMAND_EVERY searches, from the newest DEMAND_WINDOW)
  online: the test queries as a stream in 8 rounds, each answered before its feedback (the first tool
             used, solved or failed) is recorded and the model refitted for the next round; with and without
             the demand
  latency: one query from a warm process at 200 tools, and at 100,000 tools (synthetic vectors)
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "toole"


def evaluate(ranked: list[list[str]], gold: list[set[str]]) -> tuple[float, float, float]:
    r1 = r5 = mrr = 0.0
    for order, want in zip(ranked, gold, strict=True):
        for rank, tool in enumerate(order[:10]):
            if tool in want:
                r1 += rank == 0
                r5 += rank < 5
                mrr += 1 / (rank + 1)
                break
    n = len(gold)
    return round(100 * r1 / n, 1), round(100 * r5 / n, 1), round(100 * mrr / n, 1)


def load(embedder: Any) -> tuple[list[dict], list[dict], dict[str, str], np.ndarray, np.ndarray, float]:
    """ToolE's tools and queries, each tool's text ("name: description"), the query and description vectors
    (in `texts` order) and the seconds embedding took."""
    corpus = [json.loads(line) for line in (DATA / "corpus.jsonl").open()]
    queries = [json.loads(line) for line in (DATA / "queries_full.jsonl").open()]
    texts = {c["id"]: f"{c['name']}: {c['description']}" for c in corpus}
    t0 = time.perf_counter()
    qvec = embedder.embed([q["query"] for q in queries], batch=64)
    desc = embedder.embed(list(texts.values()))
    return corpus, queries, texts, qvec, desc, time.perf_counter() - t0


def by_tool(queries: list[dict]) -> dict[str, list[int]]:
    """Each tool's queries (indices), sorted by sha1 of the text: the first 20 are the history."""
    out: dict[str, list[int]] = defaultdict(list)
    for i, q in enumerate(queries):
        for g in q["gold"]:
            out[g].append(i)
    return {tool: sorted(items, key=lambda i: hashlib.sha1(queries[i]["query"].encode()).hexdigest())
            for tool, items in out.items()}


def main() -> None:
    import faiss

    from evogit.embed import MiniLM
    from evogit.retrieval import DEMAND_EVERY, Candidate, Featurizer, Model, demand_window

    faiss.omp_set_num_threads(1)
    embedder = MiniLM()
    corpus, queries, texts, qvec, desc, embed_s = load(embedder)
    ids = list(texts)
    zero_all = evaluate([[ids[j] for j in np.argsort(-row)[:10]] for row in qvec @ desc.T],
                        [set(q["gold"]) for q in queries])

    ranked = by_tool(queries)
    history: set[int] = set()
    for items in ranked.values():
        history.update(items[:20])
    test = [i for i in range(len(queries)) if i not in history]
    gold = [set(queries[i]["gold"]) for i in test]
    zero_test = evaluate([[ids[j] for j in np.argsort(-row)[:10]] for row in qvec[test] @ desc.T], gold)

    featurize = Featurizer(embedder)
    featurize.prefill(dict(zip([q["query"] for q in queries], qvec, strict=True)))
    featurize.prefill(dict(zip([texts[i] for i in ids], desc, strict=True)))

    def fit(solved: list[int]) -> Model:
        candidates = [Candidate(key=i, tool=i, text=texts[i]) for i in ids]
        by_id = {c.key: c for c in candidates}
        for i in solved:
            for g in queries[i]["gold"]:
                by_id[g].solved[queries[i]["query"]] = by_id[g].solved.get(queries[i]["query"], 0) + 1
        return Model(featurize, candidates)

    def score(model: Model, items: list[int]) -> tuple[float, float, float]:
        return evaluate([[h.key for h in model.search(queries[i]["query"], 10)] for i in items],
                        [set(queries[i]["gold"]) for i in items])

    t0 = time.perf_counter()
    model = fit(sorted(history))
    fit_s = time.perf_counter() - t0
    learned = score(model, test)
    curve = {n: score(fit(sorted(i for items in ranked.values() for i in items[:n])), test) for n in (5, 10)}
    # More use: half of every tool's remaining queries (by sha1 order) recorded too, the other half tested.
    more, held = [], []
    for items in ranked.values():
        rest = [i for i in items[20:] if i not in history]
        more += rest[: len(rest) // 2]
        held += rest[len(rest) // 2:]
    held = sorted(set(held) - set(more))
    more_use = (score(model, held), score(fit(sorted(history | set(more))), held))

    def answer(model: Model, items: list[int], searched: list[tuple[tuple[int, str, int], str]], k: int,
               demand: bool) -> list[list[str]]:
        """Search each query in turn, as `evogit search` does: the demand is re-estimated from the searches
        logged before it whenever DEMAND_EVERY more have been (or the model was refitted); each search is logged."""
        ranked, estimated_at = [], -1
        for i in items:
            cut = len(searched) - len(searched) % DEMAND_EVERY
            if demand and estimated_at != cut:
                window = demand_window(searched)
                model.set_demand(model.estimate_demand(window) if window else None)
                estimated_at = cut
            ranked.append([h.key for h in model.search(queries[i]["query"], k)])
            searched.append(((len(searched), "bench", 0), queries[i]["query"]))
        return ranked

    stream = sorted(test, key=lambda i: hashlib.sha1(("stream" + queries[i]["query"]).encode()).hexdigest())
    t0 = time.perf_counter()
    with_demand = evaluate(answer(model, stream, [], 10, True), [set(queries[i]["gold"]) for i in stream])
    demand_s = time.perf_counter() - t0
    model.set_demand(None)

    # Online: the test queries arrive as a stream, in 8 rounds. Each query is answered by the model fitted
    # before its round; the agent uses the first tool and reports solved or failed; the round's feedback is
    # recorded, and the model refitted, before the next round.
    def online(demand: bool) -> tuple[list[tuple[float, float]], tuple[float, float], tuple[int, float]]:
        model = fit(sorted(history))
        candidates = {c.key: c for c in model.candidates}
        size = -(-len(stream) // 8)
        rounds: list[tuple[float, float]] = []
        hits1 = hits5 = 0
        searched: list[tuple[tuple[int, str, int], str]] = []
        last_fit = (0, 0.0)
        for r in range(8):
            chunk = stream[r * size:(r + 1) * size]
            answers = list(zip(chunk, answer(model, chunk, searched, 5, demand), strict=True))
            r1 = sum(found[0] in queries[i]["gold"] for i, found in answers)
            r5 = sum(any(key in queries[i]["gold"] for key in found) for i, found in answers)
            rounds.append((round(100 * r1 / len(chunk), 1), round(100 * r5 / len(chunk), 1)))
            hits1, hits5 = hits1 + r1, hits5 + r5
            for i, found in answers:
                top, task = candidates[found[0]], queries[i]["query"]
                outcome = top.solved if top.key in queries[i]["gold"] else top.failed
                outcome[task] = outcome.get(task, 0) + 1
            t0 = time.perf_counter()
            model = Model(featurize, list(candidates.values()))
            last_fit = (sum(sum(c.solved.values()) for c in candidates.values()), time.perf_counter() - t0)
        return rounds, (round(100 * hits1 / len(stream), 1), round(100 * hits5 / len(stream), 1)), last_fit

    rounds, online_plain, last_fit = online(False)
    rounds_demand, online_demand, _ = online(True)

    lat = []
    for i in test[:300]:
        t0 = time.perf_counter()
        model.search(queries[i]["query"] + " ", 5)  # a new text: embedding included
        lat.append((time.perf_counter() - t0) * 1000)
    big = faiss.IndexFlatIP(model.index.d)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((100_000, model.index.d)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    big.add(vectors)
    probe = featurize(["turn a comma separated file into json"])
    probe = np.hstack([probe, [[1.0]]]).astype(np.float32)
    big_lat = []
    for _ in range(50):
        t0 = time.perf_counter()
        big.search(probe, 5)
        big_lat.append((time.perf_counter() - t0) * 1000)

    print(f"ToolE: {len(corpus)} tools, {len(queries)} queries; history {len(history)}, test {len(test)}; "
          f"embedding all texts took {embed_s:.0f} s")
    print(f"{'':42}{'R@1':>7}{'R@5':>7}{'MRR@10':>8}")
    print(f"{'zero-shot, all queries (MiniLM)':42}{zero_all[0]:>7}{zero_all[1]:>7}{zero_all[2]:>8}   goal >= 54 / 76")
    print(f"{'baseline: zero-shot, test queries':42}{zero_test[0]:>7}{zero_test[1]:>7}{zero_test[2]:>8}")
    print(f"{'learning from use, test queries':42}{learned[0]:>7}{learned[1]:>7}{learned[2]:>8}   goal >= 80 / 95")
    print(f"{'  + the demand from the search log':42}{with_demand[0]:>7}{with_demand[1]:>7}{with_demand[2]:>8}   "
          f"(estimates: {demand_s:.0f} s in all)")
    for n, row in curve.items():
        print(f"{f'  with only {n} solved tasks per tool':42}{row[0]:>7}{row[1]:>7}{row[2]:>8}")
    print(f"more use: + {len(more)} solved tasks, tested on the other {len(held)}:")
    print(f"{'  history of 20 per tool':42}{more_use[0][0]:>7}{more_use[0][1]:>7}{more_use[0][2]:>8}")
    print(f"{'  history of 20 per tool + the extra':42}{more_use[1][0]:>7}{more_use[1][1]:>7}{more_use[1][2]:>8}")
    print("online: the test queries as a stream of 8 rounds, the first tool used, solved/failed fed back:")
    for label, per_round, total in (("", rounds, online_plain), (" + demand", rounds_demand, online_demand)):
        print(f"  R@1 / R@5 per round{label}: " + ", ".join(f"{a} / {b}" for a, b in per_round))
        print(f"{'  over the whole stream' + label:42}{total[0]:>7}{total[1]:>7}")
    print(f"fit on {len(history)} solved tasks + {len(corpus)} descriptions: {fit_s:.1f} s; "
          f"on {last_fit[0]} (after the online rounds): {last_fit[1]:.1f} s")
    print(f"query latency, warm, 200 tools (embedding + index + demotion): median {statistics.median(lat):.2f} ms")
    print(f"index search alone, 100,000 tools (synthetic, IndexFlatIP, 1 thread): "
          f"median {statistics.median(big_lat):.2f} ms")


if __name__ == "__main__":
    main()
