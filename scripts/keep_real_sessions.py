"""Keep real model sessions from a `scripts/bench_real_model --record DIR --out FILE` run as replay tests.

    .venv/bin/python scripts/keep_real_sessions.py FILE ID [ID ...]

copies `DIR/<id>.json` (the recording) to `tests/data/real/` and writes the spec's task, examples, repair rounds and
how each live round ended into `tests/data/real/sessions.json`, which `tests/test_real_sessions.py` replays and
checks round by round: the replay must end every round as the live run did.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "real"
SPECS = ROOT / "scripts" / "bench_real_model_specs.json"


def main(out: Path, ids: list[str]) -> None:
    results = json.loads(out.read_text())
    specs = {s["id"]: s for s in json.loads(SPECS.read_text())["specs"]}
    index = DATA / "sessions.json"
    sessions = json.loads(index.read_text()) if index.exists() else {}
    for spec_id in ids:
        run = results["specs"][spec_id]
        created = run["json"]
        DATA.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run["recording"], DATA / f"{spec_id}.json")
        sessions[spec_id] = {
            "task": specs[spec_id]["task"], "examples": specs[spec_id]["examples"],
            "rounds": results["meta"]["rounds"], "ok": created["ok"],
            "rounds_end": [[a["stage"], a["error"]] for a in created["attempts"]],
            "live": {"tokens": created["tokens"], "wall_s": run["wall"], "tool": created.get("version")},
        }
        print(f"{spec_id}: {'green' if created['ok'] else 'red'} in {len(created['attempts'])} rounds")
    index.write_text(json.dumps(sessions, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2:])
