"""The fast path: run the best tool without asking a model only when it is confidently the right one and the
input fits it.

`decide(hits, input_ok, model_id=...)` is pure: it reads what a search returned (evogit.retrieval.Hit: the
model's probability for each tool, the cosine of the query to the nearest text the tool is known for, how
alike its description and the next hit's are, its runs and success rate) and a verdict on the input, and
returns a `Decision`.

The confidence is a calibrated probability that the top hit is the tool the task needs, as a product: the
chance that the library has a tool for the task at all, from how near the task is to the nearest text the top
hit is known for (its description, examples, solved tasks), times the chance that the top hit is that tool,
from the model's probability for it and from how alike it and the runner-up are (two tools that say nearly
the same, csv-to-json and json-to-csv, are where a confident ranking is wrong: "I have a spreadsheet exported
as comma-separated values and need JSON" ranks json-to-csv first with 0.79). A product, not one logistic
regression over all: the softmax's probability is relative to the other tools, so in a library of one or
two tools it is near 1 for any task, and an additive model let that outvote the nearness (a one-tool
library reused its tool for everything).
Both factors are logistic regressions fitted by `scripts/bench_decide --fit` on ToolE queries its test split
does not contain: a library without a further fifth of the tools, fitted on 15 history queries per tool; the
first factor on its tools' history queries 16-20 (a tool is there) against that fifth's queries (none is),
the second on the former (top hit right or wrong). The product is then multiplied by the tool's smoothed
success rate, so a tool that keeps failing stops being reused blindly. THRESHOLD is the operating point
chosen on the same split (the lowest with precision >= 97% and false reuse of an absent tool <= 3%).

Input: the caller validates the input it would run against the top tool's input schema (a bool, or a callable
taking the tool's key). No input (`None`) means no fast path: the tool's arguments are in the task's words,
and a model has to write them. A caller with no input that wants a tool whose schema accepts `{}` validates
`{}` and passes the verdict.

The calibration holds for the features it was fitted on: MiniLM with the lexical features of
evogit.embed.Lexical and the fit of evogit.retrieval. With another embedder there is no fast path
(`model_id`); a change to either means refitting with `scripts/bench_decide --fit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .events import short_key

# Fitted by `scripts/bench_decide --fit` (ToolE, calibration split; see the module docstring):
# P(right) = sigmoid(NEAR[0] + NEAR[1] * nearest)
#          * sigmoid(WHICH[0] + WHICH[1] * log-odds of the probability + WHICH[2] * likeness to the runner-up)
NEAR = (-5.3658, 9.051)
WHICH = (1.5721, 1.2196, -2.2991)
THRESHOLD = 0.75
CALIBRATED_FOR = "sentence-transformers/all-MiniLM-L6-v2"
# Below FIT_FLOOR a tool is taken not to do a task (see `fit`): the highest floor under which at most 3% of right
# tools' fits fall on the calibration split (2.5% of 610 there; 1.4% of the starter library's paraphrases, 0% of
# its holdout); it catches 9.4% of top hits for tasks no tool does, and more of the lower-ranked tools a model
# picks instead (fuzzy-match for "is this phrase a palindrome …": 0.05)
FIT_FLOOR = 0.06
SUCCESS_PSEUDO_RUNS = 4  # a tool's success rate counts as (ok + 4) / (runs + 4): new tools are not penalised


class Scored(Protocol):
    """What decide reads of a search hit (evogit.retrieval.Hit has it)."""

    key: str
    score: float
    probability: float
    nearest: float
    like_next: float
    runs: int
    success_rate: float | None


@dataclass(frozen=True)
class Decision:
    reuse: bool  # run `tool` without a model
    tool: str | None  # the likely tool (name@fingerprint), reused or not; None if there were no hits
    confidence: float  # calibrated probability that `tool` is right for the task, times its success rate
    reason: str  # one line for people


def features(hits: Sequence[Scored]) -> tuple[float, float, float]:
    """(log-odds of the top hit's probability, the cosine of the query to the nearest text it is known for,
    the cosine of its description to the runner-up's). Also tried on the calibration split, and dropped for
    adding nothing: the lead of the top score over the second (its coefficient came out -0.07 beside the
    log-odds), whether the description alone ranks the top hit first (-0.26), the share of the query's 10
    or 20 nearest known texts that are the top hit's, the raw top score, and how far the nearest cosine is
    below the tool's own texts' typical one; the best coverage at >= 97% precision and <= 3% false reuse on
    the test moved by under 2 points either way."""
    p = min(max(hits[0].probability, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p)), hits[0].nearest, hits[0].like_next


def confidence(hits: Sequence[Scored]) -> float:
    """Calibrated probability that the top hit is the right tool (0 without hits), times its success rate."""
    if not hits:
        return 0.0
    odds, nearest, like_next = features(hits)
    known = fit(nearest)  # a tool in the library does what the task asks...
    which = _sigmoid(WHICH[0] + WHICH[1] * odds + WHICH[2] * like_next)  # ...and it is this one
    top = hits[0]
    ok = (top.success_rate or 0.0) * top.runs
    works = (ok + SUCCESS_PSEUDO_RUNS) / (top.runs + SUCCESS_PSEUDO_RUNS)
    return known * which * works


def fit(nearest: float) -> float:
    """The calibrated chance that a tool does what a task asks, from the cosine of the task to the nearest text
    the tool is known for (`confidence`'s first factor, for any tool, not only the top hit)."""
    return _sigmoid(NEAR[0] + NEAR[1] * nearest)


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def decide(hits: Sequence[Scored], input_ok: bool | Callable[[str], bool] | None, *,
           model_id: str, threshold: float = THRESHOLD) -> Decision:
    """Reuse the top hit without a model only if its confidence reaches `threshold` and the input validates
    against its schema; otherwise say which tool is likely, how sure, and why not. `model_id` is the
    embedder's that ranked the hits (what `Runtime.search` returns with them)."""
    if not hits:
        return Decision(False, None, 0.0, "no tool in the library")
    top = hits[0]
    if model_id != CALIBRATED_FOR:
        return Decision(False, top.key, 0.0, f"no fast path: the decision is calibrated for {CALIBRATED_FOR}, "
                                             f"not {model_id}")
    sure = confidence(hits)
    if sure < threshold:
        rival = ""
        if len(hits) > 1 and top.score - hits[1].score < 1.0:
            rival = f"; {_short(hits[1].key)} is close"
        elif len(hits) > 1 and top.like_next >= 0.6:
            rival = f"; {_short(hits[1].key)} is much like it"
        return Decision(False, top.key, sure, f"not sure enough: {sure:.2f} < {threshold:.2f}{rival}")
    if input_ok is None:
        return Decision(False, top.key, sure, "no input given: the task's arguments need a model")
    valid = input_ok(top.key) if callable(input_ok) else input_ok
    if not valid:
        return Decision(False, top.key, sure, f"the input does not match {_short(top.key)}'s input schema")
    return Decision(True, top.key, sure, f"confident ({sure:.2f} >= {threshold:.2f}) and the input validates")


_short = short_key
