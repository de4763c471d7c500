"""Fast-path decision benchmark (evogit/decide.py): does the fast path reuse a tool only when it is the right one?

  ToolE (../shared/data/toole): a fifth of the tools (sha1 of the name, first byte < 0x33) are held out of the
      library; the library's history is the first 20 queries per remaining tool (sha1 order of the text, as
      bench_retrieval). Test: the held-out tools' queries (no tool in the library is right: the fast path must
      not fire, goal <= 3% false reuse) and the remaining tools' other queries (goal >= 97% precision at >= 60%
      coverage). The calibration is fitted (`--fit`) on a split the test does not contain: a library without
      a further fifth of the tools (first byte 0x33-0x65), fitted on 15 history queries per tool; its
      positives are each tool's history queries 16-20, its negatives the further fifth's first 20 queries.
      The calibration is two logistic regressions (see evogit/decide.py): whether a tool in the library is
      right, from the nearest known text's cosine, and whether the top hit is it, from its probability and
      how alike its description and the runner-up's are.
  Starter library: a fresh `Runtime.init(..., starter=True)`, searched through `rt.search` (demand included)
      with paraphrases written for this benchmark (tests/data/paraphrases.jsonl, and a second set written
      before any tuning and not looked at while tuning, paraphrases_holdout.jsonl): R@1 / R@5 of zero-shot
      (MiniLM cosine to "name: description") and of the learned ranking, and the fast path (input assumed
      valid): coverage, precision, false reuse on tasks no starter tool serves, fires on the
      direction-sensitive and near-neighbour pairs.

Prints numbers and ratios; asserts nothing. `--fit` prints the calibration's parameters (paste them into
evogit/decide.py) and evaluates with them; without it the parameters in evogit/decide.py are evaluated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_retrieval  # noqa: E402  (the ToolE loading and split)

from evogit import decide  # noqa: E402

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
PAIRS = {("csv-to-json", "json-to-csv"), ("base64-encode", "base64-decode"), ("word-count", "word-frequency"),
         ("sort-lines", "dedupe-lines"), ("regex-extract", "regex-replace"), ("json-flatten", "json-pointer"),
         ("slugify", "case-convert")}
CONFUSABLE = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}


def name_byte(name: str) -> int:
    return int(hashlib.sha1(name.encode()).hexdigest()[:2], 16)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method (a few parameters, so exact), standardised features, ridge l2."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    beta = np.zeros(z.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-z @ beta))
        grad = z.T @ (p - y) + l2 * np.r_[beta[:-1], 0]
        hess = (z * (p * (1 - p))[:, None]).T @ z + l2 * np.diag(np.r_[np.ones(len(beta) - 1), 0])
        beta -= np.linalg.solve(hess, grad)
    coef = beta[:-1] / sd
    return coef, float(beta[-1] - (coef * mu).sum())


def rates(conf_pos: np.ndarray, right: np.ndarray, conf_neg: np.ndarray, t: float) -> tuple[float, float, float]:
    """(coverage of the present tools' queries, precision of those fires, false reuse on absent tools' queries)."""
    fire = conf_pos >= t
    coverage = fire.mean() if len(fire) else 0.0
    precision = right[fire].mean() if fire.any() else 1.0
    false = (conf_neg >= t).mean() if len(conf_neg) else 0.0
    return 100 * coverage, 100 * precision, 100 * false


def table(conf_pos: np.ndarray, right: np.ndarray, conf_neg: np.ndarray, chosen: float) -> None:
    print(f"    {'threshold':>9} {'coverage':>9} {'precision':>10} {'false reuse':>12}")
    for t in sorted({*THRESHOLDS, chosen}):
        cov, prec, false = rates(conf_pos, right, conf_neg, t)
        mark = "  <- chosen" if t == chosen else ""
        print(f"    {t:>9.3f} {cov:>8.1f}% {prec:>9.1f}% {false:>11.1f}%{mark}")


def choose(conf_pos: np.ndarray, right: np.ndarray, conf_neg: np.ndarray) -> float:
    """The lowest threshold (0.01 steps) with precision >= 97% and false reuse <= 3%."""
    for t in np.arange(0.5, 1.0, 0.01):
        _, prec, false = rates(conf_pos, right, conf_neg, float(t))
        if prec >= 97.0 and false <= 3.0:
            return round(float(t), 2)
    return 0.99


FLOOR_MISS = 3.0  # percent of runs of a right tool that the fit floor may call unfit


def choose_floor(right_fit: np.ndarray) -> float:
    """The highest fit floor (0.01 steps) under which at most FLOOR_MISS% of right tools fall."""
    floor = 0.0
    for f in np.arange(0.01, 1.0, 0.01):
        if (right_fit < f).mean() * 100 > FLOOR_MISS:
            break
        floor = round(float(f), 2)
    return floor


def toole(fit: bool, cache: Path | None) -> None:
    import faiss

    from evogit.embed import MiniLM
    from evogit.retrieval import Candidate, Featurizer, Model

    faiss.omp_set_num_threads(1)
    embedder = MiniLM()
    if cache is not None and cache.exists():
        corpus = [json.loads(line) for line in (bench_retrieval.DATA / "corpus.jsonl").open()]
        queries = [json.loads(line) for line in (bench_retrieval.DATA / "queries_full.jsonl").open()]
        texts = {c["id"]: f"{c['name']}: {c['description']}" for c in corpus}
        saved = np.load(cache)
        qvec, desc, embed_s = saved["q"], saved["d"], 0.0
    else:
        corpus, queries, texts, qvec, desc, embed_s = bench_retrieval.load(embedder)
        if cache is not None:
            np.savez(cache, q=qvec, d=desc)
    featurize = Featurizer(embedder)
    featurize.prefill(dict(zip([q["query"] for q in queries], qvec, strict=True)))
    featurize.prefill(dict(zip(texts.values(), desc, strict=True)))
    ranked = bench_retrieval.by_tool(queries)
    names = {c["id"]: c["name"] for c in corpus}
    held = {i for i in texts if name_byte(names[i]) < 0x33}
    calibration_held = {i for i in texts if 0x33 <= name_byte(names[i]) < 0x66}
    present = [i for i in texts if i not in held]

    def library(tools: Sequence[str], per_tool: int) -> Model:
        candidates = [Candidate(key=t, tool=t, text=texts[t]) for t in tools]
        for c in candidates:
            for i in ranked[c.tool][:per_tool]:
                c.solved[queries[i]["query"]] = c.solved.get(queries[i]["query"], 0) + 1
        return Model(featurize, candidates)

    def observe(model: Model, items: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features, confidence under evogit/decide.py's parameters, and whether the top hit is right."""
        x, conf, right = [], [], []
        for i in items:
            hits = model.search(queries[i]["query"], 5)
            x.append(decide.features(hits))
            conf.append(decide.confidence(hits))
            right.append(hits[0].tool in queries[i]["gold"])
        return np.array(x), np.array(conf), np.array(right)

    def fits(model: Model, items: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query: decide.fit of its right tool (the best of its gold tools in the library; NaN if none is),
        of the top hit, and whether the top hit is right."""
        right_fit, top_fit, right = [], [], []
        for i in items:
            q = queries[i]["query"]
            near = [n for g in queries[i]["gold"] if (n := model.nearness(q, g)) is not None]
            right_fit.append(decide.fit(max(near)) if near else np.nan)
            hit = model.search(q, 1)[0]
            top_fit.append(decide.fit(hit.nearest))
            right.append(hit.tool in queries[i]["gold"])
        return np.array(right_fit), np.array(top_fit), np.array(right)

    def floor_report(name: str, model: Model, pos: list[int], neg: list[int], floor: float) -> None:
        right_fit, top_fit_pos, right = fits(model, pos)
        _, top_fit_neg, _ = fits(model, neg)
        wrong_top = top_fit_pos[~right]
        print(f"{name}, fit floor {floor}: a right tool's run called unfit {(right_fit < floor).mean() * 100:.1f}% "
              f"of {len(right_fit)}; a top hit that is wrong called unfit {(wrong_top < floor).mean() * 100:.1f}% "
              f"of {len(wrong_top)}; the top hit for a task no tool does called unfit "
              f"{(top_fit_neg < floor).mean() * 100:.1f}% of {len(top_fit_neg)}")

    def split(tools: set[str], items: list[int]) -> tuple[list[int], list[int]]:
        """Queries with a right tool in `tools`, and queries with none (de-duplicated, in order)."""
        items = list(dict.fromkeys(items))
        return ([i for i in items if set(queries[i]["gold"]) & tools],
                [i for i in items if not set(queries[i]["gold"]) & tools])

    t0 = time.perf_counter()
    calibration_tools = [t for t in present if t not in calibration_held]
    cal_model = library(calibration_tools, 15)
    cal_pos, _ = split(set(calibration_tools), [i for t in calibration_tools for i in ranked[t][15:20]])
    _, cal_neg = split(set(calibration_tools), [i for t in sorted(calibration_held) for i in ranked[t][:20]])
    xp, cp, rp = observe(cal_model, cal_pos)
    xn, cn, _ = observe(cal_model, cal_neg)
    threshold = decide.THRESHOLD
    if fit:
        pairs = np.vstack([xp, xn])
        present_y = np.r_[np.ones(len(xp)), np.zeros(len(xn))]
        near_coef, near_bias = fit_logistic(pairs[:, 1:2], present_y)
        which_coef, which_bias = fit_logistic(xp[:, [0, 2]], rp.astype(float))
        decide.NEAR = (round(near_bias, 4), round(float(near_coef[0]), 4))
        decide.WHICH = (round(which_bias, 4), round(float(which_coef[0]), 4), round(float(which_coef[1]), 4))
        cp = np.array([_confidence(row) for row in xp])
        cn = np.array([_confidence(row) for row in xn])
        threshold = decide.THRESHOLD = choose(cp, rp, cn)
        print(f"calibration fit on {len(xp)} queries of present tools ({rp.mean() * 100:.1f}% ranked right) and "
              f"{len(xn)} of absent tools:\n  NEAR = {decide.NEAR}\n  WHICH = {decide.WHICH}\n"
              f"  THRESHOLD = {threshold}")
    print(f"calibration split, threshold {threshold}: coverage / precision / false reuse "
          "= {:.1f}% / {:.1f}% / {:.1f}%".format(*rates(cp, rp, cn, threshold)))
    floor = decide.FIT_FLOOR
    if fit:
        floor = decide.FIT_FLOOR = choose_floor(fits(cal_model, cal_pos)[0])
        print(f"  FIT_FLOOR = {floor}")
    floor_report("calibration split", cal_model, cal_pos, cal_neg, floor)

    model = library(present, 20)
    test_pos, _ = split(set(present), [i for t in present for i in ranked[t][20:]])
    _, test_neg = split(set(present), [i for t in sorted(held) for i in ranked[t]])
    _, conf_pos, right = observe(model, test_pos)
    _, conf_neg, _ = observe(model, test_neg)
    print(f"ToolE: {len(present)} tools in the library ({len(held)} held out), history 20 per tool; "
          f"test: {len(test_pos)} queries of present tools (R@1 {right.mean() * 100:.1f}), "
          f"{len(test_neg)} of held-out tools; {time.perf_counter() - t0:.0f} s (embedding {embed_s:.0f} s)")
    table(conf_pos, right, conf_neg, threshold)
    cov, prec, false = rates(conf_pos, right, conf_neg, threshold)
    print(f"  operating point {threshold}: precision {prec:.1f}% (goal >= 97) at coverage {cov:.1f}% (goal >= 60); "
          f"false reuse on held-out tools {false:.1f}% (goal <= 3)")
    floor_report("ToolE test", model, test_pos, test_neg, floor)
    bins = [0.0, 0.5, 0.8, 0.9, 0.95, 1.01]
    print("  reliability on the test queries (confidence bin: mean confidence / share right, n):")
    conf_all, right_all = np.r_[conf_pos, conf_neg], np.r_[right, np.zeros(len(conf_neg), bool)]
    for lo, hi in zip(bins, bins[1:], strict=False):
        sel = (conf_all >= lo) & (conf_all < hi)
        if sel.any():
            print(f"    [{lo:.2f}, {min(hi, 1):.2f}): {conf_all[sel].mean():.3f} / {right_all[sel].mean():.3f}, {sel.sum()}")


def _confidence(x: Sequence[float]) -> float:
    """decide.confidence from its features (a tool with no runs)."""
    odds, nearest, like_next = x
    return float(1 / (1 + np.exp(-(decide.NEAR[0] + decide.NEAR[1] * nearest)))
                 / (1 + np.exp(-(decide.WHICH[0] + decide.WHICH[1] * odds + decide.WHICH[2] * like_next))))


def starter() -> None:
    from evogit.runtime import Runtime

    data = ROOT / "tests" / "data"
    work = Path(tempfile.mkdtemp(prefix="bench-decide-"))
    try:
        t0 = time.perf_counter()
        _, outcomes = Runtime.init(work / "built", starter=True)
        print(f"starter library: {sum(o.ok for o in outcomes)} of {len(outcomes)} tools built in "
              f"{time.perf_counter() - t0:.0f} s")
        for name in ("paraphrases.jsonl", "paraphrases_holdout.jsonl"):
            shutil.copytree(work / "built", work / name, symlinks=True)  # a fresh library (no searches) for each set
            _starter_set(Runtime(work / name), [json.loads(line) for line in (data / name).open()], name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _starter_set(rt: Any, tasks: list[dict], name: str) -> None:
    model, embedder = rt.retrieval_model()
    tools = [c.tool for c in model.candidates]
    desc = model.featurize.semantic([c.text for c in model.candidates])
    zero = learned = 0, 0
    fires, wrong, confused, pair_fires, none_fires = [], [], [], 0, []
    positives = [t for t in tasks if t["tool"] != "none"]
    pairs = [t for t in positives if t["tool"] in CONFUSABLE]
    for t in tasks:
        hits, _ = rt.search(t["task"], 5)
        d = decide.decide(hits, True, model_id=embedder.model_id, threshold=decide.THRESHOLD)  # as --fit set it
        if t["tool"] == "none":
            if d.reuse:
                none_fires.append((t["task"], str(d.tool).partition("@")[0], d.confidence))
            continue
        order = [tools[j] for j in np.argsort(-(desc @ model.featurize.semantic([t["task"]])[0]))]
        zero = zero[0] + (order[0] == t["tool"]), zero[1] + (t["tool"] in order[:5])
        found = [h.tool for h in hits]
        learned = learned[0] + (found[0] == t["tool"]), learned[1] + (t["tool"] in found[:5])
        if d.reuse:
            fires.append(t)
            tool = str(d.tool).partition("@")[0]
            if tool != t["tool"]:
                wrong.append((t["task"], t["tool"], tool, d.confidence))
                if CONFUSABLE.get(t["tool"]) == tool:
                    confused.append(t["task"])
            if t["tool"] in CONFUSABLE:
                pair_fires += 1
    n, nn = len(positives), len(tasks) - len(positives)
    print(f"{name}: {n} tasks for a starter tool ({len(pairs)} of them in a direction-sensitive or near-neighbour "
          f"pair), {nn} that no starter tool serves")
    print(f"  zero-shot (MiniLM, description)  R@1 {100 * zero[0] / n:5.1f}  R@5 {100 * zero[1] / n:5.1f}")
    print(f"  learned (rt.search)              R@1 {100 * learned[0] / n:5.1f}  R@5 {100 * learned[1] / n:5.1f}"
          "   goal >= 95 / 100")
    precision = 100 * (len(fires) - len(wrong)) / len(fires) if fires else 100.0
    print(f"  fast path (input valid, threshold {decide.THRESHOLD}): coverage {100 * len(fires) / n:.1f}%, "
          f"precision {precision:.1f}%, false reuse on the {nn} no-tool tasks {100 * len(none_fires) / nn:.1f}% "
          f"({len(none_fires)}); on the pairs: {pair_fires} of {len(pairs)} fired, {len(confused)} with the "
          "other tool of the pair (goal 0)")
    for task, gold, used, conf in wrong:
        print(f"    wrong reuse: {task!r} -> {used} ({conf:.3f}), wanted {gold}")
    for task, used, conf in none_fires:
        print(f"    false reuse: {task!r} -> {used} ({conf:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", action="store_true", help="fit the calibration and print its parameters")
    parser.add_argument("--cache", type=Path, help="keep ToolE's vectors in this .npz file (embedding takes ~100 s)")
    parser.add_argument("--only", choices=("toole", "starter"))
    args = parser.parse_args()
    if args.only != "starter":
        toole(args.fit, args.cache)
    if args.only != "toole":
        starter()


if __name__ == "__main__":
    main()
