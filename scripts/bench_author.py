"""Authoring benchmark: the time from a model's reply to a green, tagged version, with warm dependencies.

The model is our scripted server on loopback (its own time is measured and subtracted), so what is timed is
evogit's part: parsing the reply, the sandboxed build, unit tests and cases, the commit, the tag, the events.
  green: N creates of distinct tools, each green at the first reply (median of reply -> tagged)
  repair: N creates whose first reply does not compile and whose second is green (median per red round:
          reply -> diagnostics ready for the next request)
  baseline: the same packages committed and built directly (`Runtime.commit`), in the same process
Goal (issue 11): median reply -> green tagged version <= 3 s with warm dependencies.
"""

from __future__ import annotations

import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evogit.agent.author import Author  # noqa: E402
from evogit.agent.prompt import SKELETON  # noqa: E402
from evogit.agent.wire import BEGIN, END  # noqa: E402
from evogit.llm.client import ModelClient  # noqa: E402
from evogit.llm.config import ModelConfig  # noqa: E402
from evogit.llm.scripted import ScriptedServer  # noqa: E402
from evogit.runtime import Runtime  # noqa: E402

N = 7
RUN = secrets.token_hex(4)  # in every source: each run builds anew, never from the cache of an earlier run


def files(i: int, broken: bool = False) -> dict[str, str]:
    logic = f'''fn run(input: &Value) -> Result<Value, String> {{
    let text = input.get("text").and_then(Value::as_str).ok_or("\\"text\\" must be a string")?;
    Ok(json!({{ "text": format!("{{}}-{i}", {"txet" if broken else "text"}) }}))  // run {RUN}
}}

#[cfg(test)]
mod tests {{
    use super::*;
    #[test]
    fn tags() {{ assert_eq!(run(&json!({{"text": "a"}})).unwrap(), json!({{"text": "a-{i}"}})); }}
}}
'''
    manifest = {"name": f"tag-{i}", "description": f"Append -{i} to a text.",
                "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
                "output_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}
    cases = [{"name": "one", "input": {"text": "x"}, "expect": {"text": f"x-{i}"}},
             {"name": "bad", "input": {"text": 1}, "expect": {"error": '"text" must be a string'}, "exit": 1}]
    return {"tool.json": json.dumps(manifest), "src/main.rs": logic,
            "Cargo.toml": '[package]\nname = "tool"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nserde_json = "1"\n',
            "tests/cases.jsonl": "".join(json.dumps(c) + "\n" for c in cases)}


def step(f: dict[str, str]) -> dict:
    return {"reply": {"json": {"files": f, "superseded": [], "notes": ""}}}


def whole(f: dict[str, str]) -> dict[str, bytes]:
    main = SKELETON[:SKELETON.index(BEGIN) + len(BEGIN)] + "\n" + f["src/main.rs"] + SKELETON[SKELETON.index(END):]
    return {**{k: v.encode() for k, v in f.items()}, "src/main.rs": main.encode()}


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-author-"))
    rt, _ = Runtime.init(tmp / "skills", starter=False)
    warm = rt.commit("tag-0", whole(files(0)), "warm the shared target dir (serde_json)")
    assert warm.ok, warm.error
    steps = [step(files(i)) for i in range(1, N + 1)]
    steps += [s for i in range(N + 1, 2 * N + 1) for s in (step(files(i, broken=True)), step(files(i)))]
    server = ScriptedServer({"model": "scripted", "steps": steps})
    config = ModelConfig(model="scripted", base_url=server.base_url, api_key="bench", timeout=120, retries=0)
    with ModelClient(config, sink=rt.log.append) as client:
        author = Author(rt, client)
        green: list[float] = []
        red: list[float] = []
        model: list[float] = []
        for i in range(1, 2 * N + 1):
            result = author.create(f"Append -{i} to a text.", name=f"tag-{i}")
            assert result.ok, result.message
            for a in result.attempts:
                model.append(a.model_seconds)
                (green if a.stage == "green" else red).append(a.seconds - a.model_seconds)
    baseline = []
    for i in range(2 * N + 1, 3 * N + 1):
        t0 = time.monotonic()
        outcome = rt.commit(f"tag-{i}", whole(files(i)), f"tag-{i} built directly")
        assert outcome.ok, outcome.error
        baseline.append(time.monotonic() - t0)
    server.close()
    g, r, b = statistics.median(green), statistics.median(red), statistics.median(baseline)
    print(f"reply -> green tagged version (warm deps, {len(green)} creates): median {g:.2f} s, "
          f"min {min(green):.2f}, max {max(green):.2f}  (goal <= 3 s: {'met' if g <= 3 else 'NOT met'})")
    print(f"reply -> red verdict with diagnostics, per repair round ({len(red)} rounds): median {r:.2f} s")
    print(f"baseline: the same packages committed and built directly: median {b:.2f} s; "
          f"authoring / direct = {g / b:.2f}")
    print(f"scripted model's own time per call: median {statistics.median(model) * 1000:.0f} ms (excluded above)")


if __name__ == "__main__":
    main()
