"""Real-model benchmark (issue 16, item 6): tool specs written by the team, each created by whatever model evogit
is configured for (`OPENAI_BASE_URL` / `EVOGIT_MODEL`, or the embedded local model), then a handful of solves.

Each spec in `bench_real_model_specs.json` is a task in a user's words plus two examples. In one skills repo made
by `evogit init` at the start (the starter library, built once; `--repo DIR` reuses one) every spec runs as

    evogit --repo DIR create TASK --example E1 --example E2 --rounds 3 --json

a subprocess of the project's own CLI, under a wall limit per spec (`--timeout`, default 15 min; the process group
is killed when it runs over). From its JSON: green or not, attempts, tokens, model seconds and build seconds per
attempt (build = seconds - model_seconds), where each red attempt stopped and why, and the wall time. A green tool
is then run on both examples (`evogit run NAME JSON --json`) and its outputs compared with the expects. Then the
solve tasks (`evogit solve TASK --input JSON --json`): served by a starter tool, by a tool a spec created earlier in
this run, or needing a new tool.

Prints a table per spec and a summary against the goal: >= 60% of the specs green within 3 repair rounds, median
wall <= 3 minutes per green tool on 2 cores. Raw results go to `--out` (default: a temp file), rewritten after every
spec, so `--resume` skips what is already there. A spec whose subprocess crashes, times out or prints no JSON is
counted red with the reason; nothing stops the bench.

    scripts/bench_real_model --check-specs          # only the Python references against the spec examples
    scripts/bench_real_model --only fizzbuzz,gcd-lcm --solves none
    scripts/bench_real_model --record sessions/     # EVOGIT_RECORD=sessions/<id>.json per spec (for replay tests)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evogit.build import json_equal  # noqa: E402  (evogit's case equality: like ==, but true/false are not numbers)

SPECS = Path(__file__).resolve().parent / "bench_real_model_specs.json"
STARTER = ROOT / "skills-repo"
EVOGIT = ROOT / ".venv" / "bin" / "evogit"
GOAL_GREEN = 0.60  # share of specs green within 3 repair rounds
GOAL_MEDIAN = 180.0  # seconds of wall per green tool
GOAL_ROUNDS = 3
COMPILED = {"unit_tests", "cases", "green", "commit"}  # an attempt that stopped here got past the compiler
STAGE_LINE = re.compile(r"^\[\s*([0-9.]+)s\]\s*(.*)$")
Json = Any


# -- the Python references: what a correct tool prints ------------------------------------------------------------
def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


def _caesar(text: str, shift: int) -> str:
    out = []
    for c in text:
        if "a" <= c <= "z" or "A" <= c <= "Z":
            base = ord("a") if c.islower() else ord("A")
            out.append(chr(base + (ord(c) - base + shift) % 26))
        else:
            out.append(c)
    return "".join(out)


def _rle(text: str) -> str:
    return "".join(f"{len(m.group(0))}{m.group(1)}" for m in re.finditer(r"(.)\1*", text, re.S))


def _luhn(number: str) -> bool:
    digits = [int(c) for c in number if c != " "]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return bool(digits) and total % 10 == 0


def _factors(n: int) -> list[int]:
    out, d = [], 2
    while d * d <= n:
        while n % d == 0:
            out.append(d)
            n //= d
        d += 1
    return out + ([n] if n > 1 else [])


def _flatten(items: list) -> list:
    return [y for x in items for y in (_flatten(x) if isinstance(x, list) else [x])]


def _longest(text: str) -> dict:
    words = re.findall(r"[A-Za-z]+", text)
    best = max(words, key=len) if words else ""  # max keeps the first of equal keys
    return {"word": best, "length": len(best)}


def _pig(word: str) -> str:
    if word[0] in "aeiou":
        return word + "way"
    i = next((k for k, c in enumerate(word) if c in "aeiou"), len(word))
    return word[i:] + word[:i] + "ay"


def _balanced(text: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for c in text:
        if c in "([{":
            stack.append(c)
        elif c in pairs and (not stack or stack.pop() != pairs[c]):
            return False
    return not stack


def _ordinal(n: int) -> str:
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _triangle(a: int, b: int, c: int) -> str:
    x, y, z = sorted((a, b, c))
    if x <= 0 or x + y <= z:
        return "invalid"
    return "equilateral" if x == z else "isosceles" if x == y or y == z else "scalene"


def _merge(intervals: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def _ipv4(ip: str) -> bool:
    parts = ip.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and p.isascii() and (p == "0" or not p.startswith("0")) and int(p) <= 255 for p in parts)


def _version(a: str, b: str) -> int:
    x, y = [int(p) for p in a.split(".")], [int(p) for p in b.split(".")]
    n = max(len(x), len(y))
    x, y = x + [0] * (n - len(x)), y + [0] * (n - len(y))
    return (x > y) - (x < y)


def _fib(n: int) -> list[int]:
    out, a, b = [], 0, 1
    for _ in range(n):
        out.append(a)
        a, b = b, a + b
    return out


def _running(numbers: list[int]) -> list[int]:
    out, total = [], 0
    for x in numbers:
        total += x
        out.append(total)
    return out


def _letters(text: str) -> dict[str, int]:
    return dict(Counter(c.lower() for c in text if c.isascii() and c.isalpha()))


def _alnum(text: str) -> list[str]:
    return [c.lower() for c in text if c.isalnum()]


def _hms(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _wc(text: str) -> dict[str, int]:
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    return {"words": len(text.split()), "lines": lines, "chars": len(text)}


def _slug(text: str) -> str:  # ASCII inputs only (the starter tool also transliterates accents)
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))


VOWELS = set("aeiouAEIOU")
REFERENCES: dict[str, Callable[[dict], Json]] = {
    "is-palindrome": lambda i: {"palindrome": _alnum(i["text"]) == _alnum(i["text"])[::-1]},
    "caesar-shift": lambda i: {"text": _caesar(i["text"], i["shift"])},
    "vowel-consonant-count": lambda i: {
        "vowels": sum(c in VOWELS for c in i["text"]),
        "consonants": sum(c.isascii() and c.isalpha() and c not in VOWELS for c in i["text"])},
    "run-length-encode": lambda i: {"encoded": _rle(i["text"])},
    "fizzbuzz": lambda i: {"items": ["FizzBuzz" if k % 15 == 0 else "Fizz" if k % 3 == 0 else "Buzz" if k % 5 == 0
                                     else str(k) for k in range(1, i["n"] + 1)]},
    "luhn-check": lambda i: {"valid": _luhn(i["number"])},
    "leap-years": lambda i: (lambda ys: {"years": ys, "count": len(ys)})(
        [y for y in range(i["start"], i["end"] + 1) if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)]),
    "prime-factors": lambda i: {"factors": _factors(i["n"])},
    "gcd-lcm": lambda i: {"gcd": _gcd(i["a"], i["b"]), "lcm": i["a"] * i["b"] // _gcd(i["a"], i["b"])},
    "run-length-decode": lambda i: {"text": "".join(c * int(n) for n, c in re.findall(r"(\d+)(\D)", i["encoded"]))},
    "hex-to-decimal": lambda i: {"decimal": int(i["hex"], 16)},
    "chunk-list": lambda i: {"chunks": [i["items"][k:k + i["size"]] for k in range(0, len(i["items"]), i["size"])]},
    "decimal-to-hex": lambda i: {"hex": format(i["number"], "x")},
    "flatten-list": lambda i: {"items": _flatten(i["items"])},
    "binary-to-decimal": lambda i: {"decimal": int(i["binary"], 2)},
    "matrix-transpose": lambda i: {"matrix": [list(col) for col in zip(*i["matrix"], strict=True)]},
    "clamp-numbers": lambda i: {"numbers": [min(max(x, i["min"]), i["max"]) for x in i["numbers"]]},
    "longest-word": lambda i: _longest(i["text"]),
    "digit-sum": lambda i: {"sum": sum(int(d) for d in str(i["number"]))},
    "pig-latin": lambda i: {"text": " ".join(_pig(w) for w in i["text"].split(" "))},
    "reverse-words": lambda i: {"text": " ".join(reversed(i["text"].split()))},
    "letter-frequency": lambda i: {"counts": _letters(i["text"])},
    "anagram-check": lambda i: {"anagram": sorted(i["a"].lower().replace(" ", "")) == sorted(i["b"].lower().replace(" ", ""))},
    "balanced-brackets": lambda i: {"balanced": _balanced(i["text"])},
    "factorial": lambda i: {"factorial": math.factorial(i["n"])},
    "ordinal-suffix": lambda i: {"ordinal": _ordinal(i["n"])},
    "fibonacci": lambda i: {"numbers": _fib(i["n"])},
    "triangle-type": lambda i: {"type": _triangle(i["a"], i["b"], i["c"])},
    "primes-up-to": lambda i: {"primes": [n for n in range(2, i["limit"] + 1) if _is_prime(n)]},
    "merge-intervals": lambda i: {"intervals": _merge(i["intervals"])},
    "acronym": lambda i: {"acronym": "".join(w[0].upper() for w in re.split(r"[ \-]+", i["text"]) if w)},
    "ipv4-check": lambda i: {"valid": _ipv4(i["ip"])},
    "remove-vowels": lambda i: {"text": "".join(c for c in i["text"] if c not in VOWELS)},
    "version-compare": lambda i: {"result": _version(i["a"], i["b"])},
    "running-sum": lambda i: {"sums": _running(i["numbers"])},
    "mask-card": lambda i: {"masked": "*" * max(len(i["number"]) - 4, 0) + i["number"][-4:]},
    "seconds-to-hms": lambda i: {"time": _hms(i["seconds"])},
    # what the solve tasks' tools print
    "starter:word-count": lambda i: _wc(i["text"]),
    "starter:slugify": lambda i: {"slug": _slug(i["text"])},
    "new-minutes-split": lambda i: {"hours": i["minutes"] // 60, "minutes": i["minutes"] % 60},
    "new-capitalized-words": lambda i: {"count": sum(w[0].isupper() for w in i["text"].split())},
}


# -- JSON comparison ------------------------------------------------------------------------------------------------
def strict_equal(a: Json, b: Json) -> bool:
    """Exactly the same JSON text up to key order and spacing: 1 is not 1.0, true is not 1."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=False))
    return bool(a == b)


def _floats(value: Json) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return []


# -- the specs ------------------------------------------------------------------------------------------------------
def load_specs(path: Path) -> tuple[list[dict], list[dict]]:
    data = json.loads(path.read_text())
    return data["specs"], data.get("solves", [])


def check_specs(specs: list[dict], solves: list[dict]) -> list[str]:
    """Every way a spec could be wrong before the model is blamed: its shape, its field names in the task, floats
    that are not exact, a starter tool's name, and each example against the Python reference."""
    problems: list[str] = []
    starters = {p.name for p in STARTER.iterdir() if p.is_dir()} if STARTER.is_dir() else set()
    ids = [s.get("id") for s in specs]
    for dup in sorted({i for i in ids if ids.count(i) > 1}, key=str):
        problems.append(f"{dup}: id used twice")
    for spec in specs:
        sid = spec.get("id", "?")
        if not isinstance(sid, str) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", sid):
            problems.append(f"{sid}: id is not kebab-case")
        if sid in starters:
            problems.append(f"{sid}: is a starter tool")
        task, examples = spec.get("task"), spec.get("examples")
        if not isinstance(task, str) or not task.strip():
            problems.append(f"{sid}: no task")
            continue
        if not isinstance(examples, list) or len(examples) != 2:
            problems.append(f"{sid}: needs exactly two examples")
            continue
        shapes = set()
        for n, ex in enumerate(examples, 1):
            if not isinstance(ex, dict) or set(ex) != {"input", "expect"}:
                problems.append(f"{sid} example {n}: must be {{\"input\", \"expect\"}}")
                continue
            inp, expect = ex["input"], ex["expect"]
            if not isinstance(inp, dict) or not isinstance(expect, dict):
                problems.append(f"{sid} example {n}: input and expect must be JSON objects")
                continue
            shapes.add(tuple(sorted(expect)))
            for key in [*inp, *expect]:
                if f'"{key}"' not in task:
                    problems.append(f"{sid} example {n}: the task does not name the field \"{key}\"")
            for f in _floats(inp) + _floats(expect):
                if (f * 8) != int(f * 8):
                    problems.append(f"{sid} example {n}: {f!r} is not an exact float")
            ref = REFERENCES.get(sid)
            if ref is None:
                problems.append(f"{sid}: no Python reference")
                continue
            try:
                got = ref(inp)
            except Exception as e:  # noqa: BLE001 - a reference that cannot take its own example is a finding
                problems.append(f"{sid} example {n}: the reference failed: {type(e).__name__}: {e}")
                continue
            if not strict_equal(got, expect):
                problems.append(f"{sid} example {n}: expect {json.dumps(expect)} but the reference prints "
                                f"{json.dumps(got)}")
        if len(shapes) > 1:
            problems.append(f"{sid}: the two expects have different fields: {sorted(shapes)}")
    spec_ids = set(ids)
    for s in solves:
        sid, serves = s.get("id", "?"), s.get("serves", "")
        if not all(isinstance(s.get(k), str) and s[k].strip() for k in ("id", "task", "serves")):
            problems.append(f"solve {sid}: needs id, task and serves")
            continue
        kind, _, name = serves.partition(":")
        if kind == "starter" and name not in starters:
            problems.append(f"solve {sid}: {name} is not a starter tool")
        if kind == "spec" and name not in spec_ids:
            problems.append(f"solve {sid}: no spec {name}")
        if kind not in ("starter", "spec", "new"):
            problems.append(f"solve {sid}: serves must be starter:NAME, spec:ID or new")
        ref = REFERENCES.get(name if kind == "spec" else serves if kind == "starter" else sid)
        if ref is None:
            problems.append(f"solve {sid}: no Python reference")
            continue
        try:
            got = ref(s.get("input") or {})
        except Exception as e:  # noqa: BLE001
            problems.append(f"solve {sid}: the reference failed: {type(e).__name__}: {e}")
            continue
        if not strict_equal(got, s.get("expect")):
            problems.append(f"solve {sid}: expect {json.dumps(s.get('expect'))} but the reference prints "
                            f"{json.dumps(got)}")
    return problems


# -- subprocesses ---------------------------------------------------------------------------------------------------
@dataclass
class Proc:
    """One finished (or killed) subprocess."""

    argv: list[str]
    rc: int | None  # None: killed at the wall limit
    stdout: str
    stderr_lines: list[tuple[float, str]]  # (seconds since start, line)
    wall: float
    timed_out: bool = False
    crashed: str = ""  # could not start

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.stderr_lines)


def run_proc(argv: list[str], timeout: float, env: dict[str, str] | None = None, echo: str | None = None) -> Proc:
    """Run argv in its own process group; stderr lines are timed as they arrive (and echoed with `echo` as prefix).
    Past `timeout` seconds the whole group gets SIGTERM, then SIGKILL: cargo and the sandbox go with it."""
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, start_new_session=True)
    except OSError as e:
        return Proc(argv, None, "", [], time.monotonic() - t0, crashed=f"{type(e).__name__}: {e}")
    out: list[bytes] = []
    lines: list[tuple[float, str]] = []
    assert p.stdout is not None and p.stderr is not None
    stdout, stderr = p.stdout, p.stderr

    def read_out() -> None:
        out.append(stdout.read())

    def read_err() -> None:
        for raw in iter(stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append((time.monotonic() - t0, line))
            if echo is not None:
                print(f"{echo}{line}", file=sys.stderr, flush=True)

    readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for r in readers:
        r.start()
    timed_out = False
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(p)
    except BaseException:  # Ctrl-C: leave nothing running behind us
        _kill_group(p)
        raise
    for r in readers:
        r.join(timeout=10)
    wall = time.monotonic() - t0
    text = b"".join(out).decode("utf-8", "replace")
    return Proc(argv, None if timed_out else p.returncode, text, lines, wall, timed_out)


def _kill_group(p: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, sig)
        try:
            p.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def parse_json(text: str) -> tuple[Json, str]:
    """The JSON document a `--json` command printed: the whole stdout, else its last line that parses."""
    text = text.strip()
    if not text:
        return None, "no output on stdout"
    try:
        return json.loads(text), ""
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        with contextlib.suppress(ValueError):
            return json.loads(line), ""
    return None, f"stdout is not JSON: {text[:200]!r}"


def evogit(repo: Path, *args: str) -> list[str]:
    return [str(EVOGIT), "--repo", str(repo), *args]


# -- one spec -------------------------------------------------------------------------------------------------------
ROUND_RED = re.compile(r"round (\d+) red at (\w+): (.*)")
ROUND_OF = re.compile(r"\(.*?round (\d+)\)")


def rounds_from_stages(lines: list[tuple[float, str]], end: float) -> list[dict]:
    """What the stage lines on stderr tell of the rounds when no JSON came (a create killed at the wall limit):
    each round's stage if it ended red, the seconds from its model call to its build and from its build on."""
    rounds: dict[int, dict] = {}
    marks: list[tuple[float, str, int]] = []  # (time, what, round)
    for t, line in lines:
        m = STAGE_LINE.match(line)
        text = m.group(2) if m else line
        red = ROUND_RED.match(text)
        if red:
            n = int(red.group(1))
            rounds.setdefault(n, {"round": n})
            rounds[n].update(stage=red.group(2), error=None, evidence=red.group(3)[:1500])
            marks.append((t, "end", n))
            continue
        r = ROUND_OF.search(text)
        if r and text.startswith(("model call", "building")):
            n = int(r.group(1))
            rounds.setdefault(n, {"round": n, "stage": "model" if text.startswith("model") else "build",
                                  "error": "unfinished", "evidence": ""})
            marks.append((t, "model" if text.startswith("model") else "build", n))
    for (t0, what, n), (t1, _, _) in zip(marks, [*marks[1:], (end, "", 0)], strict=True):
        r0 = rounds[n]
        if what != "end":
            r0["seconds"] = round(r0.get("seconds", 0.0) + max(t1 - t0, 0.0), 2)
        if what == "model":
            r0["model_seconds"] = round(max(t1 - t0, 0.0), 2)
    for r0 in rounds.values():
        r0["from_stderr"] = True
    return [rounds[n] for n in sorted(rounds)]


def distinct_replies(recording: Path) -> list[int] | None:
    """[distinct replies, replies] in a recorded session: a model that answers a repair with its last reply again
    shows here (None if there is no readable recording)."""
    try:
        data = json.loads(recording.read_text())
    except (OSError, ValueError):
        return None
    steps = data.get("steps", []) if isinstance(data, dict) else data
    replies = [json.dumps(st["reply"], sort_keys=True) for st in steps if isinstance(st, dict) and "reply" in st]
    return [len(set(replies)), len(replies)]


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def create_spec(spec: dict, repo: Path, args: argparse.Namespace) -> dict:
    """Create the spec's tool, and run a green one on both examples. Never raises."""
    sid = spec["id"]
    argv = evogit(repo, "create", spec["task"])
    for ex in spec["examples"]:
        argv += ["--example", json.dumps({"input": ex["input"], "expect": ex["expect"]})]
    argv += ["--rounds", str(args.rounds), "--json"]
    env = dict(os.environ)
    if args.record:
        env["EVOGIT_RECORD"] = str(Path(args.record).resolve() / f"{sid}.json")
    proc = run_proc(argv, args.timeout, env, echo=f"  {sid}: " if args.verbose else None)
    out: dict[str, Any] = {"id": sid, "level": spec.get("level"), "task": spec["task"], "rc": proc.rc,
                           "wall": round(proc.wall, 2), "timed_out": proc.timed_out,
                           "stderr_tail": [line for _, line in proc.stderr_lines[-40:]],
                           "stages": [{"t": round(t, 1), "line": line} for t, line in proc.stderr_lines
                                      if STAGE_LINE.match(line)][:200]}
    if args.record:
        out["recording"] = env["EVOGIT_RECORD"]
    data, why = parse_json(proc.stdout)
    if proc.crashed:
        why = f"could not start: {proc.crashed}"
    elif proc.timed_out:
        why = f"timed out after {args.timeout:.0f} s (process group killed)"
    elif not isinstance(data, dict):
        why = why or f"stdout JSON is not an object: {str(data)[:200]}"
        if proc.rc not in (0, 1):
            tail = proc.stderr.strip().splitlines()[-1:] or [""]
            why = f"exit {proc.rc}: {tail[0][:300]}; {why}"
    out["json"] = data if isinstance(data, dict) else None
    res: dict = data if isinstance(data, dict) else {}
    attempts = [a for a in (res.get("attempts") or []) if isinstance(a, dict)]
    if not attempts:  # killed, crashed or no JSON: what stderr says of the rounds (no tokens known)
        attempts = rounds_from_stages(proc.stderr_lines, proc.wall)
    out["ok"] = bool(res.get("ok")) and not proc.timed_out
    out["failure"] = None if out["ok"] else (why or res.get("error") or f"not green (exit {proc.rc})")
    out["tool"] = res.get("tool") or None
    out["version"] = res.get("version")
    out["model"] = res.get("model")
    out["attempts"] = len(attempts)
    out["tokens"] = int(_num(res.get("tokens")) or sum(_num(a.get("prompt_tokens")) + _num(a.get("completion_tokens"))
                                                      for a in attempts))
    out["model_seconds"] = round(sum(_num(a.get("model_seconds")) for a in attempts), 2)
    out["build_seconds"] = round(sum(max(_num(a.get("seconds")) - _num(a.get("model_seconds")), 0.0)
                                     for a in attempts), 2)
    out["rounds"] = [{"round": a.get("round"), "request": a.get("request"), "stage": a.get("stage"),
                      "error": a.get("error"),
                      "seconds": a.get("seconds"), "model_seconds": a.get("model_seconds"),
                      "prompt_tokens": a.get("prompt_tokens"), "completion_tokens": a.get("completion_tokens"),
                      "evidence": str(a.get("evidence") or "")[:1500],
                      **({"from_stderr": True} if a.get("from_stderr") else {})} for a in attempts]
    out["overhead_seconds"] = round(max(proc.wall - sum(_num(a.get("seconds")) for a in attempts), 0.0), 2)
    last = attempts[-1] if attempts else {}
    out["last_stage"] = (f"{last.get('stage')}" + (f"/{last.get('error')}" if last.get("error") else "")
                         if last else "none")
    if proc.timed_out:
        out["last_stage"] = f"timeout in round {last.get('round')} at {last.get('stage')}" if last else "timeout"
    out["green_within"] = out["ok"] and 0 < len(attempts) <= GOAL_ROUNDS + 1
    if args.record:
        out["distinct_replies"] = distinct_replies(Path(env["EVOGIT_RECORD"]))
    out["examples"] = []
    if out["ok"] and out["tool"]:
        for ex in spec["examples"]:
            run = run_proc(evogit(repo, "run", out["tool"], json.dumps(ex["input"]), "--json"), 120)
            env_json, bad = parse_json(run.stdout)
            output = env_json.get("output") if isinstance(env_json, dict) else None
            out["examples"].append({
                "input": ex["input"], "expect": ex["expect"], "output": output,
                "ok": isinstance(env_json, dict) and bool(env_json.get("ok")),
                "matches": isinstance(env_json, dict) and bool(env_json.get("ok")) and json_equal(output, ex["expect"]),
                "exact": isinstance(env_json, dict) and strict_equal(output, ex["expect"]),
                "error": (env_json.get("error") if isinstance(env_json, dict) else bad) or None})
    return out


# -- one solve ------------------------------------------------------------------------------------------------------
def solve_task(s: dict, repo: Path, results: dict, args: argparse.Namespace) -> dict:
    kind, _, name = s["serves"].partition(":")
    expected_tool = name if kind == "starter" else None
    note = ""
    if kind == "spec":
        made = results["specs"].get(name)
        expected_tool = made.get("tool") if made and made.get("ok") else None
        if expected_tool is None:
            note = f"spec {name} has no green tool in this run, so this solve needs a create"
    argv = evogit(repo, "solve", s["task"], "--input", json.dumps(s["input"]), "--json")
    env = dict(os.environ)
    if args.record:
        env["EVOGIT_RECORD"] = str(Path(args.record).resolve() / f"solve-{s['id']}.json")
    proc = run_proc(argv, args.timeout, env, echo=f"  solve {s['id']}: " if args.verbose else None)
    data, why = parse_json(proc.stdout)
    res: dict = data if isinstance(data, dict) else {}
    answer = res.get("answer")
    if isinstance(answer, str):
        with contextlib.suppress(ValueError):
            answer = json.loads(answer)
    served_by = res.get("served_by")
    served_name = served_by.split("@")[0] if isinstance(served_by, str) else None
    written = [str(w).split("@")[0] for w in (res.get("written") or [])]
    if res.get("fast_path"):
        how = "fast path"
    elif served_name and served_name in written:
        how = "created"
    elif served_name:
        how = "model run"
    elif res.get("ok"):
        how = "model answer (no tool)"
    else:
        how = f"not served ({res.get('outcome') or ('timeout' if proc.timed_out else 'no JSON')})"
    failure = None
    if proc.timed_out:
        failure = f"timed out after {args.timeout:.0f} s"
    elif not isinstance(data, dict):
        failure = why or "stdout JSON is not an object"
    elif not res.get("ok"):
        failure = res.get("error") or res.get("outcome") or f"exit {proc.rc}"
    return {"id": s["id"], "task": s["task"], "serves": s["serves"], "expected_tool": expected_tool, "note": note,
            "rc": proc.rc, "wall": round(proc.wall, 2), "timed_out": proc.timed_out, "ok": bool(res.get("ok")),
            "outcome": res.get("outcome"), "how": how, "served_by": served_by, "written": res.get("written") or [],
            "model_used": bool(res.get("model_used")), "fast_path": bool(res.get("fast_path")),
            "confidence": res.get("confidence"), "tokens": int(_num(res.get("tokens"))), "answer": answer,
            "answer_matches": json_equal(answer, s["expect"]) if res.get("ok") else False,
            "right_tool": (served_name == expected_tool) if expected_tool else (how == "created" if kind == "new"
                                                                                 else None),
            "steps": [{"kind": st.get("kind"), "text": str(st.get("text"))[:300]}
                      for st in (res.get("steps") or []) if isinstance(st, dict)],
            "failure": failure, "stderr_tail": [line for _, line in proc.stderr_lines[-20:]]}


# -- the run --------------------------------------------------------------------------------------------------------
def model_info() -> dict[str, Any]:
    """What evogit will talk to, as far as the environment says (the CLI's own choice is in each result's model)."""
    base = os.environ.get("OPENAI_BASE_URL")
    info: dict[str, Any] = {"base_url": base, "model": os.environ.get("EVOGIT_MODEL"), "served": None}
    if base:
        try:
            req = urllib.request.Request(base.rstrip("/") + "/models", headers={
                "Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY') or 'x'}"})
            with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - the configured model server
                info["served"] = [m.get("id") for m in json.loads(r.read()).get("data", [])]
        except (OSError, ValueError) as e:
            info["served"] = f"unreachable: {e}"
    elif EVOGIT.exists():  # no server named: evogit starts its embedded model if it is installed
        status = run_proc([str(EVOGIT), "model", "status"], 60)
        text = status.stdout.strip() or status.stderr.strip()
        info["embedded"], info["served"] = text[:1000], text.splitlines()[0] if text else None
    return info


def save(path: Path, results: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)


def init_repo(repo: Path) -> dict:
    if (repo / ".git").exists() or (repo / "HEAD").exists():
        print(f"reusing skills repo {repo}", file=sys.stderr)
        return {"reused": True}
    print(f"evogit init {repo} (the starter library; the first build compiles the crates)", file=sys.stderr)
    proc = run_proc([str(EVOGIT), "init", str(repo)], 3600, echo="  init: ")
    if proc.rc != 0:
        raise SystemExit(f"evogit init failed (exit {proc.rc}): {proc.stderr.strip()[-500:]}")
    return {"reused": False, "init_seconds": round(proc.wall, 1)}


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(results: dict) -> dict:
    specs = [r for r in results["specs"].values() if r.get("done")]
    green = [r for r in specs if r.get("ok")]
    within = [r for r in specs if r.get("green_within")]
    model_s = sum(_num(r.get("model_seconds")) for r in specs)
    build_s = sum(_num(r.get("build_seconds")) for r in specs)
    first = [r["rounds"][0] for r in specs if r.get("rounds")]
    red_stages = Counter(a.get("stage") or "?" for r in specs for a in r.get("rounds", []) if a.get("stage") != "green")
    red_errors = Counter(f"{a.get('stage')}" + (f"/{a['error']}" if a.get("error") else "")
                         for r in specs for a in r.get("rounds", [])
                         if a.get("stage") != "green")
    levels: dict[str, list[int]] = {}
    for r in specs:
        lv = levels.setdefault(str(r.get("level")), [0, 0])
        lv[0] += bool(r.get("green_within"))
        lv[1] += 1
    solves = list(results.get("solves", {}).values())
    median_green = _median([_num(r.get("wall")) for r in green])
    share = len(within) / len(specs) if specs else 0.0
    return {
        "specs": len(specs), "green": len(green), "green_within_3": len(within), "green_share": round(share, 3),
        "by_level": {k: f"{g}/{n}" for k, (g, n) in sorted(levels.items())},
        "median_wall_green": round(median_green, 1) if median_green is not None else None,
        "median_wall_all": _median([_num(r.get("wall")) for r in specs]),
        "mean_attempts": round(statistics.mean([r.get("attempts", 0) for r in specs]), 2) if specs else None,
        "mean_attempts_green": round(statistics.mean([r.get("attempts", 0) for r in green]), 2) if green else None,
        "timed_out": sum(bool(r.get("timed_out")) for r in specs),
        "no_json": sum(r.get("json") is None and not r.get("timed_out") for r in specs),
        "tokens_create": sum(int(_num(r.get("tokens"))) for r in specs),
        "tokens_solve": sum(int(_num(s.get("tokens"))) for s in solves),
        "model_seconds": round(model_s, 1), "build_seconds": round(build_s, 1),
        "overhead_seconds": round(sum(_num(r.get("overhead_seconds")) for r in specs), 1),
        "attempts_without_prompt_tokens": sum(1 for r in specs for a in r.get("rounds", [])
                                              if not a.get("from_stderr") and a.get("stage") != "model"
                                              and not _num(a.get("prompt_tokens"))),
        "repeated_replies": sorted(r["id"] for r in specs if r.get("distinct_replies")
                                   and r["distinct_replies"][0] < r["distinct_replies"][1]),
        "tokens_per_green": round(statistics.mean([_num(r.get("tokens")) for r in green])) if green else None,
        "model_share": round(model_s / (model_s + build_s), 3) if model_s + build_s else None,
        "first_attempt_compiled": f"{sum(a.get('stage') in COMPILED for a in first)}/{len(first)}",
        "first_attempt_green": f"{sum(a.get('stage') == 'green' for a in first)}/{len(first)}",
        "red_attempts_by_stage": dict(red_stages.most_common()),
        "red_attempts_by_error": dict(red_errors.most_common()),
        "examples_rerun_match": f"{sum(e.get('matches', False) for r in green for e in r.get('examples', []))}/"
                                f"{sum(len(r.get('examples', [])) for r in green)}",
        "solves": {"n": len(solves), "ok": sum(bool(s.get("ok")) for s in solves),
                   "answer_matches": sum(bool(s.get("answer_matches")) for s in solves),
                   "how": dict(Counter(s.get("how") for s in solves))},
        "goal_green_met": share >= GOAL_GREEN,
        "goal_median_met": median_green is not None and median_green <= GOAL_MEDIAN,
    }


def _fmt(x: Any, spec: str = "") -> str:
    if x is None:
        return "-"
    return format(x, spec) if spec else str(x)


def report(results: dict) -> None:
    specs = [r for r in results["specs"].values() if r.get("done")]
    print(f"\nmodel: {results['meta'].get('model_seen') or results['meta'].get('model')}  "
          f"repo: {results['meta'].get('repo')}  rounds: {results['meta'].get('rounds')}")
    head = f"{'spec':<22} {'level':<6} {'green':<7} {'att':>3} {'tokens':>7} {'model s':>8} {'build s':>8} " \
           f"{'wall s':>7} {'ex':>4}  last stage / failure"
    print(head)
    print("-" * len(head))
    for r in specs:
        green = "yes" if r.get("ok") else "TIMEOUT" if r.get("timed_out") else "no"
        ex = r.get("examples") or []
        exs = f"{sum(e.get('matches', False) for e in ex)}/{len(ex)}" if ex else "-"
        tail = r.get("last_stage") or ""
        if not r.get("ok") and r.get("failure"):
            tail += f"  ({str(r['failure'])[:70]})"
        print(f"{r['id']:<22} {str(r.get('level') or ''):<6} {green:<7} {r.get('attempts', 0):>3} "
              f"{r.get('tokens', 0):>7} {r.get('model_seconds', 0):>8.1f} {r.get('build_seconds', 0):>8.1f} "
              f"{r.get('wall', 0):>7.1f} {exs:>4}  {tail}")
    solves = list(results.get("solves", {}).values())
    if solves:
        print(f"\n{'solve':<24} {'serves':<22} {'ok':<4} {'how':<26} {'served by':<26} {'tokens':>7} {'wall s':>7}  "
              "answer")
        for s in solves:
            served = (s.get("served_by") or "-").split("@")[0][:26]
            mark = "=" if s.get("answer_matches") else "≠"
            print(f"{s['id']:<24} {s['serves']:<22} {'yes' if s.get('ok') else 'no':<4} {s.get('how', ''):<26} "
                  f"{served:<26} {s.get('tokens', 0):>7} {s.get('wall', 0):>7.1f}  {mark} "
                  f"{json.dumps(s.get('answer'))[:60]}" + (f"  ({str(s['failure'])[:60]})" if s.get("failure") else ""))
    m = summarize(results)
    results["summary"] = m
    n = m["specs"]
    s = m["solves"]
    if s["n"]:
        print(f"\nsolves: {s['ok']}/{s['n']} answered, {s['answer_matches']} with the expected answer; "
              f"served: {s['how']}")
    if not n:
        print("\nno specs ran")
        return
    print(f"\ngreen within {GOAL_ROUNDS} repair rounds: {m['green_within_3']}/{n} ({m['green_share'] * 100:.0f}%)"
          f"  [goal >= {GOAL_GREEN * 100:.0f}%: {'met' if m['goal_green_met'] else 'NOT met'}]  by level: "
          + ", ".join(f"{k} {v}" for k, v in m["by_level"].items()))
    print(f"median wall per green tool: {_fmt(m['median_wall_green'])} s  [goal <= {GOAL_MEDIAN:.0f} s: "
          f"{'met' if m['goal_median_met'] else 'NOT met'}]; median wall over all specs {_fmt(m['median_wall_all'], '.1f')} s")
    print(f"attempts per spec: mean {_fmt(m['mean_attempts'])} (green tools: {_fmt(m['mean_attempts_green'])}); "
          f"first attempt compiled {m['first_attempt_compiled']}, green {m['first_attempt_green']}")
    print(f"tokens: {m['tokens_create']:,} creating (mean per green tool {_fmt(m['tokens_per_green'], ',')}), "
          f"{m['tokens_solve']:,} solving" + ("; a create killed at the wall limit reports no tokens"
                                              if m["timed_out"] else ""))
    if m["attempts_without_prompt_tokens"]:
        print(f"  warning: {m['attempts_without_prompt_tokens']} attempts that got a reply report 0 prompt tokens "
              "(the server's usage was not read), so these token counts are low")
    if m["repeated_replies"]:
        print(f"  specs where the model sent a reply it had sent before (recordings): {', '.join(m['repeated_replies'])}")
    share = m["model_share"]
    print(f"seconds: model {m['model_seconds']:,.0f}, build {m['build_seconds']:,.0f}"
          + (f" (model {share * 100:.0f}% / build {(1 - share) * 100:.0f}%)" if share is not None else "")
          + f"; outside the rounds (process start, runtime, commit) {m['overhead_seconds']:,.0f}")
    print(f"red attempts stopped at: {m['red_attempts_by_stage'] or '-'}")
    print(f"  by stage/error: {m['red_attempts_by_error'] or '-'}")
    print(f"timed out: {m['timed_out']}; no JSON: {m['no_json']}; green tools re-run on their examples: "
          f"{m['examples_rerun_match']} match")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", type=Path, default=SPECS, help="the specs file (default: %(default)s)")
    ap.add_argument("--check-specs", action="store_true", help="only check the specs against the Python references")
    ap.add_argument("--only", help="comma-separated spec ids")
    ap.add_argument("--limit", type=int, help="the first N specs (after --only)")
    ap.add_argument("--solves", default="all", help="comma-separated solve ids, 'all' (default) or 'none'")
    ap.add_argument("--repo", type=Path, help="reuse this skills repo (default: a new one from evogit init)")
    ap.add_argument("--out", type=Path, help="raw results JSON (default: a new temp file)")
    ap.add_argument("--resume", action="store_true", help="keep the specs and solves already in --out; skip them")
    ap.add_argument("--record", type=Path, help="EVOGIT_RECORD=DIR/<id>.json per spec (real sessions for replay)")
    ap.add_argument("--rounds", type=int, default=GOAL_ROUNDS, help="repair rounds per create (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=900.0, help="wall limit per spec or solve, seconds "
                                                                   "(default: %(default)s)")
    ap.add_argument("--verbose", "-v", action="store_true", help="echo the CLI's stderr as it comes")
    args = ap.parse_args(argv)

    specs, solves = load_specs(args.specs)
    problems = check_specs(specs, solves)
    n_ex = sum(len(s.get("examples", [])) for s in specs)
    if args.check_specs:
        for p in problems:
            print(f"FAIL {p}")
        print(f"{len(specs)} specs ({n_ex} examples), {len(solves)} solve tasks: "
              + ("all match their Python references" if not problems else f"{len(problems)} problems"))
        return 1 if problems else 0
    if problems:
        print("the specs are wrong (see --check-specs):\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    if not EVOGIT.exists():
        print(f"{EVOGIT} is missing: run scripts/setup", file=sys.stderr)
        return 1

    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = set(wanted) - {s["id"] for s in specs}
        if unknown:
            print(f"unknown spec ids: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        specs = [s for s in specs if s["id"] in wanted]
    if args.limit is not None:
        specs = specs[:args.limit]
    if args.solves == "none":
        solves = []
    elif args.solves != "all":
        wanted = [w.strip() for w in args.solves.split(",") if w.strip()]
        solves = [s for s in solves if s["id"] in wanted]

    out = args.out
    if out is None:
        fd, name = tempfile.mkstemp(prefix="bench-real-model-", suffix=".json")
        os.close(fd)
        out = Path(name)
    results: dict[str, Any] = {"meta": {}, "specs": {}, "solves": {}}
    if args.out and args.out.exists() and args.out.stat().st_size:
        if not args.resume:
            print(f"{args.out} exists: give --resume to continue it, or another --out", file=sys.stderr)
            return 2
        results = json.loads(args.out.read_text())
        results.setdefault("specs", {})
        results.setdefault("solves", {})
    meta = results.setdefault("meta", {})
    repo = args.repo or (Path(meta["repo"]) if args.resume and meta.get("repo") else None)
    if repo is None:
        repo = Path(tempfile.mkdtemp(prefix="bench-real-model-")) / "skills"
    repo = repo.resolve()
    if args.record:
        args.record.mkdir(parents=True, exist_ok=True)
    info = model_info()
    meta.update({"repo": str(repo), "rounds": args.rounds, "timeout": args.timeout, "specs_file": str(args.specs),
                 "base_url": info["base_url"], "model": info["model"], "served_models": info["served"],
                 "cpus": os.cpu_count(), "started": meta.get("started") or time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"model server {info['base_url'] or '(evogit default)'}, model {info['model'] or '(the server default)'}"
          f", served: {info['served']}; results: {out}", file=sys.stderr)
    made = init_repo(repo)
    meta.setdefault("init", made)
    save(out, results)

    todo = [s for s in specs if not results["specs"].get(s["id"], {}).get("done")]
    if len(todo) < len(specs):
        print(f"resuming: {len(specs) - len(todo)} specs already done", file=sys.stderr)
    t_all = time.monotonic()
    for k, spec in enumerate(todo, 1):
        print(f"[{k}/{len(todo)}] {spec['id']}: creating ...", file=sys.stderr, flush=True)
        try:
            r = create_spec(spec, repo, args)
        except Exception as e:  # noqa: BLE001 - a bench bug in one spec must not lose the others
            r = {"id": spec["id"], "level": spec.get("level"), "ok": False, "failure": f"bench error: {e!r}",
                 "attempts": 0, "tokens": 0, "model_seconds": 0.0, "build_seconds": 0.0, "wall": 0.0, "rounds": []}
        r["done"] = True
        results["specs"][spec["id"]] = r
        if r.get("model"):
            meta["model_seen"] = r["model"]
        save(out, results)
        ex = r.get("examples") or []
        exs = f", examples {sum(e.get('matches', False) for e in ex)}/{len(ex)}" if ex else ""
        status = (f"green in {r.get('attempts')} attempt(s) as {r.get('version')}" if r.get("ok")
                  else f"red ({r.get('last_stage')}): {str(r.get('failure'))[:120]}")
        print(f"[{k}/{len(todo)}] {spec['id']}: {status}; {r.get('tokens', 0)} tokens, model "
              f"{r.get('model_seconds', 0):.0f}s build {r.get('build_seconds', 0):.0f}s wall {r.get('wall', 0):.0f}s"
              f"{exs}  (elapsed {time.monotonic() - t_all:.0f}s)", file=sys.stderr, flush=True)
    for k, s in enumerate(solves, 1):
        if results["solves"].get(s["id"], {}).get("done"):
            continue
        try:
            sr = solve_task(s, repo, results, args)
        except Exception as e:  # noqa: BLE001
            sr = {"id": s["id"], "serves": s["serves"], "ok": False, "how": "bench error", "failure": repr(e),
                  "tokens": 0, "wall": 0.0}
        sr["done"] = True
        results["solves"][s["id"]] = sr
        save(out, results)
        print(f"[solve {k}/{len(solves)}] {s['id']}: {'ok' if sr.get('ok') else 'NOT ok'}, {sr.get('how')}, served by "
              f"{sr.get('served_by')}, {sr.get('tokens')} tokens, {sr.get('wall')}s"
              + (f" ({str(sr.get('failure'))[:100]})" if sr.get("failure") else ""), file=sys.stderr, flush=True)
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report(results)
    save(out, results)
    print(f"\nraw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
