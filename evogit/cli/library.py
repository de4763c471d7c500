"""The library's own commands: init, list, describe, build, lineage, fork, export."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .. import jsonio
from .. import lineage as lineage_mod
from ..errors import EvogitError
from ..events import short_key
from ..manifest import first_sentence
from ..runtime import Runtime, default_repo_path
from ..runtime.results import InitReport
from . import main
from .params import _Dir, _nonblank, json_option, repo_option
from .render import _ms, _out, _progress, _show_build


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
    rt, outcomes = Runtime.init(path, starter=not no_starter, bare=bare, progress=_progress(as_json),
                                require_signed=require_signed, adopt=True)
    failed = [o for o in outcomes if not o.ok]
    took = rt.adopted
    if as_json:
        _out(InitReport(shown, [o.to_json() for o in outcomes], *(
            (took.created, took.accepted_tags, took.refused, took.refused_tags, took.unbuilt) if took else ())))
    else:
        if took is not None and (took.created or took.accepted_tags or took.refused or took.refused_tags):
            click.echo(f"Took what git brought in: {len(took.created)} tool branches, {len(took.accepted_tags)} "
                       f"version tags checked and accepted", err=True)
            if took.created:
                click.echo("  plain git fetch and pull follow no tags from its remote now (git config "
                           "remote.<name>.tagOpt --no-tags): versions arrive checked through `evogit pull`, or "
                           "are built here by the hooks", err=True)
        for ref, why in (took.refused if took else {}).items():
            click.echo(f"  {ref} not taken: {why}", err=True)
        for tag, why in (took.refused_tags if took else {}).items():
            click.echo(f"  tag {tag} refused (taken out of refs/tags): {why}", err=True)
        for tool, why in (took.unbuilt if took else {}).items():
            click.echo(f"  tools/{tool} not built: {why}", err=True)
        click.echo(f"{len(outcomes) - len(failed)} of {len(outcomes)} tools built in {time.monotonic() - t0:.0f}s; "
                   f"repository: {shown}")
    if failed:
        raise EvogitError(f"{len(failed)} tools failed to build: {', '.join(o.tool for o in failed)}")


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
        if t.diverged:
            flag += f" [diverged: {', '.join(short_key(k) for k in t.diverged)} off its branch; evogit resolve " \
                    f"{t.name} FP chooses]"
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
