"""Which model to call and how, read once into a frozen value: the environment first, then git config.

    setting           environment        git config (repo, then global)   default
    model             EVOGIT_MODEL       evogit.model                     the server's first model (with a base URL)
    base URL          OPENAI_BASE_URL    evogit.baseUrl                   OpenAI's
    key               OPENAI_API_KEY     -                                a placeholder, for a server that needs none
    time limit        -                  evogit.modelTimeout (seconds)    300
    retries           -                  evogit.modelRetries              2
    reply length      -                  evogit.maxTokens                 2048 (max_tokens of each call)
    temperature       -                  evogit.temperature               0.2
    recording         EVOGIT_RECORD      -                                none

The environment wins because it is the session's choice and git config the repository's default. The key is
read only from the environment (git config is plain text in `.git/config`) and never shown: not by `repr`, not
by `server` (the base URL without any `user:password@` in it, for messages), and `redact` takes it (and such a
password) out of any text a server sent back, e.g. a 401 that echoes the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ..errors import InvalidInput, ModelNotConfigured

DEFAULT_TIMEOUT = 300.0
DEFAULT_RETRIES = 2
#: A reply's length limit: a tool package in the text format is 400-900 tokens; without a limit a small model's
#: reply can run away until the time limit (one ran to 3,329 tokens), and servers' defaults are unlimited.
DEFAULT_MAX_TOKENS = 2048
#: Low, so a reply is close to the model's best guess (servers default to 0.7-1.0), not 0: a repair round that
#: asks again should not get the very same reply.
DEFAULT_TEMPERATURE = 0.2
NO_KEY = "no-key"  # the bearer token sent to a server that needs none (llama.cpp, vLLM, Ollama, LM Studio)
OPENAI_URL = "https://api.openai.com/v1"

REDACTED = "<key>"
MIN_SECRET = 4  # shorter "keys" are not redacted (each would garble every message it occurs in)
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_-]{8,}")

NOT_CONFIGURED = ("no model configured: set EVOGIT_MODEL and OPENAI_API_KEY (plus OPENAI_BASE_URL for a server "
                  "other than OpenAI's), or `git config evogit.model` / `evogit.baseUrl`, or run `evogit model install` "
                  "for the embedded local model")


@dataclass(frozen=True)
class ModelConfig:
    """A model to call: `model` None means the first one the server at `base_url` lists."""

    model: str | None
    base_url: str | None = None
    api_key: str = field(default=NO_KEY, repr=False)
    timeout: float = DEFAULT_TIMEOUT  # wall-clock limit of one call, the client's retries included
    retries: int = DEFAULT_RETRIES  # the openai client's own retries of 408/409/429/5xx, timeouts, lost connections
    max_tokens: int = DEFAULT_MAX_TOKENS  # sent with every call
    temperature: float = DEFAULT_TEMPERATURE  # sent with every call
    record: Path | None = None  # EVOGIT_RECORD: append every exchange to this script file

    def __post_init__(self) -> None:
        if self.model is None and self.base_url is None:
            raise ModelNotConfigured(NOT_CONFIGURED)
        if not 0 < self.timeout < float("inf"):
            raise InvalidInput(f"the model's time limit must be positive seconds, not {self.timeout!r}")
        if self.retries < 0:
            raise InvalidInput(f"the model's retries must be 0 or more, not {self.retries!r}")
        if not 16 <= self.max_tokens <= 1_000_000:
            raise InvalidInput(f"evogit.maxTokens must be 16 to 1000000, not {self.max_tokens!r}")
        if not 0 <= self.temperature <= 2:
            raise InvalidInput(f"evogit.temperature must be 0 to 2, not {self.temperature!r}")

    def __repr__(self) -> str:
        return (f"ModelConfig(model={self.model!r}, server={self.server!r}, timeout={self.timeout!r}, "
                f"retries={self.retries!r}, max_tokens={self.max_tokens!r}, temperature={self.temperature!r}, "
                f"record={self.record!r})")

    @property
    def server(self) -> str:
        """The server's base URL, for messages: never the key, nor the `user:password@` of the URL."""
        return self.redact(_without_userinfo(self.base_url or OPENAI_URL))

    @property
    def secrets(self) -> tuple[str, ...]:
        """What `redact` takes out, longest first: the key, and the password in the base URL (its user when it
        has no password: a token given as `https://TOKEN@host`)."""
        found = {self.api_key, self.api_key.strip()} if self.api_key != NO_KEY else set()
        password = _userinfo(self.base_url or "").rpartition(":")[2]
        found |= {password, unquote(password)}
        return tuple(sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True))

    def redact(self, text: str) -> str:
        """`text` with every secret of this configuration replaced by `<key>`, and any `sk-...` token that is a
        piece of one (a server echoing the key cut short)."""
        secrets = self.secrets
        if not secrets:
            return text
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return _KEY_LIKE.sub(lambda m: REDACTED if any(m.group() in s for s in secrets) else m.group(), text)


def load_config(git_config: Any = None, env: Mapping[str, str] | None = None) -> ModelConfig:
    """The model configuration from `env` (default: the process environment) and a repository's git config
    (a `pygit2.Config`, or None); raises `ModelNotConfigured` with what to set when there is none."""
    env = os.environ if env is None else env

    def setting(var: str | None, key: str) -> str | None:
        if var and env.get(var):
            return env[var]
        if git_config is not None and key in git_config:
            return str(git_config[key]) or None
        return None

    model, base_url, key = setting("EVOGIT_MODEL", "evogit.model"), setting("OPENAI_BASE_URL", "evogit.baseurl"), \
        env.get("OPENAI_API_KEY") or None
    if (model is None and base_url is None) or (base_url is None and key is None):
        if model is None and base_url is None and key is None:  # nothing at all: the local model, if installed
            from .local import local_config

            local = local_config(git_config, env)  # its server started or reused; None: not installed, or off
            if local is not None:
                return local
        raise ModelNotConfigured(NOT_CONFIGURED)
    timeout, retries = setting(None, "evogit.modeltimeout"), setting(None, "evogit.modelretries")
    max_tokens, temperature = setting(None, "evogit.maxtokens"), setting(None, "evogit.temperature")
    try:
        return ModelConfig(
            model=model, base_url=base_url.rstrip("/") if base_url else None, api_key=key or NO_KEY,
            timeout=float(timeout) if timeout is not None else DEFAULT_TIMEOUT,
            retries=int(retries) if retries is not None else DEFAULT_RETRIES,
            max_tokens=int(max_tokens) if max_tokens is not None else DEFAULT_MAX_TOKENS,
            temperature=float(temperature) if temperature is not None else DEFAULT_TEMPERATURE,
            record=Path(env["EVOGIT_RECORD"]) if env.get("EVOGIT_RECORD") else None)
    except ValueError as e:
        raise InvalidInput(f"bad evogit.modelTimeout, modelRetries, maxTokens or temperature in git config: {e}") \
            from None


def _split_authority(url: str) -> tuple[str, str, str]:
    """(scheme and `//`, authority, the rest) of a URL, the scheme part empty when it has none."""
    head, sep, tail = url.partition("://")
    prefix, body = (head + sep, tail) if sep else ("", url)
    end = min((i for i in (body.find(c) for c in "/?#") if i >= 0), default=len(body))
    return prefix, body[:end], body[end:]


def _userinfo(url: str) -> str:
    """The `user:password` of a URL ("" when it has none)."""
    authority = _split_authority(url)[1]
    return authority.rpartition("@")[0]


def _without_userinfo(url: str) -> str:
    prefix, authority, rest = _split_authority(url)
    return prefix + authority.rpartition("@")[2] + rest
