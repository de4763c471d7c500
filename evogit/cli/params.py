"""Click parameter types, shared options and callbacks of the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .. import jsonio
from .. import limits as limits_mod
from ..errors import EvogitError


class _Dir(click.Path):
    """A directory that is not blank: Path("") is the current directory, which `init ""` would adopt."""

    def __init__(self) -> None:
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            self.fail("must not be blank (give . for the current directory)", param, ctx)
        return super().convert(value, param, ctx)


def _repo(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """`evogit --repo X cmd` means the same as `evogit cmd --repo X` (which wins if both are given)."""
    given = ctx.find_root().params.get("repo")
    if given is not None and ctx.get_parameter_source("repo") is not click.core.ParameterSource.COMMANDLINE:
        return given
    return value


class _Limit(click.ParamType):
    """A run limit in its unit, checked against its range (evogit/limits.py): a bad value is a usage error."""

    def __init__(self, limit: str):
        self.limit, self.name = limit, limits_mod.RANGES[limit].unit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return limits_mod.parse(self.limit, value) if isinstance(value, str) else value
        except ValueError as e:
            self.fail(str(e), param, ctx)


def _nonblank(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("must not be blank", ctx=ctx, param=param)
    return value


def _examples(values: tuple[str, ...]) -> list[Any]:
    out = []
    for i, text in enumerate(values, 1):
        try:
            out.append(jsonio.decode(text, what=f"--example {i}"))
        except EvogitError as e:
            raise click.UsageError(str(e)) from None
    return out


repo_option = click.option(
    "--repo", "repo", type=_Dir(), envvar="EVOGIT_REPO",
    default=None, callback=_repo, help="Skills repository (default: $EVOGIT_REPO or ~/.evogit).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
rounds_option = click.option("--rounds", type=click.IntRange(0, 10), default=3, show_default=True,
                             help="Repair rounds after the first attempt.")
example_option = click.option("--example", "examples", multiple=True, metavar="JSON",
                              help='{"input": ..., "expect": ...} that must pass (repeatable).')
