"""evogit: an event-sourced, git-backed repository of executable WebAssembly skills.

The tool functions, for any agent framework that speaks OpenAI tool calling:

    import evogit
    tools = evogit.openai_tools()                       # the `tools` of a chat completion
    result = evogit.call_tool("run_binary", '{"binary_id": "word-count", "input_json": "{\\"text\\": \\"a b\\"}"}')

`call_tool` works on the repository at `repo` (default: $EVOGIT_REPO, else ~/.evogit) and returns compact JSON,
errors included; create and mutate use the model configured for that repository (evogit.llm.config).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent.catalog import Catalog

__version__ = "0.1.0"
__all__ = ["call_tool", "openai_tools"]

_catalogs: dict[Path, tuple[Catalog, threading.Lock]] = {}  # per repository: its catalog, one call at a time
_lock = threading.Lock()  # only while a repository's catalog is looked up or made


def openai_tools() -> list[dict[str, Any]]:
    """The tool functions as OpenAI definitions (strict JSON schemas)."""
    from .agent.catalog import openai_tools as definitions

    return definitions()


def call_tool(name: str, arguments_json: str, *, repo: str | Path | None = None) -> str:
    """Execute one tool call on a repository; returns compact JSON (`{"ok": ...}`), never raises for the
    model's mistakes. The runtime and, once needed, the model client are kept per repository."""
    from .agent import model_client
    from .agent.catalog import Catalog, error_result
    from .errors import EvogitError
    from .runtime import Runtime, default_repo_path

    try:
        path = Path(repo or default_repo_path()).resolve()
        with _lock:
            entry = _catalogs.get(path)
            if entry is None:
                rt = Runtime(path)
                entry = _catalogs[path] = (Catalog(
                    rt, connect=lambda: model_client(rt)),
                    threading.Lock())
    except (EvogitError, OSError, ValueError) as e:  # no repository there, a path with NUL, ...: one JSON line
        return error_result(e if isinstance(e, EvogitError) else EvogitError(f"bad repository path: {e}"))
    catalog, busy = entry
    with busy:
        return catalog.call(name, arguments_json)
