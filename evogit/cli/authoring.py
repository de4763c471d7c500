"""Commands that use a model: create, mutate, teach (authoring tools) and solve (tasks)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from .. import jsonio
from .. import limits as limits_mod
from ..errors import EvogitError
from ..runtime import Runtime
from ..runtime.results import SolveReport
from . import main
from .params import _examples, _Limit, example_option, json_option, repo_option, rounds_option
from .render import _out, _short, _stages, _steps


def _authored(result: Any, as_json: bool) -> None:
    if as_json:
        _out(result.to_json())
    elif result.ok:
        click.echo(f"ok    {result.version.short}  {result.kind}d in {len(result.attempts)} "
                   f"attempt{'s' if len(result.attempts) != 1 else ''}, {result.tokens} tokens ({result.model})")
        if result.parent:
            click.echo(f"      parent {_short(result.parent)}: {result.parent_reason}")
        for s in result.superseded:
            click.echo(f"      superseded {s.case}: {s.reason}")
        for note in result.mended:
            click.echo(f"      {note}")
    if not result.ok:
        raise EvogitError(result.message)


@contextlib.contextmanager
def _author(rt: Runtime, rounds: int) -> Iterator[Any]:
    """An Author over this repository's model (configured by env or git config); its client closed after."""
    from ..agent import model_client
    from ..agent.author import Author

    with model_client(rt) as client:
        yield Author(rt, client, rounds=rounds, progress=_stages())


@main.command()
@click.argument("task")
@click.option("--name", help="The new tool's name (default: the model picks one; a taken name gets -2, -3, ...).")
@example_option
@rounds_option
@repo_option
@json_option
def create(task: str, name: str | None, examples: tuple[str, ...], rounds: int, repo: Path | None,
           as_json: bool) -> None:
    """Have the model write a new tool for TASK; only a green, tested version is committed and tagged."""
    rt = Runtime(repo)
    with _author(rt, rounds) as author:
        result = author.create(task, name, _examples(examples))
    _authored(result, as_json)


@main.command()
@click.argument("tool", metavar="TOOL[@FP]")
@click.argument("task")
@click.option("--name", help="Fork a new tool with this name at the parent (default: a new version of TOOL).")
@example_option
@rounds_option
@click.option("--explain", is_flag=True, help="Show each version's record that the parent is chosen by.")
@repo_option
@json_option
def mutate(tool: str, task: str, name: str | None, examples: tuple[str, ...], rounds: int, explain: bool,
           repo: Path | None, as_json: bool) -> None:
    """Have the model specialise TOOL[@FP] for TASK; the parent's cases still count unless superseded."""
    rt = Runtime(repo)
    if explain and "@" not in tool and not as_json:
        from ..agent.author import parent_records

        click.echo(f"parent of {tool} for this task: most net successes on similar tasks, then success rate, "
                   "then the newest", err=True)
        for v, similar, rate, newest in parent_records(rt, tool, task):
            click.echo(f"  {v.short}  similar tasks solved (net) {similar:>3}  runs ok {rate * 100:3.0f}%"
                       + ("  (newest)" if newest else ""), err=True)
    with _author(rt, rounds) as author:
        result = author.mutate(tool, task, name, _examples(examples))
    _authored(result, as_json)


@main.command()
@click.argument("tool", metavar="TOOL[@FP]")
@click.argument("instruction")
@example_option
@rounds_option
@repo_option
@json_option
def teach(tool: str, instruction: str, examples: tuple[str, ...], rounds: int, repo: Path | None,
          as_json: bool) -> None:
    """Teach TOOL by INSTRUCTION with examples: a mutation whose examples become cases that must pass."""
    if not examples:
        raise click.UsageError("teach needs at least one --example")
    rt = Runtime(repo)
    with _author(rt, rounds) as author:
        result = author.teach(tool, instruction, _examples(examples))
    _authored(result, as_json)


@main.command()
@click.argument("task")
@click.option("--input", "input_json", metavar="JSON", help="The task's input: one JSON document.")
@click.option("-i", "input_file", type=click.File("rb"), help="Read the input JSON from a file (- for stdin).")
@click.option("--max-steps", type=click.IntRange(1, 100), default=8, show_default=True,
              help="Model calls at most, before giving up.")
@click.option("--no-fast-path", is_flag=True, help="Always ask the model, even when a tool clearly fits.")
@click.option("--max-writes", type=click.IntRange(0, 100), default=2, show_default=True,
              help="Tools the model may create or mutate in this solve (each call counts).")
@click.option("--deadline", type=click.FloatRange(1, 86400), default=1200, show_default=True,
              help="Seconds the whole solve may take: no model call or new tool starts after that.")
@rounds_option
@click.option("--max-input", type=_Limit("max_input"),
              help="Input size limit in bytes (k, m, g suffixes; default 16m or git config evogit.maxInput).")
@repo_option
@json_option
def solve(task: str, input_json: str | None, input_file: Any, max_steps: int, no_fast_path: bool, max_writes: int,
          deadline: float, rounds: int, max_input: int | None, repo: Path | None, as_json: bool) -> None:
    """Solve TASK with the library: a tool that clearly fits runs without a model; otherwise the model runs,
    specialises or creates one through tool calls. Steps go to stderr, the answer to stdout.

    With --json: {"answer", "served_by", "model_used", "steps", "tokens", ...}. Exit 1 if not answered.
    """
    from ..agent import lazy_model
    from ..agent.solve import Solver

    if not task.strip():
        raise click.BadParameter("must not be blank", param_hint="TASK")
    if input_json is not None and input_file is not None:
        raise click.UsageError("give the input with --input or -i, not both")
    try:
        rt = Runtime(repo)
        limits = limits_mod.apply(rt.default_limits(), {"max_input": max_input})
        data = input_file.read(limits.max_input + 1) if input_file is not None else \
            input_json.encode("utf-8", "surrogateescape") if input_json is not None else None
        with lazy_model(rt) as connect:
            result = Solver(rt, connect, max_steps=max_steps, rounds=rounds, limits=limits, max_writes=max_writes,
                            deadline=deadline, progress=_steps(as_json)).solve(task, data, fast_path=not no_fast_path)
    except EvogitError as e:
        if as_json:  # one JSON document on stdout for every outcome, as `run --json` does
            _out(SolveReport(None, None, False, [], 0, False, "error", False, None, [], [], str(e)))
        raise
    if as_json:
        _out(result.to_json())
        sys.exit(0 if result.ok else 1)
    for s in result.superseded:  # whole: a contract weakened inside a solve is said in the open
        click.echo(f"{_short(s['version'])} (a new tool) supersedes the case {s['case']} of its parent: {s['reason']}",
                   err=True)
    if result.ok:
        click.echo(result.answer if isinstance(result.answer, str) else jsonio.encode(result.answer))
        how = ("without a model (0 tokens)" if not result.model_used else
               f"by the model, {result.tokens:,} tokens")
        served = f"served by {_short(result.served_by)}" if result.served_by else "no tool served it"
        click.echo(f"{served}, {how}", err=True)
        return
    raise EvogitError(result.message)
