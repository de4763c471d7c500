"""What the model is told: the system prompt (tool contract, package rules, crates, toolchain limits, one
starter tool as the example), the skeleton it fills, and the user message of each attempt.

Each attempt is one request of two messages, system and user; a repair round's user message carries the task,
a short summary of the earlier attempts, and the last attempt's files with the evidence of why it is red (the
compiler's own diagnostics, or the first failing case) — not the whole growing chat, which small models lose
track of and which costs tokens on every round.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

from ..manifest import ALLOWED_CRATES, REQUIRED_FILES, Case
from ..resources import resource
from .wire import BEGIN, END

#: Versions in Debian's offline registry that this toolchain builds (and how to ask for them in Cargo.toml).
CRATES = {
    "serde": 'serde = { version = "1", features = ["derive"] }   # 1.0.152',
    "serde_json": 'serde_json = "1"   # 1.0.87',
    "regex": 'regex = "1"   # 1.7.1',
    "csv": 'csv = "1"   # 1.1.6',
    "chrono": 'chrono = { version = "0.4", default-features = false, features = ["std"] }   # 0.4.23, no clock/local time',
    "base64": 'base64 = "0.13"   # 0.13.0: base64::encode / base64::decode / base64::encode_config',
    "sha2": 'sha2 = "0.10"   # 0.10.5',
    "hex": 'hex = "0.4"   # 0.4.3',
    "url": 'url = "2"   # 2.3.1',
    "unicode-segmentation": 'unicode-segmentation = "1"   # 1.9.0',
    "strsim": 'strsim = "0.10"   # 0.10.0',
}
assert set(CRATES) == set(ALLOWED_CRATES)

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

_RULES = """\
You write small, exact command-line tools in Rust for evogit, a library of tested WebAssembly tools.

THE TOOL CONTRACT
- A tool is a WASI command module. It reads ONE JSON object on stdin and writes ONE JSON document on stdout,
  then exits 0. For input it cannot handle it prints {"error": "<message>"} on stdout and exits 1.
- It runs in a sandbox: no files, no network, no environment variables, no threads, no sleeping, no clock.
  Everything it needs comes from its input.
- Input is checked against tool.json's input_schema before a run, and output against output_schema after it.

TOOLCHAIN: Rust 1.63, edition 2021, target wasm32-wasi, offline. Newer language features and std APIs do not
exist: no let-else (`let Some(x) = y else {..}`), no `std::io::read_to_string` (use `Read::read_to_string`),
no `Option::is_some_and`, no `ilog10`, no `std::iter::repeat_n` ... write plain, conservative Rust. Every `use` goes at the top of the module
that needs it (the tests module has its own `use super::*;`).

CRATES: only these, with exactly these versions (anything else fails to build):
@CRATES@

PACKAGE RULES (checked before building; a package that breaks one is refused)
- Exactly four files: tool.json, Cargo.toml, src/main.rs, tests/cases.jsonl.
- Cargo.toml: [package] name = "tool", version = "0.1.0", edition = "2021"; then [dependencies] from the list
  above. Nothing else: no build.rs, [lib], [[bin]], [profile], [patch], [features], [build-dependencies].
- Source must not use include_str!, include_bytes!, include!, env!, option_env!, or #[path].
- tool.json: {"name", "description", "input_schema", "output_schema", "tags", "examples"}. name is a lowercase
  slug (a-z, 0-9, single hyphens). description says exactly what the tool does, its edge cases and units.
  The schemas are JSON Schema (draft 2020-12) objects with "type", "properties", "required" and
  "additionalProperties": false; "examples" are 2-3 tasks in users' words that this tool serves.
- tests/cases.jsonl: one JSON object a line, {"name", "input", "expect"} and "exit": 1 for error cases, whose
  "expect" is the exact {"error": "..."} the tool prints. At least 4 cases: typical, edge (empty, unicode),
  and one error. Outputs must be exactly what the tool prints (JSON equality: 1 is not 1.0 is not true).
- Unit tests go in src/main.rs in `#[cfg(test)] mod tests`.

SKELETON: src/main.rs is this file with the part between the two evogit marker lines written by you (the `run`
function, any helpers, and the tests module). Keep everything outside the markers exactly as it is:
```rust
@SKELETON@```

REPLY: one JSON object and nothing else:
{"files": {"tool.json": "<whole file>", "Cargo.toml": "<whole file>", "src/main.rs": "<whole file>",
 "tests/cases.jsonl": "<whole file>"}, "superseded": [{"case": "<name>", "reason": "<why>"}], "notes": "<one line>"}
Every file whole, never a diff. "superseded" is [] unless you are changing an existing tool and one of its cases
must no longer hold (say why).

EXAMPLE: the starter tool word-count, a complete package:
@EXAMPLE@"""


@cache
def system_prompt() -> str:
    """The system message of every authoring request (the same text each time: servers can cache it)."""
    example_dir = resource("skills-repo") / "word-count"
    example = {path: (example_dir / path).read_text() for path in REQUIRED_FILES}
    crates = "\n".join(f"  {CRATES[c]}" for c in sorted(CRATES))
    return (_RULES.replace("@CRATES@", crates).replace("@SKELETON@", SKELETON)
            .replace("@EXAMPLE@", json.dumps({"files": example}, indent=1)))


def _cases_text(cases: Sequence[Case]) -> str:
    return "\n".join(json.dumps({"name": c.name, "input": c.input, "expect": c.expect,
                                 **({"exit": c.exit} if c.exit else {})}, ensure_ascii=False) for c in cases)


def create_message(task: str, name: str | None, examples: Sequence[Case]) -> str:
    parts = [f"Write a new tool for this task:\n{task.strip()}",
             f'Name it "{name}".' if name else "Choose its name (a short lowercase slug naming what it does)."]
    if examples:
        parts.append("These examples from the user must pass exactly; they will be added as cases:\n" + _cases_text(examples))
    return "\n\n".join(parts)


def mutate_message(task: str, parent: str, files: dict[str, bytes], cases: Sequence[Case], failures: Sequence[str],
                   name: str | None, examples: Sequence[Case]) -> str:
    shown = json.dumps({path: files[path].decode("utf-8", "replace") for path in REQUIRED_FILES if path in files},
                       indent=1, ensure_ascii=False)
    parts = [f"Change the existing tool {parent} for this task:\n{task.strip()}",
             f'The new tool is named "{name}" (set it in tool.json).' if name else
             "Keep its name; the result is its next version.",
             f"Its files now:\n{shown}",
             "Its cases are inherited: the new version must pass every one of them, unless you list a case in "
             '"superseded" with the reason it must no longer hold:\n' + _cases_text(cases)]
    if failures:
        parts.append("Where the current version failed recently:\n" + "\n".join(f"- {f}" for f in failures))
    if examples:
        parts.append("These examples from the user must pass exactly; they will be added as cases:\n" + _cases_text(examples))
    return "\n\n".join(parts)


def repair_message(first: str, history: Sequence[str], files: dict[str, bytes], evidence: str) -> str:
    """The next round: the original request, what each earlier round ended in, and the last files with why
    they are red."""
    shown = json.dumps({path: files[path].decode("utf-8", "replace") for path in REQUIRED_FILES if path in files},
                       indent=1, ensure_ascii=False)
    summary = "\n".join(f"- attempt {i}: {line}" for i, line in enumerate(history, 1))
    return (f"{first}\n\nEarlier attempts did not pass:\n{summary}\n\nThe last attempt's files:\n{shown}\n\n"
            f"Why it failed:\n{evidence}\n\nReply with the whole package again, fixed.")


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


def solve_message(task: str, input_text: str | None, candidates: Sequence[dict[str, object]], confidence: float,
                  reason: str) -> str:
    """The first request of a solve: the task, its input, and the candidates retrieval found for it (name@fp,
    first sentence, input schema, record)."""
    parts = [f"Task: {task.strip()}",
             f"Input (JSON): {input_text}" if input_text is not None else
             "Input: none given (the task's words hold it)."]
    if candidates:
        lines = []
        for i, c in enumerate(candidates, 1):
            rate = c.get("success_rate")
            record = (f"ok in {float(rate) * 100:.0f}% of {c.get('runs')} runs" if isinstance(rate, (int, float))
                      else "not run yet")
            name, _, fingerprint = str(c["version"]).rpartition("@")
            lines.append(f"{i}. {name}@{fingerprint[:SHOWN_FINGERPRINT]}: {c['description']}. Input schema: "
                         f"{json.dumps(_brief(c['input_schema']), separators=(',', ':'), ensure_ascii=False)}. "
                         f"{record}.")
        parts.append(f"Tools retrieved for this task, best first (confidence that the first is right: "
                     f"{confidence:.2f}; {reason}; describe_binary gives the whole schema):\n" + "\n".join(lines))
    else:
        parts.append("The library has no tools yet.")
    return "\n\n".join(parts)
