"""Real sessions of the embedded local model, replayed.

Each `tests/data/real/<id>.json` is what `scripts/bench_real_model --record` wrote while Qwen2.5-Coder-1.5B-Instruct
(Q4_K_M, llama-cpp-python's server on 2 CPU cores) created the bench spec `<id>` through `evogit create`: every
request and the model's real reply, in the scripted server's format. Replayed here through the scripted server and
the real `openai` client, the same replies meet today's reader, mender and build, so the parser is tested on real
small-model output: Rust string literals full of quotes and backslashes (the JSON format's undoing), prose around
the blocks, a repair that sends only the code, a reply's own wrong cases left out, a round whose call timed out
(recorded as a step that hangs) followed by a green one, a reply cut off by max_tokens. `sessions.json` says, per
recording, what the spec was and how each round ends with today's code (`rounds_end`: the replay must end every
round so); where that differs from the live run, `live.rounds_end` keeps how it ended then (gcd-lcm's first reply
was red live on a missing `.to_string()`, and is green since rustc's own suggestions are applied).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evogit.agent.author import Author
from evogit.llm.client import ModelClient
from evogit.llm.config import ModelConfig
from evogit.runtime import Runtime

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data" / "real"
SESSIONS = json.loads((DATA / "sessions.json").read_text())


@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_a_real_session_replays_to_the_same_rounds(name: str, empty_rt: Runtime, scripted_model):
    session = SESSIONS[name]
    server = scripted_model(DATA / f"{name}.json")
    # a round the live call timed out in is recorded as a step that hangs: 5 s stand for the live 300
    config = ModelConfig(model="qwen2.5-coder-1.5b-instruct", base_url=server.base_url, api_key="replay", timeout=5)
    with ModelClient(config, sink=empty_rt.log.append) as client:
        result = Author(empty_rt, client, rounds=session["rounds"]).create(session["task"], examples=session["examples"])
    assert [(a.stage, a.error) for a in result.attempts] == [tuple(s) for s in session["rounds_end"]], result.message
    assert result.ok == session["ok"]
    for needle in session.get("mended", []):
        assert any(needle in m for m in result.mended) or any(needle in a.evidence for a in result.attempts), needle
    if result.ok:
        for example in session["examples"]:
            assert empty_rt.run(result.tool, json.dumps(example["input"]).encode()).output == example["expect"]
    # every round the model was asked for was answered from the recording, and nothing more was asked
    assert len(server.requests) == len(result.attempts)
