"""What the model is told: the system prompt (the skeleton it fills, the rules, the reply format with one
starter tool as the example), and the user message of each attempt.

The system prompt is short and the same on every call: a CPU model processes it on every request unless the
server caches the prefix, and servers cache a prefix that does not change. It is written for a small coder
model (design note §10): the example is in the form the model must write — the marked part of the skeleton,
not a whole program — and the reply is three fenced blocks, so that code never travels inside a JSON string.

Each attempt is one request of two messages, system and user; a repair round's user message carries the task,
a one-line summary of each earlier attempt, the last attempt's blocks and the evidence of why it is red (the
compiler's first errors, once each; the first failing case; or why the reply could not be read) — not the whole
growing chat, which small models lose track of and which costs tokens on every round.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

from ..events import split_key
from ..manifest import Case
from ..runtime.results import Candidate
from .wire import BEGIN, END, show_package

SKELETON = f"""\
//! TOOL-NAME: one line on what it does.
use serde_json::{{json, Value}};
use std::io::Read;
use std::process::exit;

{BEGIN}
/// Compute the output from the input object (already parsed; it matches input_schema).
/// Return Err(message) for input the tool cannot handle: it is printed as {{"error": message}} with exit 1.
fn run(input: &Value) -> Result<Value, String> {{
    let text = input.get("text").and_then(Value::as_str).ok_or("\\"text\\" must be a string")?;
    Ok(json!({{ "length": text.chars().count() }}))
}}

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn counts_characters() {{
        assert_eq!(run(&json!({{"text": "héllo"}})).unwrap(), json!({{"length": 5}}));
    }}
}}
{END}

fn fail(message: &str) -> ! {{
    println!("{{}}", json!({{ "error": message }}));
    exit(1)
}}

fn main() {{
    let mut raw = String::new();
    if std::io::stdin().read_to_string(&mut raw).is_err() {{
        fail("input is not valid UTF-8");
    }}
    let input: Value = match serde_json::from_str(&raw) {{
        Ok(v) => v,
        Err(e) => fail(&format!("input is not valid JSON: {{}}", e)),
    }};
    if !input.is_object() {{
        fail("input must be a JSON object");
    }}
    match run(&input) {{
        Ok(output) => println!("{{}}", output),
        Err(message) => fail(&message),
    }}
}}
"""

SYSTEM = """\
You write small, exact tools in Rust for evogit. A tool reads one JSON object and prints one JSON object.
evogit builds this src/main.rs around your code; you write only the part between the two marker lines:
```rust
use serde_json::{json, Value};
use std::io::Read;
use std::process::exit;

@BEGIN@
@END@

fn fail(message: &str) -> ! { println!("{}", json!({ "error": message })); exit(1) }

fn main() {
    // reads stdin into `input: Value` (a JSON object), then:
    match run(&input) { Ok(output) => println!("{}", output), Err(message) => fail(&message) }
}
```
Your part: `fn run(input: &Value) -> Result<Value, String>` that reads the fields from `input`
(input.get("x").and_then(Value::as_str / as_i64 / as_u64 / as_f64 / as_bool / as_array)), computes, and
returns Ok(json!({...})) in the output's shape; Err(message) for bad input. Add helper functions if useful.
The cases are the tests (a `#[cfg(test)] mod tests` is optional). Do not write fn main, fn fail, or the use lines
above.

Rules: Rust 1.63 — no let-else, no is_some_and, no ilog10. No files, network, environment, threads or clock.
On a Result whose error is not a String, use .map_err(|e| e.to_string())?. On an Option use .ok_or("message")?.
Numbers: as_i64/as_u64 give i64/u64; cast with `as` before mixing types (.len() is usize). Letters as numbers,
all in i64: (((c as u8 - b'a') as i64 + k).rem_euclid(26) as u8 + b'a') as char. str::replace takes plain text,
not a pattern: to keep only some characters use .chars().filter(|c| c.is_alphanumeric()).
Crates: serde_json always; if needed, name any of these in "crates": regex, chrono (no clock), base64 (0.13:
base64::encode/decode), sha2, hex, url, csv, unicode-segmentation, strsim, serde (derive).

Reply with exactly three fenced blocks and nothing else:
1. ```json — {"name": a lowercase-hyphenated slug, "description": what it does exactly, "input_schema",
   "output_schema" (JSON Schema objects with type, properties, required, "additionalProperties": false),
   "tags": [words], "examples": [2-3 tasks in a user's own words that this tool does], "crates": []}
2. ```rust — your part only.
3. ```jsonl — at least 4 cases, one JSON object a line: {"name": "short-name", "input": {...}, "expect": {...}};
   an error case adds "exit": 1 and expects exactly {"error": "<the message run returns>"}.
The output must be exactly what the tool prints (1 is not 1.0, numbers are not strings).

Example. Task: count the words, lines and characters of a text.
```json
{"name": "word-count", "description": "Count the words (runs of non-whitespace), lines and characters (Unicode \
scalar values) of a text.", "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, \
"required": ["text"], "additionalProperties": false}, "output_schema": {"type": "object", "properties": \
{"words": {"type": "integer"}, "lines": {"type": "integer"}, "chars": {"type": "integer"}}, "required": \
["words", "lines", "chars"], "additionalProperties": false}, "tags": ["text", "count"], "examples": \
["how many words are in this text", "count the lines of a document"], "crates": []}
```
```rust
fn run(input: &Value) -> Result<Value, String> {
    let text = input.get("text").and_then(Value::as_str).ok_or("\\"text\\" must be a string")?;
    let newlines = text.matches('\\n').count();
    let lines = if text.is_empty() || text.ends_with('\\n') { newlines } else { newlines + 1 };
    Ok(json!({ "words": text.split_whitespace().count(), "lines": lines, "chars": text.chars().count() }))
}
```
```jsonl
{"name": "simple", "input": {"text": "a b c"}, "expect": {"words": 3, "lines": 1, "chars": 5}}
{"name": "empty", "input": {"text": ""}, "expect": {"words": 0, "lines": 0, "chars": 0}}
{"name": "two-lines", "input": {"text": "one two\\nthree\\n"}, "expect": {"words": 3, "lines": 2, "chars": 14}}
{"name": "unicode", "input": {"text": "héllo wörld"}, "expect": {"words": 2, "lines": 1, "chars": 11}}
{"name": "text-not-string", "input": {"text": 42}, "expect": {"error": "\\"text\\" must be a string"}, "exit": 1}
```"""


@cache
def system_prompt() -> str:
    """The system message of every authoring request (the same text each time: servers cache it)."""
    return SYSTEM.replace("@BEGIN@", BEGIN).replace("@END@", END)


def _cases_text(cases: Sequence[Case]) -> str:
    return "\n".join(json.dumps({"name": c.name, "input": c.input, "expect": c.expect,
                                 **({"exit": c.exit} if c.exit else {})}, ensure_ascii=False) for c in cases)


def _examples_text(examples: Sequence[Case]) -> str:
    return ("These examples from the user must pass exactly (the same field names and values); they are cases "
            "already. In the jsonl block add only cases whose output you are sure of:\n" + _cases_text(examples))


def create_message(task: str, name: str | None, examples: Sequence[Case]) -> str:
    parts = [f"Write a new tool for this task:\n{task.strip()}",
             f'Name it "{name}".' if name else "Choose its name (a short lowercase slug naming what it does)."]
    if examples:
        parts.append(_examples_text(examples))
    return "\n\n".join(parts)


def mutate_message(task: str, parent: str, files: dict[str, bytes], cases: Sequence[Case], failures: Sequence[str],
                   name: str | None, examples: Sequence[Case]) -> str:
    parts = [f"Change the existing tool {parent} for this task:\n{task.strip()}",
             f'The new tool is named "{name}" (set it in the header).' if name else
             "Keep its name; the result is its next version.",
             "The tool now, as the three blocks:\n" + show_package(files),
             "Its cases are inherited: the new version must pass every one of them, unless the header lists it in "
             '"superseded": [{"case": NAME, "reason": WHY}]. Reply with the whole cases block, old and new cases.']
    if failures:
        parts.append("Where the current version failed recently:\n" + "\n".join(f"- {f}" for f in failures))
    if examples:
        parts.append(_examples_text(examples))
    return "\n\n".join(parts)


def repair_message(first: str, history: Sequence[str], files: dict[str, bytes], evidence: str,
                   reply: str = "") -> str:
    """The next round: the original request, what each earlier round ended in, and the last attempt (its blocks,
    or the start of its reply when it could not be read) with why it is red."""
    summary = "\n".join(f"- attempt {i}: {line}" for i, line in enumerate(history, 1))
    if files:
        last = "The last attempt:\n" + show_package(files)
    elif reply.strip():
        shown = reply.strip()
        last = "The last reply began:\n" + (shown if len(shown) <= 1500 else shown[:1500] + "\n…")
    else:
        last = ""
    ask = ("First say in one line what was wrong and how you fix it. Then reply with the fixed ```rust block "
           "(your part only, whole); add a ```jsonl block only if a case is wrong, a ```json header only if it must "
           "change: evogit keeps the rest from the last attempt." if files else
           "First say in one line what was wrong and how you fix it. Then reply with the three blocks again "
           "(json, rust, jsonl), fixed.")
    return "\n\n".join(p for p in (first, f"Earlier attempts did not pass:\n{summary}", last,
                                     f"Why it failed:\n{evidence}", ask) if p)


# -- solving a task with the library's tools (agent/solve.py) ----------------------------------------------------
SOLVE_SYSTEM = """\
You solve tasks with the tools of an evogit library: small tested programs, each reading one JSON input and
writing one JSON output, run in a sandbox. Reuse before you regenerate:
- If a listed tool does the task, call run_binary with its name@fingerprint and the input as a JSON string
  that matches its input schema. Take the input from the task's words when none is given.
- Not sure what a tool does: describe_binary. None listed fits: search_tools with other words.
- A tool is close but not right: mutate_binary (a new tested version). No tool does it: create_binary. Both are
  slow (a model writes the code, it is built and tested); then run the new version.
- A result with "ok": false says why (error kind and message): correct the call and try again.
- When a run's output answers the task, reply with exactly that output JSON and call no function. If the task
  cannot be done with tools, say why in one line.
- If a tool's output turned out wrong for the task, call feedback with solved false."""


SHOWN_FINGERPRINT = 12  # hex digits of a candidate's fingerprint in the first request: enough to pin it
BRIEF = 80  # characters of each description inside a schema shown there (describe_binary has them whole)


def _brief(schema: object) -> object:
    """A schema with every `description` cut to BRIEF characters."""
    if isinstance(schema, dict):
        return {k: (v[:BRIEF - 1] + "…" if k == "description" and isinstance(v, str) and len(v) > BRIEF
                    else _brief(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_brief(v) for v in schema]
    return schema


def solve_message(task: str, input_text: str | None, candidates: Sequence[Candidate], confidence: float,
                  reason: str) -> str:
    """The first request of a solve: the task, its input, and the candidates retrieval found for it (name@fp,
    first sentence, input schema, record)."""
    parts = [f"Task: {task.strip()}",
             f"Input (JSON): {input_text}" if input_text is not None else
             "Input: none given (the task's words hold it)."]
    if candidates:
        lines = []
        for i, c in enumerate(candidates, 1):
            record = (f"ok in {c.success_rate * 100:.0f}% of {c.runs} runs" if c.success_rate is not None
                      else "not run yet")
            name, fingerprint = split_key(c.version)
            lines.append(f"{i}. {name}@{fingerprint[:SHOWN_FINGERPRINT]}: {c.description}. Input schema: "
                         f"{json.dumps(_brief(c.input_schema), separators=(',', ':'), ensure_ascii=False)}. "
                         f"{record}.")
        parts.append(f"Tools retrieved for this task, best first (confidence that the first is right: "
                     f"{confidence:.2f}; {reason}; describe_binary gives the whole schema):\n" + "\n".join(lines))
    else:
        parts.append("The library has no tools yet.")
    return "\n\n".join(parts)


#: What a model is told after an empty reply in a solve (once: a second one ends the solve).
SOLVE_EMPTY = ("Your reply was empty. Call one of the functions (create_binary writes a new tool when no tool does "
               "the task), or reply with the answer.")


def solve_unread(problem: str) -> str:
    """What a model is told when its reply looked like a function call written as text that could not be read:
    it was not carried out, and it is not an answer."""
    return (f"Your reply was not carried out and is not an answer: {problem}. To call a function, make a real "
            "tool call with one of the request's tools (arguments as a JSON object); to answer, reply with the "
            "answer alone.")


def solve_unfit(why: str) -> str:
    """What a model is told when its answer lacks the fields the task itself names for its answer, or is the output
    of a run that did not serve the task."""
    return (f"That is not the task's answer: {why}. Run a tool that does the task, or mutate or create one that "
            "does, then answer with its output.")
