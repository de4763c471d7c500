"""Running tools and what runs leave behind: run, search, stats, feedback, replay, log."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import msgspec

from .. import jsonio
from .. import limits as limits_mod
from ..errors import EvogitError
from ..events import split_key
from ..manifest import first_sentence
from ..runtime import Runtime, run_wasm
from ..runtime.results import IndexReport, ReplayReport, RunReport, SearchHit, SearchReport
from ..sandbox import Limits
from ..worker import WorkerPool
from . import main
from .params import _Limit, _nonblank, json_option, repo_option
from .render import _event_line, _ms, _out, _short, _show_cost


def _lines(stream: Any, cap: int) -> Any:
    """The non-blank lines of a stream; of a line longer than `cap` bytes only the first cap + 1 are kept (so
    that its run is refused as too large), the rest is read past, never held."""
    while line := stream.readline(cap + 2):
        if len(line) > cap + 1 and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            line = line[: cap + 1]
        if line.strip():
            yield line


@main.command()
@click.argument("tool", required=False, metavar="TOOL[@FP]")
@click.argument("input_json", required=False, metavar="[JSON | -]")
@click.option("-i", "--input", "input_file", type=click.File("rb"), help="Read the input JSON from a file.")
@click.option("--batch", "batch_file", type=click.File("rb"),
              help="Run once per line of FILE (one JSON input a line; - for stdin) in supervised worker processes; "
                   "print one JSON envelope a line.")
@click.option("--wasm", "wasm_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Run a raw WASI module instead of a library tool (same sandbox and limits, no schemas).")
@click.option("--timeout", type=_Limit("timeout"), help="Wall-clock limit in seconds (at most 3600).")
@click.option("--fuel", type=_Limit("fuel"), help="Fuel limit (about 10 billion per CPU second).")
@click.option("--memory", type=_Limit("memory"), help="Linear memory limit in MiB (1 to 4096).")
@click.option("--max-output", type=_Limit("max_output"), help="Stdout limit in bytes (k, m, g suffixes; at most 1g).")
@click.option("--max-input", type=_Limit("max_input"),
              help="Input size limit in bytes (k, m, g suffixes; default 16m, at most 1g).")
@click.option("--task", callback=_nonblank, help="The task this run serves; a successful run teaches retrieval.")
@repo_option
@json_option
def run(tool: str | None, input_json: str | None, input_file: Any, batch_file: Any, wasm_file: Path | None,
        timeout: float | None, fuel: int | None, memory: int | None, max_output: int | None, max_input: int | None,
        task: str | None, repo: Path | None, as_json: bool) -> None:
    """Run TOOL[@FP] on a JSON input (argument, -i FILE, or - for stdin) and print its JSON output.

    Plain output is the tool's JSON; a failure prints `Error: TOOL@FP: KIND: DETAIL` and exits 1.
    With --json, one envelope {"ok", "output", "error", "tool", "fingerprint", "wall_ms", "fuel"}.
    """
    rt = None if wasm_file is not None else Runtime(repo)
    limits = limits_mod.apply(rt.default_limits() if rt else Limits(), {
        "timeout": timeout, "fuel": fuel, "memory": memory, "max_output": max_output, "max_input": max_input})
    if wasm_file is not None:
        if tool is not None and input_json is not None:
            raise click.UsageError("with --wasm give only the input, not a TOOL")
        input_json = tool if input_json is None else input_json
    elif tool is None:
        raise click.UsageError("missing TOOL (or --wasm FILE)")
    if batch_file is not None:
        if wasm_file is not None or input_json is not None or input_file is not None:
            raise click.UsageError("--batch takes its inputs from FILE only, and a TOOL")
        assert tool is not None
        lines = _lines(batch_file, limits.max_input)
        failed = 0
        assert rt is not None
        rt.load(tool)  # a missing tool is a one-line error before any worker starts
        with WorkerPool(rt.repo.path) as pool:
            for outcome in pool.run_many(tool, lines, limits):
                failed += not outcome.ok
                click.echo(jsonio.encode(msgspec.to_builtins(RunReport.of(outcome))))
        sys.exit(1 if failed else 0)
    if input_json is not None and input_file is not None:
        raise click.UsageError("give the input as an argument or with -i, not both")
    cap = limits.max_input + 1  # a byte more than the limit is enough to refuse an input, without holding it all
    if input_file is not None:
        data = input_file.read(cap)
    elif input_json == "-" or (input_json is None and not sys.stdin.isatty()):
        data = sys.stdin.buffer.read(cap)
    elif input_json is not None:
        data = input_json.encode()
    else:
        raise click.UsageError("no input: give JSON, -i FILE, or pipe it on stdin")
    if wasm_file is not None:
        outcome = run_wasm(wasm_file, data, limits)
    else:
        assert tool is not None and rt is not None
        outcome = rt.run(tool, data, limits, task=task)
    if as_json:
        _out(RunReport.of(outcome))
        sys.exit(0 if outcome.ok else 1)
    if outcome.ok:
        click.echo(jsonio.encode(outcome.output))
        return
    raise EvogitError(f"{outcome.tool}@{outcome.fingerprint[:7]}: {outcome.error}: {outcome.detail}")


@main.command()
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 1000), default=5, show_default=True, help="How many tools to show.")
@click.option("--explain", is_flag=True, help="Say why each tool was ranked where it is.")
@repo_option
@json_option
def search(query: str, k: int, explain: bool, repo: Path | None, as_json: bool) -> None:
    """Find the tools for a task, ranked by description and by the tasks they solved before."""
    hits, embedder = Runtime(repo).search(query, k, explain)
    if as_json:
        _out(SearchReport(embedder.model_id, embedder.semantic,
                          [SearchHit(h.tool, h.key, h.score, h.description, h.why if explain else None)
                           for h in hits]))
        return
    if not embedder.semantic:
        click.echo("(lexical fallback: no semantic embedding model is installed; matches are by words only)")
    if not hits:
        click.echo("No tools yet.")
    for rank, h in enumerate(hits, 1):
        click.echo(f"{rank}. {_short(h.key)}  {h.score:.2f}  {first_sentence(h.description)}")
        for name, value in h.why.items():
            click.echo(f"     {name}: {jsonio.encode(value)}")


@main.command()
@click.argument("tool", required=False, metavar="[TOOL[@FP]]")
@click.option("--cost", is_flag=True,
              help="Tokens per tool, per model and per solve; runs served without a model; tokens saved.")
@repo_option
@json_option
def stats(tool: str | None, cost: bool, repo: Path | None, as_json: bool) -> None:
    """Run metrics per version: runs, success rate, error kinds, latency p50/p95, fuel, feedback (--cost: tokens)."""
    if cost:
        if tool is not None:
            raise click.UsageError("--cost covers every tool; give no TOOL with it")
        _show_cost(Runtime(repo).cost(), as_json)
        return
    rt = Runtime(repo)
    data = rt.stats(tool)
    if as_json:
        _out(data)
        return
    claims, invalid = rt.untrusted()
    if not data:
        click.echo("No runs recorded yet.")
    for key, m in data.items():
        name, fp = split_key(key)
        rate = f"{m.success_rate * 100:.0f}%" if m.success_rate is not None else "-"
        p50, p95 = _ms(m.p50_ms), _ms(m.p95_ms)
        errors = ", ".join(f"{k} {v}" for k, v in sorted(m.errors.items())) or "-"
        feedback = f"{m.feedback_solved}/{m.feedback_solved + m.feedback_failed}"
        click.echo(f"{name}@{fp[:7] or '(failed builds)':<8} runs {m.runs:>6}  ok {rate:>4}  p50 {p50} ms  "
                   f"p95 {p95} ms  solved {feedback}  found {m.retrieved} (first {m.retrieved_first}, "
                   f"chosen {m.chosen})  "
                   f"errors: {errors}")
        if m.descendants:
            best = m.best_descendant
            shown = (f"; best {_short(best.version)} "
                     f"ok {best.success_rate * 100:.0f}% of {best.runs}") if best else ""
            click.echo(f"    {m.children} children, {m.descendants} descendants{shown}")
    if tool and "@" not in tool and len(data) > 1:
        runs, ok = sum(m.runs for m in data.values()), sum(m.ok for m in data.values())
        click.echo(f"{tool} (all {len(data)} versions): runs {runs}, ok "
                   f"{f'{ok / runs * 100:.0f}%' if runs else '-'}")
    if runs_apart := sum(c.runs for c in claims.values()):
        click.echo(f"{runs_apart} runs from unverified writers ({', '.join(claims)}) are not counted above "
                   "(git config --add evogit.trustWriter WRITER counts a writer's)")
    if invalid:
        click.echo(f"{sum(invalid.values())} invalid events skipped (from {', '.join(invalid)})")


@main.command()
@click.argument("tool", metavar="TOOL[@FP]")
@click.option("--task", required=True, callback=_nonblank, help="The task the tool was used for.")
@click.option("--solved", is_flag=True, help="The result solved the task.")
@click.option("--failed", is_flag=True, help="The result did not solve the task.")
@click.option("--note", default="", help="Anything worth remembering.")
@repo_option
def feedback(tool: str, task: str, solved: bool, failed: bool, note: str, repo: Path | None) -> None:
    """Record whether TOOL[@FP] solved TASK; retrieval learns from it."""
    if solved == failed:
        raise click.UsageError("give --solved or --failed, not both" if solved else "give --solved or --failed")
    event = Runtime(repo).feedback(tool, task, solved, note)
    click.echo(f"Recorded: {event.tool}@{event.fingerprint[:7]} {'solved' if solved else 'failed'} {task!r}")


@main.command()
@click.option("--repair", is_flag=True,
              help="First rewrite damaged log files from what can still be read (the damaged ones are kept aside).")
@repo_option
@json_option
def replay(repair: bool, repo: Path | None, as_json: bool) -> None:
    """Rebuild every projection (metrics, usage, retrieval history) from the whole event log, then refit the
    retrieval model and its FAISS index."""
    t0 = time.monotonic()
    rt = Runtime(repo)
    state = rt.replay(retrieval=False, repair=repair).state
    replayed = time.monotonic() - t0
    model, embedder = rt.retrieval_model()
    runs = sum(m.runs for m in state.versions.values())
    index = IndexReport(len(model.candidates) if model else 0, model.index.d if model else 0, embedder.model_id,
                        round(time.monotonic() - t0 - replayed, 3))
    if as_json:
        _out(ReplayReport(len(state.versions), runs, state.position, round(replayed, 3), index))
    else:
        click.echo(f"Replayed the log: {len(state.versions)} versions, {runs} runs, in {replayed:.3f} s")
        click.echo(f"Rebuilt the retrieval index: {index.tools} tools, {index.dimensions} dimensions "
                   f"({index.model}), in {index.seconds} s")


@main.command("log")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they are appended.")
@click.option("-n", "--last", type=click.IntRange(min=1), default=None, help="Only the last N events.")
@repo_option
@json_option
def log_(follow: bool, last: int | None, repo: Path | None, as_json: bool) -> None:
    """Print the event stream, one event a line (oldest first)."""

    rt = Runtime(repo)
    position: dict[str, int] = {}

    def show(batch: list[Any]) -> None:
        for event in batch:
            click.echo(msgspec.json.encode(event).decode() if as_json else _event_line(event))

    batch = []
    for writer, pos, event in rt.log.read(position):
        batch.append(event)
        position[writer] = pos
    batch.sort(key=lambda e: (e.at, e.writer, e.seq))
    show(batch[-last:] if last else batch)
    while follow:
        time.sleep(0.2)
        fresh = []
        for writer, pos, event in rt.log.read(position):
            fresh.append(event)
            position[writer] = pos
        show(sorted(fresh, key=lambda e: (e.at, e.writer, e.seq)))
