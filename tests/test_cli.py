"""The CLI as a user meets it: help everywhere, one-line errors, exit codes, JSON output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from evogit.cli import main
from evogit.runtime import Runtime

README = Path(__file__).resolve().parent.parent / "README.md"


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def test_every_command_has_help_and_is_in_the_readme():
    readme = README.read_text()
    for name, cmd in main.commands.items():
        if cmd.hidden:
            continue
        assert cmd.help, name
        assert invoke(name, "--help").exit_code == 0
        assert re.search(rf"evogit {name}\b", readme), f"README does not show `evogit {name}`"


def test_missing_repo_is_a_one_line_error(tmp_path: Path):
    result = invoke("list", "--repo", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert result.output.startswith("Error: ") and "evogit init" in result.output


def test_repo_before_the_command(tmp_path: Path, monkeypatch):
    repo = tmp_path / "lib"
    assert invoke("--repo", str(repo), "init", "--no-starter").exit_code == 0
    monkeypatch.setenv("EVOGIT_REPO", str(tmp_path / "elsewhere"))  # the flag wins over the environment
    result = invoke("--repo", str(repo), "list", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    result = invoke("--repo", str(repo), "list", "--repo", str(tmp_path / "nowhere"))  # the command's own wins
    assert result.exit_code == 1 and "nowhere" in result.output


def test_usage_error_exits_2(tmp_path: Path):
    assert invoke("lineage").exit_code == 2
    assert invoke("lineage", "x", "--format", "png").exit_code == 2


def test_init_no_starter_and_list(tmp_path: Path):
    repo = tmp_path / "lib"
    result = invoke("init", str(repo), "--no-starter")
    assert result.exit_code == 0, result.output
    assert (repo / ".git" / "hooks" / "post-commit").exists()
    result = invoke("list", "--repo", str(repo), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    # Running init again on the same path adopts it and loses nothing.
    assert invoke("init", str(repo), "--no-starter").exit_code == 0


@pytest.mark.slow
def test_run_describe_lineage_fork(small_rt: Runtime):
    repo = str(small_rt.repo.path)
    result = invoke("run", "word-count", '{"text": "a b c"}', "--repo", repo)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"words": 3, "lines": 1, "chars": 5}
    result = invoke("run", "word-count", "-", "--repo", repo, input='{"text": "x"}')
    assert json.loads(result.stdout)["words"] == 1
    result = invoke("run", "word-count", '{"text": 1}', "--repo", repo)
    assert result.exit_code == 1
    assert re.match(r"Error: word-count@[0-9a-f]{7}: invalid_input: text: 1 is not of type 'string'", result.output)
    result = invoke("run", "word-count", "{nope", "--repo", repo, "--json")
    assert result.exit_code == 1
    envelope = json.loads(result.stdout)
    assert envelope["ok"] is False and envelope["error"]["kind"] == "invalid_input"
    assert set(envelope) == {"ok", "output", "error", "tool", "fingerprint", "wall_ms", "fuel"}
    result = invoke("describe", "word-count", "--repo", repo, "--json")
    described = json.loads(result.stdout)
    assert described["tool"] == "word-count" and len(described["cases"]) >= 5
    assert described["build"]["fingerprint"] == described["fingerprint"]
    text = invoke("describe", "word-count", "--repo", repo).stdout
    assert "input schema:" in text and "cases:" in text
    result = invoke("fork", "word-count", "line-count", "--repo", repo)
    assert result.exit_code == 0 and "ok    line-count@" in result.output
    result = invoke("fork", "word-count", "line-count", "--repo", repo)
    assert result.exit_code == 1 and "already exists" in result.output
    result = invoke("lineage", "line-count", "--repo", repo)
    assert "word-count@" in result.stdout and "└── line-count@" in result.stdout
    graph = json.loads(invoke("lineage", "word-count", "--repo", repo, "--format", "json").stdout)
    assert len(graph["edges"]) == 1
    listed = invoke("list", "--repo", repo).stdout
    assert "line-count" in listed and "slugify" in listed
    assert invoke("run", "no-such-tool", "{}", "--repo", repo).output.startswith("Error: no tool named")


@pytest.mark.slow
def test_limits_default_from_git_config_and_flags_override(small_rt: Runtime):
    repo = str(small_rt.repo.path)
    small_rt.repo.git.config["evogit.fuel"] = "1000"
    result = invoke("run", "word-count", '{"text": "a"}', "--repo", repo)
    assert result.exit_code == 1 and "out_of_fuel: used all 1000 fuel" in result.output
    assert invoke("run", "word-count", '{"text": "a"}', "--repo", repo, "--fuel", "100000000").exit_code == 0
    small_rt.repo.git.config["evogit.fuel"] = "lots"
    result = invoke("run", "word-count", '{"text": "a"}', "--repo", repo)
    assert result.exit_code == 1 and "git config evogit.fuel is 'lots'" in result.output


@pytest.mark.slow
def test_feedback_stats_log_replay(small_rt: Runtime):
    repo = str(small_rt.repo.path)
    assert invoke("run", "word-count", '{"text": "a b"}', "--repo", repo).exit_code == 0
    assert invoke("run", "word-count", '{"text": 1}', "--repo", repo).exit_code == 1
    result = invoke("feedback", "word-count", "--task", "count the words", "--solved", "--repo", repo)
    assert result.exit_code == 0 and "solved 'count the words'" in result.output
    stats = json.loads(invoke("stats", "word-count", "--repo", repo, "--json").stdout)
    (m,) = stats.values()
    assert m["runs"] == 2 and m["ok"] == 1 and m["errors"] == {"invalid_input": 1} and m["feedback_solved"] == 1
    assert m["builds_ok"] == 1 and m["cases"] >= 5
    text = invoke("stats", "--repo", repo).stdout
    assert "word-count@" in text and "slugify@" in text
    lines = invoke("log", "--repo", repo).stdout.splitlines()
    kinds = [line.split()[3] for line in lines]
    assert kinds.count("VersionCommitted") == 2 and kinds.count("BuildSucceeded") == 2
    assert kinds[-3:] == ["ToolRun", "ToolRun", "Feedback"]
    as_json = [json.loads(line) for line in invoke("log", "-n", "1", "--json", "--repo", repo).stdout.splitlines()]
    assert as_json[0]["type"] == "feedback"
    before = (small_rt.repo.state_dir / "projections.msgpack").read_bytes()
    result = invoke("replay", "--repo", repo, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["runs"] == 2
    assert (small_rt.repo.state_dir / "projections.msgpack").read_bytes() == before
    assert "feedback 1 solved" in invoke("describe", "word-count", "--repo", repo).stdout


@pytest.mark.slow
def test_stats_are_lineage_aware(small_rt: Runtime):
    repo = str(small_rt.repo.path)
    assert invoke("fork", "slugify", "slug-dash", "--repo", repo).exit_code == 0
    assert invoke("fork", "slug-dash", "slug-dash-2", "--repo", repo).exit_code == 0
    for text in ("A b", "C d", "E f"):
        assert invoke("run", "slug-dash-2", json.dumps({"text": text}), "--repo", repo).exit_code == 0
    assert invoke("run", "slug-dash", '{"text": "x"}', "--repo", repo).exit_code == 0
    assert invoke("run", "slug-dash", '{"text": 5}', "--repo", repo).exit_code == 1
    stats = json.loads(invoke("stats", "slugify", "--repo", repo, "--json").stdout)
    (m,) = stats.values()
    assert m["children"] == 1 and m["descendants"] == 2
    assert m["best_descendant"]["version"].startswith("slug-dash-2@") and m["best_descendant"]["runs"] == 3
    (child,) = json.loads(invoke("stats", "slug-dash", "--repo", repo, "--json").stdout).values()
    assert child["children"] == 1 and child["best_descendant"]["success_rate"] == 1.0
    text = invoke("stats", "slugify", "--repo", repo).stdout
    assert "1 children, 2 descendants; best slug-dash-2@" in text
