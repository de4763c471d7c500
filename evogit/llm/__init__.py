"""Model access: configuration, the client (limits, retries, reply formats, events), our scripted server.

`load_config` reads which model to call; `ModelClient(config, sink)` calls it (`chat`, `complete_json`), each
call a `ModelCalled` event handed to `sink`. `evogit.llm.scripted` is an OpenAI-compatible server on loopback
that answers from a script, for tests and the offline demo. `openai` is imported on the first call only.
"""

from .client import JSON_MODES, ChatResult, ModelClient, ToolCall
from .config import ModelConfig, load_config

__all__ = ["JSON_MODES", "ChatResult", "ModelClient", "ModelConfig", "ToolCall", "load_config"]
