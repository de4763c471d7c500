"""Exporting the library as Agent Skills (the `agentskills` format): one directory per tool holding `SKILL.md`,
YAML front matter (`name` = the directory's name, lowercase letters, digits and hyphens, at most 64 characters;
`description` at most 1024) and a Markdown body that says how to run the tool with `evogit run`, both schemas, and
examples taken from its cases. Assistants that load skills from `.agents/skills/` (a project's or `~/`) then find
the library. Exporting again rewrites each file in place; other files in DIR are left alone."""

from __future__ import annotations

import json
from pathlib import Path

from . import jsonio
from .atomic import write_atomic
from .errors import InvalidInput
from .runtime import Description, Runtime

MAX_DESCRIPTION = 1024
MAX_EXAMPLES = 4


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is YAML's)."""
    return json.dumps(" ".join(text.split()), ensure_ascii=False)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def skill_markdown(d: Description, repo: Path) -> str:
    """SKILL.md for one version."""
    description = _clip(f"{d.description} (evogit tool {d.version}: run it with `evogit run {d.tool}`.)",
                        MAX_DESCRIPTION)
    lines = [
        "---",
        f"name: {d.tool}",
        f"description: {_quoted(description)}",
        "metadata:",
        f"  evogit-version: {_quoted(f'{d.tool}@{d.fingerprint}')}",
        f"  evogit-repository: {_quoted(str(repo))}",
        "---",
        "",
        f"# {d.tool}",
        "",
        " ".join(d.description.split()),
        "",
        "## How to run it",
        "",
        "Give the input as one JSON document; the output is one JSON document on stdout (exit 1 and an error",
        "on failure). It runs in evogit's WebAssembly sandbox: no files, no network, hard time and memory limits.",
        "",
        "```sh",
        f"evogit run {d.tool} '<input JSON>' --repo {repo}",
        "```",
        "",
        f"This is version `{d.tool}@{d.fingerprint}`; `evogit run {d.tool}@{d.fingerprint[:12]} …` pins it.",
        "",
        "## Input schema",
        "",
        "```json",
        jsonio.encode(d.input_schema, indent=2),
        "```",
        "",
        "## Output schema",
        "",
        "```json",
        jsonio.encode(d.output_schema, indent=2),
        "```",
    ]
    examples = [c for c in d.cases if isinstance(c, dict) and "input" in c][:MAX_EXAMPLES]
    if examples:
        lines += ["", "## Examples", ""]
        for c in examples:
            lines += [f"- `{c.get('name', 'example')}`:", "", "  ```sh",
                      f"  evogit run {d.tool} {_shell(jsonio.encode(c['input']))} --repo {repo}", "  ```", "",
                      f"  {'fails with' if c.get('exit') else 'prints'}: `{jsonio.encode(c.get('expect'))}`", ""]
    return "\n".join(lines).rstrip() + "\n"


def _shell(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def export_skills(rt: Runtime, directory: Path, tools: list[str] | None = None) -> list[Path]:
    """Write `<directory>/<tool>/SKILL.md` for each tool (default: every tool with a green version); the paths."""
    names = tools or [t.name for t in rt.list_tools() if t.latest is not None]
    descriptions = [rt.describe(name) for name in names]  # every name checked before anything is written
    if directory.exists() and not directory.is_dir():
        raise InvalidInput(f"{directory} is not a directory")
    written = []
    for d in descriptions:
        path = directory / d.tool / "SKILL.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, skill_markdown(d, rt.repo.path).encode())
        written.append(path)
    return written
