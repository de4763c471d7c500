"""The whole starter library: every tool builds and passes its cases; the repository is clean and clonable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from evogit.runtime import Runtime

from .conftest import STARTER

pytestmark = pytest.mark.slow

EXPECTED = {
    "csv-to-json", "json-to-csv", "word-count", "word-frequency", "regex-extract", "regex-replace", "base64-encode",
    "base64-decode", "sha256-hash", "url-parse", "slugify", "json-pointer", "sort-lines", "dedupe-lines",
    "fuzzy-match", "date-diff", "unit-convert", "roman-numerals", "markdown-table", "case-convert",
    "extract-emails", "html-to-text", "number-stats", "json-flatten",
}


@pytest.fixture(scope="module")
def starter_repo(tmp_path_factory) -> Runtime:
    rt, outcomes = Runtime.init(tmp_path_factory.mktemp("starter") / "skills")
    failed = {o.tool: o.error for o in outcomes if not o.ok}
    assert not failed, failed
    return rt


def test_every_starter_tool_is_green(starter_repo: Runtime):
    assert {p.name for p in STARTER.iterdir()} == EXPECTED
    tools = starter_repo.list_tools()
    assert {t.name for t in tools} == EXPECTED
    assert all(t.head_status == "green" and t.versions == 1 for t in tools)


def test_every_starter_tool_meets_the_bar(starter_repo: Runtime):
    for name in sorted(EXPECTED):
        d = starter_repo.describe(name)
        assert len(d.cases) >= 5, name
        assert any(c.get("exit", 0) != 0 for c in d.cases), f"{name} has no error case"
        assert d.build["unit_tests"]["passed"] >= 3, name
        assert d.input_schema.get("type") == "object", name
        assert len(d.description) > 40, name


def test_fsck_graph_and_clone(starter_repo: Runtime, tmp_path: Path):
    path = starter_repo.repo.path
    fsck = subprocess.run(["git", "-C", str(path), "fsck", "--strict"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    graph = subprocess.run(["git", "-C", str(path), "log", "--graph", "--oneline", "--all"], capture_output=True,
                           text=True).stdout
    assert graph.count("Build ") == 24 and graph.count("Add ") == 24
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(path), str(clone)], check=True)
    tags = subprocess.run(["git", "-C", str(clone), "tag", "-l"], capture_output=True, text=True).stdout.split()
    assert len(tags) == 24
    for tag in tags:
        name, fp = tag.removeprefix("tools/").split("/")
        wasm = subprocess.run(["git", "-C", str(clone), "show", f"{tag}:build/tool.wasm"], capture_output=True).stdout
        import hashlib
        assert hashlib.sha256(wasm).hexdigest() == fp
        record = json.loads(subprocess.run(["git", "-C", str(clone), "show", f"{tag}:build/build.json"],
                                           capture_output=True, text=True).stdout)
        assert record["tool"] == name and record["ok"]


def test_examples_run(starter_repo: Runtime):
    run = starter_repo.run
    assert run("csv-to-json", b'{"csv": "a;b\\n1;2", "delimiter": ";"}').output == {"rows": [{"a": "1", "b": "2"}], "count": 1}
    assert run("roman-numerals", b'{"value": 1990}').output["roman"] == "MCMXC"
    assert run("slugify", b'{"text": "H\\u00e9llo W\\u00f6rld!"}').output == {"slug": "hello-world"}
    bad = run("date-diff", b'{"start": "2023-02-30", "end": "2023-03-01"}')
    assert not bad.ok and bad.error == "exit_code" and "start" in bad.detail


def test_search_finds_the_right_starter_tool(starter_repo: Runtime):
    queries = {
        "turn a comma separated file into json": "csv-to-json",
        "serialize these dicts to csv": "json-to-csv",
        "how many words are in this paragraph": "word-count",
        "what is 1994 in roman numerals": "roman-numerals",
        "strip html tags from a page": "html-to-text",
        "days between two dates": "date-diff",
        "extract value at path in json document": "json-pointer",
    }
    for query, want in queries.items():
        hits, embedder = starter_repo.search(query, 3)
        assert embedder.semantic
        assert hits[0].tool == want, (query, [h.tool for h in hits])
    # in the first three, for tasks worded further from the descriptions
    harder = {
        "which port does this address use": "url-parse", "get the query parameters from a link": "url-parse",
        "convert 5 pounds to kilograms": "unit-convert", "give me the mean and standard deviation": "number-stats",
        "find the closest string to my typo": "fuzzy-match", "remove repeated lines": "dedupe-lines",
        "make a table for my readme from these rows": "markdown-table", "replace every digit with X": "regex-replace",
        "pull all the email addresses out of this text": "extract-emails", "what's the sha256 checksum": "sha256-hash",
        "decode this base64 string": "base64-decode", "turn this title into a url slug": "slugify",
        "convert this variable name to snake case": "case-convert", "which words appear most often": "word-frequency",
        "sort these lines numerically": "sort-lines", "flatten nested json keys into dotted paths": "json-flatten",
        "get the fragment of a url": "url-parse", "how many rows are in this csv": "csv-to-json",
        # direction-sensitive: MiniLM alone ranks json-to-csv first (cosine 0.636 against 0.595), and so does the
        # fit now that it converges and keeps near the descriptions; the fast path does not reuse it (test_decide)
        "I have a spreadsheet exported as comma-separated values and need JSON": "csv-to-json",
    }
    for query, want in harder.items():
        assert want in [h.tool for h in starter_repo.search(query, 3)[0]], query


def test_search_learns_from_feedback_and_demotes_failures(starter_repo: Runtime):
    from evogit.events import Retrieved

    def searches() -> list[list[str]]:
        return [e.candidates for _, _, e in starter_repo.log.read() if isinstance(e, Retrieved) and e.candidates]

    task = "give me the gist of how long this essay is"
    searched_before = len(searches())
    before = [h.tool for h in starter_repo.search(task, 5)[0]]
    assert before[0] != "number-stats"
    for similar in ("how long is this essay roughly", "gist of the essay length", "how long is this article"):
        starter_repo.feedback("number-stats", similar, solved=True)
    after, _ = starter_repo.search(task, 5, explain=True)
    assert after[0].tool == "number-stats"
    assert after[0].why["closest_solved_task"]["task"] in ("how long is this essay roughly", "gist of the essay length")
    # number-stats then fails this very task twice: it is demoted below where it was.
    starter_repo.feedback("number-stats", task, solved=False)
    starter_repo.feedback("number-stats", task, solved=False)
    demoted, _ = starter_repo.search(task, 5, explain=True)
    assert demoted[0].tool != "number-stats"
    mine = [h for h in demoted if h.tool == "number-stats"]
    assert not mine or "demoted_for_failing" in mine[0].why
    # Every search is an event; the projections still replay to the same bytes.
    from evogit.projections import snapshot

    assert len(searches()) == searched_before + 3
    vectors = snapshot(starter_repo.embeddings().state)
    assert snapshot(starter_repo.projections().state) == snapshot(starter_repo.replay().state)
    assert snapshot(starter_repo.embeddings().state) == vectors  # rebuilt by the replay too
    # replay also threw the fitted model away and refitted it: the same ranking, the same scores
    assert len(list((starter_repo.repo.state_dir / "retrieval").glob("*.npy"))) == 1
    # the retrieval history: how often each version was found, and ranked first
    found = searches()
    for key, m in starter_repo.stats().items():
        assert m.retrieved == sum(key in c for c in found)
        assert m.retrieved_first == sum(c[:1] == [key] for c in found)
    (found,) = starter_repo.stats("number-stats").values()
    assert found.retrieved_first >= 1
    again, _ = starter_repo.search(task, 5, explain=True)
    assert [(h.key, h.score) for h in again] == [(h.key, h.score) for h in demoted]


def test_a_search_followed_by_a_run_records_the_choice(starter_repo: Runtime):
    from evogit.events import Retrieved

    def choices() -> list[Retrieved]:
        return [e for _, _, e in starter_repo.log.read() if isinstance(e, Retrieved) and e.choice]

    task = "how many words are in my cover letter"
    before = len(choices())
    hits, _ = starter_repo.search(task, 3)
    starter_repo.run("word-count", b'{"text": "Dear hiring manager"}', task=task)
    starter_repo.run("word-count", b'{"text": "Dear hiring manager, again"}', task=task)  # already answered
    (choice,) = choices()[before:]
    version = choice.choice
    assert choice.query == task and choice.candidates == [] and version.startswith("word-count@")
    assert starter_repo.stats(version)[version].chosen >= 1
    # a run with a task nobody searched for is not a choice; feedback after a fresh search is
    starter_repo.run("word-count", b'{"text": "x"}', task="a task never searched for")
    assert len(choices()) == before + 1
    starter_repo.search(task, 3)
    starter_repo.feedback("word-count", task, solved=True)
    assert [e.choice for e in choices()[before:]] == [version, version]
    assert sum(m.chosen for m in starter_repo.stats().values()) == len(choices())


def test_only_newly_solved_tasks_cost_a_refit(starter_repo: Runtime):
    fits = starter_repo.repo.state_dir / "retrieval"
    task = "strip the markup from this web page"
    assert starter_repo.search(task, 3)[0][0].tool == "html-to-text"
    (fitted,) = fits.glob("*.npy")
    # runs and failures change the ranking (priors, demotion) at query time, without a refit
    starter_repo.run("html-to-text", b'{"html": "<p>hi</p>"}')
    starter_repo.feedback("html-to-text", task, solved=False)
    starter_repo.feedback("html-to-text", task, solved=False)
    hits, _ = starter_repo.search(task, 3, explain=True)
    assert list(fits.glob("*.npy")) == [fitted]
    assert hits[0].tool != "html-to-text"
    assert all("demoted_for_failing" in h.why for h in hits if h.tool == "html-to-text")
    # a newly solved task is learnt: one new fit replaces the old
    starter_repo.feedback("html-to-text", "remove the tags from this newsletter", solved=True)
    starter_repo.search(task, 3)
    (refitted,) = fits.glob("*.npy")
    assert refitted != fitted


def test_search_cli_and_lexical_fallback(starter_repo: Runtime, monkeypatch):
    from click.testing import CliRunner

    from evogit import embed
    from evogit.cli import main

    repo = str(starter_repo.repo.path)
    result = CliRunner().invoke(main, ["search", "hash a string with sha256", "-k", "2", "--repo", repo, "--json"])
    data = json.loads(result.stdout)
    assert data["semantic"] is True and data["hits"][0]["tool"] == "sha256-hash" and len(data["hits"]) == 2
    monkeypatch.setenv("EVOGIT_EMBEDDER", "lexical")
    embed.default_embedder.cache_clear()
    try:
        result = CliRunner().invoke(main, ["search", "sha256 hash", "--repo", repo])
        assert result.output.startswith("(lexical fallback")
        assert "sha256-hash@" in result.output.splitlines()[1]
    finally:
        embed.default_embedder.cache_clear()
    assert CliRunner().invoke(main, ["search", " ", "--repo", repo]).exit_code == 1


def test_a_remote_embedder_keeps_its_vectors_apart(starter_repo: Runtime, embeddings_server, monkeypatch):
    """EVOGIT_EMBEDDER=openai:<model> embeds through an OpenAI-compatible endpoint; its vectors are stored
    under its own model id, never mixed with MiniLM's, and the MiniLM index is still there afterwards."""
    from evogit import embed

    url, seen = embeddings_server
    starter_repo.search("count the words", 3)  # MiniLM vectors exist
    monkeypatch.setenv("EVOGIT_EMBEDDER", "openai:test-embed")
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    embed.default_embedder.cache_clear()
    try:
        hits, embedder = Runtime(starter_repo.repo.path).search("count the words", 3)
    finally:
        monkeypatch.delenv("EVOGIT_EMBEDDER")
        embed.default_embedder.cache_clear()
    assert embedder.model_id == "openai:test-embed" and len(hits) == 3 and seen
    vectors = starter_repo.embeddings().state.vectors
    minilm = embed.MiniLM.model_id
    assert {len(v.vector) for v in vectors["openai:test-embed"].values()} == {8}
    assert {len(v.vector) for v in vectors[minilm].values()} == {384}
    assert vectors["openai:test-embed"].keys() == vectors[minilm].keys()  # every tool, once per model
    assert starter_repo.search("count the words", 3)[1].model_id == minilm  # back to MiniLM


def test_task_vectors_travel_as_events(starter_repo: Runtime, monkeypatch):
    """Tasks a tool solved are embedded once, logged as Embedded events (tool ""), and reused from the
    projections: with the local vector cache gone, a search embeds nothing but its query."""
    import shutil

    from evogit.embed import default_embedder
    from evogit.events import Embedded

    starter_repo.feedback("word-count", "tally the words in my essay", solved=True)
    starter_repo.search("count words", 3)
    logged = [e for _, _, e in starter_repo.log.read() if isinstance(e, Embedded) and not e.tool]
    assert "tally the words in my essay" in {e.text for e in logged}
    assert len({e.id for e in logged}) == len(logged)  # one fact per task and model

    shutil.rmtree(starter_repo.repo.state_dir / "vectors")
    embedder = default_embedder()
    seen: list[list[str]] = []
    real = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda texts, *a, **k: seen.append(list(texts)) or real(texts, *a, **k))
    fresh = Runtime(starter_repo.repo.path)
    hits, _ = fresh.search("how many words does my essay have", 3)
    assert seen == [["how many words does my essay have"]] and hits[0].tool == "word-count"


def test_demand_comes_from_the_search_log(starter_repo: Runtime):
    """Once DEMAND_EVERY searches are logged, what they asked for (estimated, since a search does not say which
    tool was right) lifts the tools in demand a little; the estimate is a function of the log: replay gives it
    back, and it is cached between searches."""
    from evogit.projections import task_key
    from evogit.retrieval import DEMAND_EVERY

    fits = starter_repo.repo.state_dir / "retrieval"
    searched = sum(1 for s in starter_repo.projections().state.searches.values() if s.text)
    # at least DEMAND_EVERY of them, and no re-estimate due in the next few searches (10 past a multiple)
    for i in range(DEMAND_EVERY + (10 - searched) % DEMAND_EVERY):
        starter_repo.search(f"encode attachment {i} as base64 for the email", 1)
    hits, _ = starter_repo.search("encode this text as base64", 24, explain=True)
    demand = {h.tool: h.why["demand"] for h in hits}
    assert max(demand, key=lambda tool: demand[tool]["share_of_searches"]) == "base64-encode"
    assert demand["base64-encode"]["boost"] > 0 > demand["roman-numerals"]["boost"]
    assert hits[0].tool == "base64-encode"
    (estimate,) = fits.glob("*.demand")

    starter_repo.replay()
    again, _ = Runtime(starter_repo.repo.path).search("encode this text as base64", 24, explain=True)
    assert {h.tool: h.why["demand"] for h in again} == demand
    assert list(fits.glob("*.demand")) == [estimate]  # the same name: the same window and fit
    searches = starter_repo.projections().state.searches
    assert searches[task_key("encode attachment 3 as base64 for the email")].text.startswith("encode attachment 3")


def test_a_runtime_keeps_its_projections_and_sees_what_others_append(starter_repo: Runtime):
    """A long-lived runtime (the worker, the control plane) keeps its projections in memory and reads only the
    events appended since, by itself or by any other process."""
    assert starter_repo.projections() is starter_repo.projections()
    (key,) = starter_repo.stats("word-count")
    before = starter_repo.stats("word-count")[key]
    other = Runtime(starter_repo.repo.path)
    other.feedback("word-count", "how long is this speech in words", solved=True)
    other.run("word-count", b'{"text": "one two"}')
    after = starter_repo.stats("word-count")[key]
    assert after.feedback_solved == before.feedback_solved + 1 and after.runs == before.runs + 1
    hits, _ = starter_repo.search("how long is this speech in words", 1, explain=True)
    assert hits[0].tool == "word-count" and hits[0].why["closest_solved_task"]["similarity"] > 0.99
    for _ in range(3):  # every run changes the ranking's inputs; the runtime holds on to the current model only
        starter_repo.run("word-count", b'{"text": "one two"}')
        starter_repo.search("how long is this speech in words", 1)
    assert len(starter_repo.searching._models) == 1
