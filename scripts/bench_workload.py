"""Workload benchmark: what memory saves. 40 tasks, of which 30 repeat (10) or paraphrase (20) earlier ones,
solved through `evogit.agent.solve.Solver` against the scripted model server (real HTTP, the real `openai`
client), in one process:

  baseline      no memory: every task in a fresh empty library, so the model writes the tool again each time
                (create_binary, then run_binary, then the answer)
  evogit        one library that starts as `evogit init` makes it (the starter tools) and remembers
  evogit-empty  one library that starts empty and remembers (memory alone, without the starter tools)

With `--repeats R` (10 to 20, default 10) R of the 30 later tasks are exact repeats and the rest paraphrases.
The 10 first-time tasks: 6 that a starter tool serves (word-count, slugify, url-parse, sha256-hash,
roman-numerals, base64-encode) and 4 that need a new tool (reverse-text, count-vowels, palindrome-check,
initials; the scripted model "writes" a package for each, which is built and tested in the sandbox). Every
task comes with an input, as an agent would pass it.

The scripted model behaves as a model that reads its prompt: on a task's first request it runs the family's
tool if the candidates list it (`name@`), else creates it; after a create it runs the new tool; after a run it
answers. Tokens are the server's counts: ceil(characters / 4) of the messages, their tool calls and the tool
definitions, and of the reply. Prints model calls, tokens and the ratio to the baseline (goal >= 5x fewer
tokens), the fast-path hit rate, whether each task was served by the right tool, and the median wall time
per task served from the library with a warm runtime (goal <= 50 ms).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evogit.agent.prompt import SKELETON  # noqa: E402
from evogit.agent.solve import Solver  # noqa: E402
from evogit.agent.wire import BEGIN, END  # noqa: E402
from evogit.llm.client import ModelClient  # noqa: E402
from evogit.llm.config import ModelConfig  # noqa: E402
from evogit.llm.scripted import ScriptedServer  # noqa: E402
from evogit.runtime import Runtime  # noqa: E402

STARTER = ROOT / "skills-repo"
CARGO = '[package]\nname = "tool"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nserde_json = "1"\n'
TEXT = {"type": "object", "properties": {"text": {"type": "string", "description": "The text."}},
        "required": ["text"], "additionalProperties": False}


@dataclass
class Family:
    tool: str
    describe: str  # what the model asks create_binary for
    tasks: tuple[str, str, str]  # the first-time task, then two paraphrases (the repeats reuse the first)
    inputs: tuple[dict, ...]
    new: bool = False  # no starter tool serves it
    plan: list[tuple[str, str]] = field(default_factory=list)  # (text, kind) of its four occurrences


FAMILIES = [
    Family("word-count", "Count the words, lines and characters of a text.",
           ("count the words in this text", "how many words does my paragraph have",
            "tell me the word total of this note"),
           ({"text": "the cat sat"}, {"text": "one two three four"}, {"text": "a\nb c"}, {"text": "x"})),
    Family("slugify", "Turn a title into a lowercase URL slug.",
           ("make a url slug from this title", "turn my blog post title into a slug for its address",
            "I need a dash-separated lowercase identifier for this heading"),
           ({"text": "Hello World"}, {"text": "Crème Brûlée Recipes"}, {"text": "A B C"}, {"text": "Q&A: Why?"})),
    Family("url-parse", "Split a URL into scheme, host, port, path, query and fragment.",
           ("split this url into its parts", "what are the host and the query parameters of this link",
            "break down this web address into scheme host and path"),
           ({"url": "https://example.com/a?x=1"}, {"url": "http://h.org:8080/p#f"},
            {"url": "https://a.b/c?d=e&f=g"}, {"url": "ftp://x.y/z"})),
    Family("sha256-hash", "Compute the SHA-256 hash of a text.",
           ("compute the sha256 hash of this string", "give me the sha-256 checksum of this text",
            "what is the SHA256 digest of my message"),
           ({"text": "abc"}, {"text": "hello"}, {"text": ""}, {"text": "evogit"})),
    Family("roman-numerals", "Convert between integers and Roman numerals.",
           ("convert this number to roman numerals", "write this year as a Roman numeral",
            "what is this integer in roman notation"),
           ({"value": 1994}, {"value": 2024}, {"value": 7}, {"value": 3999})),
    Family("base64-encode", "Encode a text as base64.",
           ("base64 encode this string", "convert my text to base64",
            "I need this message in base 64 encoding"),
           ({"text": "hi"}, {"text": "Hello, World!"}, {"text": ""}, {"text": "héllo"})),
    Family("reverse-text", "Reverse a text character by character.",
           ("reverse this text character by character", "write my string backwards",
            "flip the order of the characters in this text"),
           ({"text": "evogit"}, {"text": "abc"}, {"text": "héllo"}, {"text": ""}), new=True),
    Family("count-vowels", "Count the vowels (a, e, i, o, u, either case) in a text.",
           ("count the vowels in this text", "how many vowels are in my sentence",
            "tell me the number of vowel letters in this string"),
           ({"text": "evogit"}, {"text": "AEIOU xyz"}, {"text": ""}, {"text": "rhythm"}), new=True),
    Family("palindrome-check", "Say whether a text is a palindrome, ignoring case and non-alphanumerics.",
           ("check whether this text is a palindrome", "does my phrase read the same backwards",
            "is this string a palindrome ignoring punctuation and case"),
           ({"text": "racecar"}, {"text": "A man, a plan, a canal: Panama"}, {"text": "evogit"}, {"text": ""}),
           new=True),
    Family("initials", "Give the initials of the words of a text, upper-cased.",
           ("give me the initials of this name", "what are the first letters of each word of this name",
            "abbreviate this full name to its initials"),
           ({"text": "ada lovelace"}, {"text": "Grace Brewster Murray Hopper"}, {"text": "x"}, {"text": ""}),
           new=True),
]

Case = tuple[str, str, dict[str, Any]]  # name, input text, expected output
NEW_LOGIC: dict[str, tuple[str, list[Case]]] = {
    "reverse-text": ('Ok(json!({ "text": text.chars().rev().collect::<String>() }))',
                     [("plain", "abc", {"text": "cba"}), ("unicode", "héllo", {"text": "olléh"}),
                      ("empty", "", {"text": ""})]),
    "count-vowels": ('Ok(json!({ "vowels": text.chars().filter(|c| "aeiouAEIOU".contains(*c)).count() }))',
                     [("plain", "evogit", {"vowels": 3}), ("upper", "AEIOU xyz", {"vowels": 5}),
                      ("empty", "", {"vowels": 0})]),
    "palindrome-check": ('let s: Vec<char> = text.chars().filter(|c| c.is_alphanumeric())'
                         '.flat_map(|c| c.to_lowercase()).collect();\n'
                         '    let r: Vec<char> = s.iter().rev().cloned().collect();\n'
                         '    Ok(json!({ "palindrome": s == r }))',
                         [("yes", "racecar", {"palindrome": True}),
                          ("punctuation", "A man, a plan, a canal: Panama", {"palindrome": True}),
                          ("no", "evogit", {"palindrome": False})]),
    "initials": ('Ok(json!({ "initials": text.split_whitespace().filter_map(|w| w.chars().next())'
                 '.flat_map(|c| c.to_uppercase()).collect::<String>() }))',
                 [("two", "ada lovelace", {"initials": "AL"}), ("four", "Grace Brewster Murray Hopper",
                                                                {"initials": "GBMH"}),
                  ("empty", "", {"initials": ""})]),
}


def package(family: Family) -> dict[str, str]:
    """The files the scripted model writes for a family: a starter tool's own package, or a new one."""
    if not family.new:
        base = STARTER / family.tool
        return {p: (base / p).read_text() for p in ("tool.json", "Cargo.toml", "src/main.rs", "tests/cases.jsonl")}
    expr, cases = NEW_LOGIC[family.tool]
    first = cases[0]
    logic = (f'fn run(input: &Value) -> Result<Value, String> {{\n'
             f'    let text = input.get("text").and_then(Value::as_str).ok_or("\\"text\\" must be a string")?;\n'
             f'    {expr}\n}}\n\n#[cfg(test)]\nmod tests {{\n    use super::*;\n    #[test]\n    fn works() {{\n'
             f'        assert_eq!(run(&json!({{"text": {json.dumps(first[1])}}})).unwrap(), '
             f'json!({json.dumps(first[2])}));\n    }}\n}}\n')
    main = SKELETON[:SKELETON.index(BEGIN) + len(BEGIN)] + "\n" + logic + SKELETON[SKELETON.index(END):]
    out_props = {k: {"type": {bool: "boolean", int: "integer", str: "string"}[type(v)]} for k, v in first[2].items()}
    manifest = {"name": family.tool, "description": family.describe + " Input {\"text\"}.",
                "input_schema": TEXT, "output_schema": {"type": "object", "properties": out_props,
                                                        "required": list(out_props), "additionalProperties": False},
                "tags": ["text"], "examples": [family.tasks[0]]}
    lines: list[dict[str, Any]] = [{"name": n, "input": {"text": t}, "expect": e} for n, t, e in cases]
    lines.append({"name": "bad", "input": {"text": 1}, "expect": {"error": '"text" must be a string'}, "exit": 1})
    return {"tool.json": json.dumps(manifest, indent=2, ensure_ascii=False), "Cargo.toml": CARGO, "src/main.rs": main,
            "tests/cases.jsonl": "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in lines)}


@dataclass
class Task:
    family: Family
    text: str
    input: dict
    kind: str  # first, repeat, paraphrase


def workload(seed: int = 7, repeats: int = 10) -> list[Task]:
    """40 tasks: each family's first task, then three more of it: an exact repeat and two paraphrases (with
    `repeats` above 10, that many families repeat it twice and paraphrase it once); shuffled with the first
    occurrence of each family first among its own. Every occurrence has its own input."""
    slots = [f for f in FAMILIES for _ in range(4)]
    random.Random(seed).shuffle(slots)
    seen: dict[str, int] = {}
    out = []
    for k, f in enumerate(FAMILIES):
        seen[f.tool] = 0
        f_twice = k < repeats - len(FAMILIES)
        f.plan = [(f.tasks[0], "first"), (f.tasks[0], "repeat"),
                  (f.tasks[0], "repeat") if f_twice else (f.tasks[1], "paraphrase"),
                  (f.tasks[1] if f_twice else f.tasks[2], "paraphrase")]
    for f in slots:
        i = seen[f.tool]
        seen[f.tool] = i + 1
        text, kind = f.plan[i]
        out.append(Task(f, text, f.inputs[i], kind))
    return out


def script(tasks: list[Task]) -> dict:
    steps: list[dict] = []
    for f in FAMILIES:
        steps.append({"match": {"purpose": "create", "user": f.describe}, "repeat": True,
                      "reply": {"json": {"files": package(f), "superseded": [], "notes": ""}}})
    for t in {(t.text, json.dumps(t.input)): t for t in tasks}.values():
        mark, given = f"Task: {t.text}\n", json.dumps(t.input)
        run = {"tool_calls": [{"name": "run_binary", "arguments": {"binary_id": t.family.tool, "input_json": given}}]}
        steps += [
            {"match": {"purpose": "solve", "user": mark, "last": "tool", "text": '"output":'}, "repeat": True,
             "reply": {"content": "The tool's output above answers the task."}},
            {"match": {"purpose": "solve", "user": mark, "last": "tool"}, "repeat": True, "reply": run},
            {"match": {"purpose": "solve", "user": mark, "last": "user", "text": f"{t.family.tool}@"},
             "repeat": True, "reply": run},
            {"match": {"purpose": "solve", "user": mark, "last": "user"}, "repeat": True,
             "reply": {"tool_calls": [{"name": "create_binary",
                                       "arguments": {"task_description": t.family.describe}}]}},
        ]
    return {"model": "scripted-bench", "steps": steps}


@dataclass
class Arm:
    name: str
    calls: int = 0
    tokens: int = 0
    fast: int = 0
    right: int = 0
    created: int = 0
    served_ms: list[float] = field(default_factory=list)  # fast-path solves
    first_ms: list[float] = field(default_factory=list)  # of which the first run of a version in the process
    fast_by_kind: dict[str, int] = field(default_factory=dict)


def run_arm(name: str, tasks: list[Task], server: ScriptedServer, tmp: Path, *, starter: bool | None,
            fresh_each: bool, verbose: bool = False) -> Arm:
    arm = Arm(name)
    rt: Runtime | None = None
    config = ModelConfig(model="scripted-bench", base_url=server.base_url, api_key="bench", timeout=120, retries=0)
    before = len(server.requests)
    ran: set[str] = set()
    for i, t in enumerate(tasks):
        if rt is None or fresh_each:
            if rt is not None:
                rt.close()
            rt, _ = Runtime.init(tmp / f"{name}-{i}", starter=bool(starter))
            _, embedder = rt.retrieval_model()  # warm: the embedder and the fit are loaded once per library
            embedder.embed(["warm up"])
        with ModelClient(config, sink=rt.log.append) as client:
            t0 = time.perf_counter()
            result = Solver(rt, client).solve(t.text, json.dumps(t.input).encode())
            ms = (time.perf_counter() - t0) * 1000
        assert result.ok, (name, t.text, result.message)
        if verbose:
            print(f"  {name:<12} {t.kind:<10} {'fast' if result.fast_path else 'model':<5} "
                  f"{result.decision.confidence if result.decision else 0:.2f} {result.tokens:>6} tokens "
                  f"{ms:7.1f} ms  {t.text}")
        arm.tokens += result.tokens
        arm.fast += result.fast_path
        arm.fast_by_kind[t.kind] = arm.fast_by_kind.get(t.kind, 0) + result.fast_path
        arm.created += bool(result.written)
        tool = (result.served_by or "").rpartition("@")[0]
        arm.right += tool == t.family.tool
        if result.fast_path:
            arm.served_ms.append(ms)
            if result.served_by not in ran:
                arm.first_ms.append(ms)
        ran.add(result.served_by or "")
    arm.calls = len(server.requests) - before
    if rt is not None:
        rt.close()
    return arm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=10, choices=range(10, 21), metavar="10..20",
                        help="How many of the 30 later tasks are exact repeats (the rest are paraphrases).")
    parser.add_argument("-v", "--verbose", action="store_true", help="One line per task and arm.")
    args = parser.parse_args()
    tasks = workload(args.seed, args.repeats)
    kinds = {k: sum(t.kind == k for t in tasks) for k in ("first", "repeat", "paraphrase")}
    print(f"workload: {len(tasks)} tasks: {kinds['first']} first-time ({sum(not f.new for f in FAMILIES)} a starter "
          f"tool serves, {sum(f.new for f in FAMILIES)} need a new tool), {kinds['repeat']} exact repeats, "
          f"{kinds['paraphrase']} paraphrases")
    tmp = Path(tempfile.mkdtemp(prefix="bench-workload-"))
    server = ScriptedServer(script(tasks))
    try:
        t0 = time.monotonic()
        base = run_arm("baseline", tasks, server, tmp, starter=False, fresh_each=True, verbose=args.verbose)
        t1 = time.monotonic()
        memory = run_arm("evogit", tasks, server, tmp, starter=True, fresh_each=False, verbose=args.verbose)
        t2 = time.monotonic()
        empty = run_arm("evogit-empty", tasks, server, tmp, starter=False, fresh_each=False,
                        verbose=args.verbose)
        t3 = time.monotonic()
    finally:
        server.close()
    print(f"\n{'':<14}{'model calls':>12}{'tokens':>10}{'fast path':>11}{'tools written':>15}{'right tool':>12}"
          f"{'seconds':>9}")
    for arm, secs in ((base, t1 - t0), (memory, t2 - t1), (empty, t3 - t2)):
        print(f"{arm.name:<14}{arm.calls:>12}{arm.tokens:>10,}{arm.fast:>8}/{len(tasks)}{arm.created:>15}"
              f"{arm.right:>9}/{len(tasks)}{secs:>9.1f}")
    for arm in (memory, empty):
        ratio = base.tokens / arm.tokens if arm.tokens else float("inf")
        print(f"{arm.name}: {ratio:.1f}x fewer tokens than the baseline (goal >= 5x), "
              f"{base.calls / max(arm.calls, 1):.1f}x fewer model calls")
    for arm in (memory, empty):
        shown = ", ".join(f"{arm.fast_by_kind.get(k, 0)}/{n} {k}" for k, n in kinds.items())
        print(f"fast-path hit rate ({arm.name}): {arm.fast}/{len(tasks)} ({shown})")
    ms, first = memory.served_ms, memory.first_ms
    warm = sorted(ms)
    for x in first:
        warm.remove(x)
    if ms:
        print(f"wall time per task served from the library without a model (evogit, warm runtime): median "
              f"{statistics.median(ms):.1f} ms over all {len(ms)} (goal <= 50 ms); {statistics.median(warm):.1f} ms "
              f"(p90 {warm[int(0.9 * (len(warm) - 1))]:.1f}) over the {len(warm)} whose version had run before in "
              f"the process, {statistics.median(first):.1f} ms over the {len(first)} first runs of a version "
              "(its module loaded)")


if __name__ == "__main__":
    main()
