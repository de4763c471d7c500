"""Sharing between machines: push, pull, verify, and the hidden hook the git hooks call."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import click
import msgspec

from ..errors import EvogitError
from ..events import short_key
from ..runtime import Runtime
from ..runtime.results import BuildOutcome, PullSummary
from ..share import PullReport, add_remote, default_remote, remotes, remove_remote
from ..verify import TRUST
from . import main
from .params import _Dir, _nonblank, json_option, repo_option
from .render import _out, _show_build


@main.command()
@click.argument("remote", required=False, callback=_nonblank)
@repo_option
def push(remote: str | None, repo: Path | None) -> None:
    """Push tool branches, version tags and this machine's event log to REMOTE (a git remote, path or URL; by
    default the upstream, as git chooses it: the branch's remote, else origin)."""
    rt = Runtime(repo)
    remote = remote or default_remote(rt.repo)
    report = rt.push(remote)
    fresh = report.updated
    kinds = {"tool branches": "refs/heads/", "version tags": "refs/tags/", "event logs": "refs/evogit/"}
    counts = [f"{sum(r.startswith(prefix) for r in fresh)} {kind}" for kind, prefix in kinds.items()]
    click.echo(f"Pushed to {remote}: {', '.join(counts)} updated" if fresh else f"{remote} is up to date")
    for ref, why in report.skipped.items():
        click.echo(f"  skipped {ref}: {why}", err=True)


@main.command()
@click.argument("remote", required=False, callback=_nonblank)
@repo_option
@json_option
def pull(remote: str | None, repo: Path | None, as_json: bool) -> None:
    """Fetch tools, versions and event logs from REMOTE (by default the upstream, as git chooses it); take tool
    branches that moved, check every version tag under the trust policy, and build what arrived."""
    rt = Runtime(repo)
    remote = remote or default_remote(rt.repo)
    report, outcomes = rt.pull(remote, _phase(as_json))
    _show_pull(report, outcomes, remote, as_json)


def _phase(as_json: bool) -> Callable[[str], None]:
    def say(line: str) -> None:
        if not as_json:
            click.echo(f"  {line}", err=True)
    return say


def _show_pull(report: PullReport, outcomes: list[BuildOutcome], remote: str, as_json: bool) -> None:
    if as_json:
        _out(PullSummary.of(report, outcomes))
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
        for writer, n in report.unknown.items():
            click.echo(f"  {writer}: {n} events of types this evogit cannot read skipped (written by a newer "
                       "version; kept in the log, read once this one is upgraded)")
        for o in outcomes:
            click.echo(f"  {_show_build(o)}")
        for ref, why in report.refused.items():
            click.echo(f"  {ref} refused: {why}")
        for tag, why in report.refused_tags.items():
            click.echo(f"  tag {tag} refused: {why}")
        for tool, why in report.unbuilt.items():
            click.echo(f"  tools/{tool} not built: {why}")
        for tool in report.diverged:
            head = f"its branch is at {short_key(report.heads[tool])} (the later version); " if tool in report.heads \
                else "its branch is left as it is; "
            click.echo(f"  tools/{tool} diverged from {remote}: {head}both sides' versions stay runnable by "
                       f"fingerprint; `evogit resolve {tool} FP` or git merge ends it")
    if any(not o.ok for o in outcomes):
        raise EvogitError(f"{sum(not o.ok for o in outcomes)} pulled tool heads failed to build")


@main.command()
@click.argument("url", callback=_nonblank)
@click.argument("path", required=False, type=_Dir())
@click.option("--trust", type=click.Choice(TRUST),
              help="How versions from this remote are checked (remote.origin.evogitTrust; default: evogit.trust, "
                   "else rebuild).")
@json_option
def clone(url: str, path: Path | None, trust: str | None, as_json: bool) -> None:
    """Clone a skills repository or hub at URL into PATH: git clone, hooks installed, every version checked
    under the trust policy, the event logs imported."""
    path = path or Path(re.sub(r"\.git$", "", url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]) or "skills")
    _, report, outcomes = Runtime.clone(url, path, trust=trust, progress=_phase(as_json))
    _show_pull(report, outcomes, "origin", as_json)
    if not as_json:
        click.echo(f"Cloned {url} into {click.format_filename(path)}: {len(report.created)} tools, "
                   f"{len(report.accepted_tags)} versions")


@main.command()
@click.argument("tool", callback=_nonblank)
@click.argument("fingerprint", metavar="FP", callback=_nonblank)
@repo_option
def resolve(tool: str, fingerprint: str, repo: Path | None) -> None:
    """End a divergence of TOOL by choosing its version FP: a merge of every version off the branch, with FP's
    files, that every machine fast-forwards to (git merge on the tool branch is the other way)."""
    outcome = Runtime(repo).resolve(tool, fingerprint)
    click.echo(_show_build(outcome))
    if not outcome.ok:
        raise EvogitError(f"the merge of {tool} did not build")


@main.group()
def remote() -> None:
    """The remotes this repository pushes to and pulls from (git remotes)."""


@remote.command("add")
@click.argument("name", callback=_nonblank)
@click.argument("url", callback=_nonblank)
@click.option("--trust", type=click.Choice(TRUST), help="How versions pulled from it are checked.")
@repo_option
def remote_add(name: str, url: str, trust: str | None, repo: Path | None) -> None:
    """Add remote NAME at URL (a path, file://, ssh or https URL, as git takes it)."""
    r = add_remote(Runtime(repo).repo, name, url, trust)
    click.echo(f"{r.name}\t{r.url}\ttrust {r.trust}")


@remote.command("remove")
@click.argument("name", callback=_nonblank)
@repo_option
def remote_remove(name: str, repo: Path | None) -> None:
    """Remove remote NAME and what evogit fetched from it (what its logs brought stays)."""
    remove_remote(Runtime(repo).repo, name)
    click.echo(f"Removed remote {name}")


@remote.command("list")
@repo_option
@json_option
def remote_list(repo: Path | None, as_json: bool) -> None:
    """Every remote: name, URL, trust policy."""
    found = remotes(Runtime(repo).repo)
    if as_json:
        _out(found)
        return
    for r in found:
        click.echo(f"{r.name}\t{r.url}\ttrust {r.trust}")


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
