"""Where evogit's shipped files are: `hooks/` templates and the `skills-repo/` starter library.

In a source checkout (editable install) they are at the project's top level; a wheel carries them in
`evogit/_data/`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"evogit resource {name!r} not found next to {_PACKAGE}")
