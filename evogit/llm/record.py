"""Recording a live session (`EVOGIT_RECORD=FILE`) in the scripted server's own script format.

Every exchange a client finishes is appended as one step: the request (purpose, messages, response_format,
tools) for the reader, and what the server answered (the reply's content and tool calls with their usage, or
the HTTP status and message of a refusal). Replayed by `evogit.llm.scripted`, the steps are answered in order,
so a recording is real model output that tests and demos can run offline. The file is rewritten whole under a
lock on its directory, so several processes may record into one file.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..errors import InvalidInput


class Recorder:
    """Appends steps to the script file at `path` (created on the first step)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def add(self, step: dict[str, Any], model: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            doc = self._read(model)
            doc["steps"].append(step)
            write_atomic(self.path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode())
        finally:
            os.close(fd)  # releases the lock

    def _read(self, model: str) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"model": model, "recorded": True, "steps": []}
        except ValueError as e:
            raise InvalidInput(f"EVOGIT_RECORD={self.path}: not a script file ({e})") from None
        if isinstance(doc, list):
            doc = {"steps": doc}
        if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
            raise InvalidInput(f"EVOGIT_RECORD={self.path}: not a script file (no list of steps)")
        return doc
