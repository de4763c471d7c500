"""The model-facing layer above the runtime: authoring tools (create, repair, mutate, teach) and, later,
solving tasks with them. It talks to a model only through `evogit.llm` and to the library only through
`evogit.runtime`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..llm.client import ModelClient
    from ..runtime import Runtime


def model_client(rt: Runtime) -> ModelClient:
    """The client of the model configured for `rt`'s repository (git config, environment, or the embedded local
    model, started on demand), its calls recorded in `rt`'s log: the one way the CLI, `call_tool` and the server
    reach a model. Raises ModelNotConfigured."""
    from ..llm.client import ModelClient
    from ..llm.config import load_config

    return ModelClient(load_config(rt.repo.git.config), sink=rt.log.append)


@contextlib.contextmanager
def lazy_model(rt: Runtime) -> Iterator[Callable[[], ModelClient | None]]:
    """A `connect()` for a Solver: the configured model's client is made on the first call only (when the fast path
    does not serve: it may start the embedded model's server), None when no model is configured; closed on exit."""
    from ..errors import ModelNotConfigured

    made: list[ModelClient] = []

    def connect() -> ModelClient | None:
        try:
            made.append(model_client(rt))
        except ModelNotConfigured:
            return None
        return made[-1]

    try:
        yield connect
    finally:
        for client in made:
            client.close()
