"""Git hooks: thin shell templates from `hooks/` that exec back into `evogit hook <name>`.

libgit2 never runs hooks, so evogit builds its own commits directly; these hooks cover commits, merges,
rebases and pushes made with the git CLI. A foreign hook found in place is kept as `<name>.legacy` and still runs.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

from .resources import resource

MARKER = "# evogit-hook"
HOOKS = ("post-commit", "post-merge", "post-rewrite", "pre-receive", "post-receive")


def evogit_command() -> str:
    """How a hook should call back into this very installation of evogit."""
    return f"{shlex.quote(sys.executable)} -m evogit"


def install(git_dir: Path) -> list[str]:
    """Install every hook into `git_dir/hooks`; returns the names of foreign hooks moved to `.legacy`."""
    hooks_dir = git_dir / "hooks"
    hooks_dir.mkdir(exist_ok=True)
    moved = []
    for name in HOOKS:
        target = hooks_dir / name
        if target.exists() and MARKER not in target.read_text(errors="replace"):
            legacy = hooks_dir / f"{name}.legacy"
            if not legacy.exists():
                os.replace(target, legacy)
                moved.append(name)
        text = (resource("hooks") / name).read_text().replace("@EVOGIT@", evogit_command())
        tmp = hooks_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(tmp, target)
    return moved


def is_installed(git_dir: Path, name: str) -> bool:
    path = git_dir / "hooks" / name
    return path.exists() and MARKER in path.read_text(errors="replace")
