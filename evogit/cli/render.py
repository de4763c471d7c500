"""What the command line prints: JSON documents, build lines, progress and step printers, event lines, costs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click
import msgspec

from .. import events as ev
from .. import jsonio
from ..events import short_key
from ..runtime import BuildOutcome
from ..runtime.results import CostReport


def _out(data: Any) -> None:
    """One JSON document on stdout: typed results (runtime/results.py) through msgspec, as every server sends them."""
    click.echo(jsonio.encode(msgspec.to_builtins(data), indent=2, default=str))


def _printable(text: str) -> str:
    """Text from outside (a model's function names and ids, a server's model name) with control characters
    escaped, so that it cannot move the cursor, ring the bell or fake lines."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_short = short_key


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


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


def _steps(as_json: bool):  # noqa: ANN202 - a progress callback
    def report(step: Any) -> None:
        if not as_json:
            click.echo(f"[{step.seconds:6.2f}s] {step.kind:<9} {_printable(step.text)}", err=True)

    return report


def _stages():  # noqa: ANN202 - a progress callback
    """Each authoring stage as a line on stderr as it happens (with --json too: a create with a CPU model takes
    minutes, and stdout keeps the one JSON document)."""
    t0 = time.monotonic()

    def report(message: str) -> None:
        click.echo(f"[{time.monotonic() - t0:6.1f}s] {_printable(message)}", err=True)

    return report


def _phases(label_width: int = 12):  # noqa: ANN202 - a progress callback
    started: dict[str, float] = {}

    def report(phase: int, phases: int, label: str, done: str | None) -> None:
        if done is None:
            started[label] = time.monotonic()
            click.echo(f"[{phase}/{phases}] {label:<{label_width}} ", nl=False, err=True)
        else:
            click.echo(f"{done} ({time.monotonic() - started.get(label, time.monotonic()):.1f}s)", err=True)

    return report


def _solved(e: ev.Solved) -> tuple[str, str]:
    how = "fast path" if e.fast_path else f"model, {e.steps} calls" if e.model_used else "no model"
    served = f" by {_short(e.served_by)}" if e.served_by else ""
    tokens = e.prompt_tokens + e.completion_tokens + e.author_tokens
    return _clip(repr(e.task), 28), f"{e.outcome}{served} ({how}, {tokens} tokens)"


def _retrieved(e: ev.Retrieved) -> tuple[str, str]:
    top = ", ".join(_short(c) for c in e.candidates[:3])
    chose = f"chose {_short(e.choice)}" if e.choice else ""
    return _clip(repr(e.query), 28), "; ".join(filter(None, [f"→ {top}" if top else "", chose]))


#: What `evogit log` shows of each kind of event after its tool (or, returning a pair, instead of it too).
_DETAILS: dict[type, Callable[[Any], str | tuple[str, str]]] = {
    ev.ToolRun: lambda e: ("ok" if e.ok else e.error) + f" {e.wall_ms:g} ms fuel {e.fuel}"
                          + (f" task {e.task!r}" if e.task else ""),
    ev.Feedback: lambda e: f"{'solved' if e.solved else 'failed'} {e.task!r}",
    ev.BuildFailed: lambda e: f"at {e.stage}: {e.message.splitlines()[0] if e.message else ''}",
    ev.BuildSucceeded: lambda e: e.commit[:10],
    ev.VersionCommitted: lambda e: f"{e.commit[:10]} {e.message}",
    ev.Retrieved: _retrieved,
    ev.Embedded: lambda e: e.model if e.tool else (_clip(repr(e.text), 28), e.model),
    ev.ModelCalled: lambda e: f"{e.purpose} {e.outcome} {e.prompt_tokens}+{e.completion_tokens} tokens "
                              f"{e.latency_ms:.0f} ms",
    ev.Solved: _solved,
    ev.AuthorAttempt: lambda e: f"{e.kind} round {e.round} {e.stage}" + (f" {e.error}" if e.error else ""),
    ev.UnknownEvent: lambda e: f"{e.type} v{e.v} (unknown to this version)",
}


def _event_line(e: Any) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at / 1e9))
    fp = getattr(e, "fingerprint", "")
    what = f"{getattr(e, 'tool', '')}{'@' + fp[:7] if fp else ''}"
    detail = _DETAILS.get(type(e), lambda e: getattr(e, "model", ""))(e)
    if isinstance(detail, tuple):
        what, detail = detail
    return f"{when} {e.writer:<10} {type(e).__name__:<16} {what:<28} {detail}"


def _show_cost(c: CostReport, as_json: bool) -> None:
    if as_json:
        _out(c)
        return
    if not c.tools and not c.models and not c.solves.solves:
        click.echo("No model calls recorded yet.")
        return
    for name, t in c.tools.items():
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(t.by_kind.items()))
        attempts = f"{t.attempts} attempt{'s' if t.attempts != 1 else ''}"
        click.echo(f"{name:<24} {t.tokens:>9,} tokens  {attempts} ({t.green} green; {kinds})")
    for name, m in c.models.items():
        click.echo(f"model {_printable(name)}: {m.calls} calls ({m.failed} failed), {m.tokens:,} tokens "
                   f"({m.prompt_tokens:,} prompt + {m.completion_tokens:,} completion)")
    click.echo(f"total: {c.tokens:,} tokens")
    s = c.solves
    if s.solves:
        click.echo(f"solves: {s.solves} ({s.answered} answered: {s.fast_path} by the fast path, "
                   f"{s.model_run} by a tool the model chose, {s.written} by a tool written for it; "
                   f"{s.unserved} not served by a tool), {s.tokens:,} tokens "
                   f"({s.author_tokens:,} of them writing tools; {s.tokens / s.solves:,.0f} per solve)")
        click.echo(f"runs served without a model: {s.runs_without_model}")
        click.echo(f"tokens saved (estimate): {s.tokens_saved:,} ({s.tokens_saved_net:,} net of the model-run "
                   f"solves' own calls): each reuse counted at the tool's authoring tokens per green version, or "
                   f"the library's mean ({s.mean_authoring_tokens:,}) for a tool no model wrote here")
