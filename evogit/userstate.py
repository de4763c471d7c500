"""Per-user state that lives outside every skills repository: the cache root and the module key.

The module key authenticates compiled modules (`.cwasm` files are native code that wasmtime runs without
checking it): whoever can write into a repository's `.git/evogit/modules/` — a pulled file, a copied one, a
bad disk — cannot make this user's processes run code evogit did not compile itself, because they do not
have the key. It is 32 random bytes in `<cache root>/module.key`, mode 0600, made on first use.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_BYTES = 32


def cache_root() -> Path:
    """Per-user cache shared by every skills repo: compiled crates and build results ($EVOGIT_CACHE_DIR)."""
    base = os.environ.get("EVOGIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "evogit"
    )
    return Path(base)


def module_key(path: Path | None = None) -> bytes:
    """This user's key for compiled modules; a missing or damaged key file is replaced by a new key (which only
    means every cached module is compiled once more)."""
    path = path or cache_root() / "module.key"
    try:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    try:
        try:
            os.link(tmp, path)  # create-if-absent, whole: the first process wins and the others read its key
        except FileExistsError:
            existing = path.read_bytes()
            if len(existing) == KEY_BYTES:
                return existing
            os.replace(tmp, path)  # a damaged key file: replace it
        return key
    finally:
        tmp.unlink(missing_ok=True)
