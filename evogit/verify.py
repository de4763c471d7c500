"""Checks on what git brings in, in one place: tree entry names, before anything touches a disk."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import InvalidPackage

#: Code points HFS+ ignores in names, so that ".g\u200cit" is ".git" there (as git's is_hfs_dotgit knows).
_HFS_IGNORED = dict.fromkeys([0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF])


# -- tree entry names ----------------------------------------------------------------------------------------
def name_problem(raw: bytes) -> str | None:
    """Why a tree entry name must not reach a disk, or None: empty, `.`, `..`, a slash, backslash or NUL, not
    UTF-8, or a spelling of `.git` (any case, trailing dots or spaces, an NTFS stream or short name, HFS-ignored
    characters)."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8"
    if name in ("", ".", ".."):
        return "is a relative path component" if name else "is empty"
    for char, what in (("/", "a slash"), ("\\", "a backslash"), ("\0", "NUL")):
        if char in name:
            return f"contains {what}"
    if name.translate(_HFS_IGNORED).split(":", 1)[0].rstrip(". ").casefold() in (".git", "git~1"):
        return "is a spelling of .git"
    return None


class PathCheck:
    """Paths checked one entry at a time, as a tree is walked: each name may reach a disk, and no two paths
    (files or directories) differ only in case."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def add(self, parent: str, raw: bytes) -> str:
        """The path of entry `raw` in directory `parent` ('' or 'dir/'); InvalidPackage if it must not be written."""
        if problem := name_problem(raw):
            raise InvalidPackage(f"tree entry {parent + raw.decode('utf-8', 'backslashreplace')!r} {problem}")
        path = parent + raw.decode()
        first = self._seen.setdefault(path.casefold(), path)
        if first != path:
            a, b = sorted((first, path))
            raise InvalidPackage(f"paths {a!r} and {b!r} differ only in case")
        return path


def check_paths(paths: Iterable[str]) -> None:
    """Raise InvalidPackage unless every `a/b/c` path may be written as it is (see `PathCheck`)."""
    check = PathCheck()
    for path in paths:
        parent = ""
        for part in path.split("/"):
            parent = check.add(parent, part.encode("utf-8", "surrogateescape")) + "/"
