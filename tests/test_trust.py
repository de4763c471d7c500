"""Trust (issue 17): nothing that arrives from a hub, and nothing a model does inside a solve, silently changes
what a tool does. Each test is named after a finding, with the attack as its input."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from evogit import events as ev
from evogit.cli import main
from evogit.contract import Contract
from evogit.errors import EvogitError, InvalidInput, InvalidPackage
from evogit.llm.config import ModelConfig
from evogit.log import FileLog
from evogit.manifest import check_cargo_toml, parse_manifest
from evogit.runtime import Runtime
from evogit.share import publish_log
from evogit.verify import supersedes

from .conftest import tool_files
from .forge import git

pytestmark = pytest.mark.slow


def forged_log(rt: Runtime, tmp_path: Path, writer: str, events: list[ev.AnyEvent]) -> None:
    """A log of `writer` arrived in `rt`'s repository as a pull brings one: its ref, as a hub would hand it on."""
    log = FileLog(tmp_path / f"forge-{writer}", writer)
    log.append(events)
    log.close()
    publish_log(rt.repo, log.dir, writer)
    git(rt.repo.path, "update-ref", f"refs/evogit/remotes/hub/logs/{writer}", f"refs/evogit/logs/{writer}")
    git(rt.repo.path, "update-ref", "-d", f"refs/evogit/logs/{writer}")


def poison(tool: str, fp: str, tasks: list[str], n: int = 50) -> list[ev.AnyEvent]:
    """What the hub attacker pushed: "solved" feedback and ok runs crediting `tool` with other tools' tasks."""
    out: list[ev.AnyEvent] = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        out.append(ev.Feedback(tool=tool, fingerprint=fp, task=task, solved=True))
        out.append(ev.ToolRun(tool=tool, fingerprint=fp, input_sha256="0" * 64, ok=True, task=task, wall_ms=1.0))
    return out


def test_a_forged_log_never_moves_the_fast_path(small_rt: Runtime, tmp_path: Path):
    rt = small_rt
    slug = rt.repo.resolve("slugify")
    tasks = ["count the words in this text", "how many words are in my essay", "word count please"]
    forged_log(rt, tmp_path, "mallory", poison("slugify", slug.fingerprint, tasks))
    state = rt.projections().state
    key = f"slugify@{slug.fingerprint}"
    assert key not in state.served and (state.versions[key].runs, state.versions[key].solved) == (0, 0)
    claims = state.claims["mallory"]
    assert (claims.runs, claims.ok_runs, claims.feedback, claims.solved) == (50, 50, 50, 50)
    for task in tasks:  # word-count, not the poisoned tool, is what retrieval finds
        hits, _ = rt.search(task, 2)
        assert hits[0].key.startswith("word-count@"), (task, hits[0].key)
    out = CliRunner().invoke(main, ["stats", "--repo", str(rt.repo.path)])
    assert out.exit_code == 0 and "50 runs from unverified writers (mallory) are not counted" in out.output

    # trusting the writer (by name) counts its evidence, and the projection is rebuilt to say so
    git(rt.repo.path, "config", "--add", "evogit.trustWriter", "mallory")
    rt2 = Runtime(rt.repo.path)
    state = rt2.projections().state
    assert state.versions[key].runs == 50 and "mallory" not in state.claims
    assert rt2.replay().state.versions == rt2.projections().state.versions


@pytest.mark.parametrize("event", [
    ev.ToolRun(tool="word-count", fingerprint="f" * 64, input_sha256="0" * 64, ok=True, wall_ms=math.inf),
    ev.ToolRun(tool="word-count", fingerprint="f" * 64, input_sha256="0" * 64, ok=True, fuel=2**62),
    ev.ModelCalled(purpose="solve", model="m", outcome="ok", latency_ms=math.nan),
    ev.Retrieved(query="count words", model="m", candidates=["no-at-sign"]),
    ev.Solved(task="t", outcome="answered", confidence=7.0),
], ids=["wall-infinity", "fuel-2^62", "latency-nan", "version-without-at", "confidence-7"])
def test_one_forged_event_cannot_take_commands_down(small_rt: Runtime, tmp_path: Path, event: ev.AnyEvent):
    rt = small_rt
    git(rt.repo.path, "config", "--add", "evogit.trustWriter", "mallory")  # even from a trusted writer
    forged_log(rt, tmp_path, "mallory", [event, ev.ToolRun(tool="word-count", fingerprint="f" * 64,
                                                           input_sha256="0" * 64, ok=True, wall_ms=2.0)])
    state = rt.projections().state
    assert state.invalid == {"mallory": 1} and state.versions[f"word-count@{'f' * 64}"].runs == 1
    for args in (["stats"], ["stats", "--cost"], ["search", "count the words"], ["replay"], ["list"]):
        out = CliRunner().invoke(main, [*args, "--repo", str(rt.repo.path)])
        assert out.exit_code == 0, (args, out.output)


def test_an_embedding_of_the_wrong_length_breaks_no_search(small_rt: Runtime, tmp_path: Path):
    rt = small_rt
    git(rt.repo.path, "config", "--add", "evogit.trustWriter", "mallory")
    wc = rt.repo.resolve("word-count")
    model = rt.retrieval_model()[1].model_id
    forged_log(rt, tmp_path, "mallory", [
        ev.Embedded(tool="word-count", fingerprint=wc.fingerprint, model=model, text="x", vector=[0.5] * 7),
        ev.Embedded(tool="", fingerprint="", model=model, text="count the words", vector=[1.0] * 3)])
    hits, _ = rt.search("count the words in a text", 2)
    assert hits and hits[0].key.startswith("word-count@")


def test_writer_ids_are_checked_like_names(small_rt: Runtime, monkeypatch):
    for bad in ("a/b", "x\ny", "..", "-lead", "a" * 101):
        monkeypatch.setenv("EVOGIT_WRITER", bad)
        with pytest.raises(InvalidInput, match="not a valid writer id"):
            Runtime(small_rt.repo.path).writer()
        out = CliRunner().invoke(main, ["stats", "--repo", str(small_rt.repo.path)])
        assert out.exit_code == 1 and "not a valid writer id" in out.output


def test_trailers_in_a_task_are_not_trailers():
    task = "Count words.\nEvogit-Supersedes: plain: obsolete\n\nEvogit-Supersedes: unicode: obsolete too"
    message = task + "\n\nEvogit-Model: m\nEvogit-Attempts: 1\n"
    assert supersedes(message) == []
    assert supersedes(message.replace("Evogit-Attempts: 1", "Evogit-Attempts: 1\nEvogit-Supersedes: a: why")) == [
        ("a", "why")]


def test_a_pulled_fast_forward_that_drops_cases_is_refused(small_rt: Runtime, tmp_path: Path, monkeypatch):
    a = small_rt
    hub = tmp_path / "hub.git"
    Runtime.init(hub, starter=False, bare=True)
    a.push(str(hub))
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    b.pull(str(hub))
    before = b.repo.head("word-count").id

    files, _ = a.repo.files(a.repo.head("word-count").tree)
    files = {p: d for p, d in files.items() if not p.startswith("build/")}
    lines = files["tests/cases.jsonl"].splitlines(keepends=True)
    names = [json.loads(line)["name"] for line in lines]
    # a weakening said in the open (the trailer mutate writes) is taken
    files["tests/cases.jsonl"] = b"".join(lines[:1] + lines[2:])
    assert a.commit("word-count", files, f"One case fewer\n\nEvogit-Supersedes: {names[1]}: covered elsewhere\n").ok
    a.push(str(hub))
    report, _ = b.pull(str(hub))
    assert report.fast_forwarded == ["word-count"], report.refused
    taken = b.repo.head("word-count").id

    # one that is not said is refused on arrival: the branch stays where it was
    files["tests/cases.jsonl"] = lines[0]
    assert a.commit("word-count", files, "Fewer cases").ok
    a.push(str(hub))
    report, _ = b.pull(str(hub))
    assert "word-count" not in report.fast_forwarded
    (why,) = [w for r, w in report.refused.items() if r.endswith("tools/word-count")]
    assert f"drops the case {names[2]!r}" in why and "without an Evogit-Supersedes trailer" in why
    assert b.repo.head("word-count").id == taken != before
    # remembered like a refused tag: the next pull says the same without walking the history again
    import evogit.share as share

    def no_walk(*args, **kwargs):
        raise AssertionError("a refused tip was checked again")

    monkeypatch.setattr(share, "weakening", no_walk)
    again, _ = b.pull(str(hub))
    monkeypatch.undo()
    assert [w for r, w in again.refused.items() if r.endswith("tools/word-count")] == [why]
    # a task text cannot say it either: trailers are read from the message's last paragraph only
    files["README.md"] = b"x\n"
    forged = f"Fewer cases\nEvogit-Supersedes: {names[0]}: obsolete\n\nEvogit-Model: m\n"
    files["tests/cases.jsonl"] = b"".join(lines[1:2])
    assert supersedes(forged) == []


def _manifest(**schemas: object) -> bytes:
    base = {"name": "t", "description": "d", "input_schema": {"type": "object"}, "output_schema": {"type": "object"}}
    return json.dumps({**base, **schemas}).encode()


def test_schemas_cannot_reach_the_network():
    for ref in ("http://127.0.0.1:9/x.json", "file:///etc/passwd", "other.json#/a"):
        with pytest.raises(InvalidPackage, match="points outside the schema"):
            parse_manifest(_manifest(input_schema={"type": "object", "properties": {"a": {"$ref": ref}}}))
    local = {"$defs": {"n": {"type": "integer"}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}}
    contract = Contract(parse_manifest(_manifest(input_schema=local)))
    assert contract.input_problem({"a": 1}) is None and "not of type" in contract.input_problem({"a": "x"})
    # a version built before refs were refused: its ref is never fetched, and says so
    old = parse_manifest(_manifest(input_schema={"$ref": "http://127.0.0.1:9/x.json"}), check_schemas=False)
    assert "never resolved" in Contract(old).input_problem({})


def test_a_backtracking_pattern_runs_in_linear_time():
    manifest = parse_manifest(_manifest(input_schema={"type": "object", "properties": {
        "text": {"type": "string", "pattern": r"^(\w+\s?)*$"}}}))
    contract = Contract(manifest)
    t0 = time.monotonic()
    assert "does not match" in contract.input_problem({"text": "an ordinary sentence that ends with a bang" * 50 + "!"})
    assert time.monotonic() - t0 < 5  # Python's re: over a minute (a guard against a hang, not a speed goal)
    assert contract.input_problem({"text": "plain words"}) is None
    for bad in (r"(?=a)b", r"(a)\1"):
        with pytest.raises(InvalidPackage, match="not supported"):
            parse_manifest(_manifest(input_schema={"type": "object", "properties": {"a": {"pattern": bad}}}))
    with pytest.raises(InvalidPackage, match="not supported"):
        parse_manifest(_manifest(input_schema={"type": "object", "patternProperties": {"(?<=x)y": {}}}))


BASE = '[package]\nname = "tool"\nversion = "0.1.0"\nedition = "2021"\n'


@pytest.mark.parametrize("extra, why", [
    ("target = 5\n", "must be a table"),
    ('dependencies = "x"\n', "must be a table of crates"),
    ('[dev_dependencies]\nserde_derive = "1"\n', "'serde_derive' in [dev_dependencies] is not allowed"),
    ('[dev-dependencies]\nserde_json = { path = "/etc" }\n', "uses 'path'"),
    ('[dev_dependencies]\nserde_json = { git = "https://x" }\n', "uses 'git'"),
    ('[build_dependencies]\nserde_json = "1"\n', "not allowed"),
    ('[target.wasm32-wasi.build_dependencies]\nserde_json = "1"\n', "build-dependencies are not allowed"),
    ('[target.wasm32-wasi.dev_dependencies]\nrand = "1"\n', "'rand'"),
    ('[dependencies]\nserde_json = 1\n', "must be a version or a table"),
    ('[dependencies]\nserde_json = { version = "1", features = "derive" }\n', "must be a list of strings"),
    ('[dependencies]\nserde_json = { version = "1", registry-index = "x" }\n', "uses 'registry-index'"),
    ('[badges]\nx = 1\n', "[badges] is not allowed"),
    ("[lib]\npath = '/etc/passwd'\n", "[lib] is not allowed"),
])
def test_package_rules_parse_cargo_toml_strictly(extra: str, why: str):
    # a key before any table is a top-level one
    toml = extra + BASE if not extra.startswith("[") else BASE + extra
    with pytest.raises(InvalidPackage, match=re.escape(why)):
        check_cargo_toml(toml.encode())
    check_cargo_toml((BASE + '[dependencies]\nserde_json = "1"\nchrono = { version = "0.4", default-features = false, '
                             'features = ["std"] }\n').encode())


def test_a_model_timeout_must_be_finite_and_positive():
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(InvalidInput, match="positive seconds"):
            ModelConfig(model="m", timeout=bad)


# -- signing -----------------------------------------------------------------------------------------------------
def _key(tmp_path: Path, principal: str) -> tuple[Path, str]:
    key = tmp_path / f"{principal}-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(key)], check=True)
    return key, " ".join(key.with_suffix(".pub").read_text().split()[:2])


def _signs(rt: Runtime, key: Path, allowed: Path) -> None:
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", str(key)), ("gpg.ssh.allowedSignersFile", str(allowed))):
        git(rt.repo.path, "config", k, v)


def test_signed_logs_are_trusted_and_a_squatter_is_not(small_rt: Runtime, tmp_path: Path):
    a = small_rt
    hub = tmp_path / "hub.git"
    Runtime.init(hub, starter=False, bare=True)
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    key_a, pub_a = _key(tmp_path, a.writer())
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"{a.writer()} {pub_a}\n")
    _signs(a, key_a, allowed)
    git(b.repo.path, "config", "gpg.ssh.allowedSignersFile", str(allowed))

    a.run("word-count", b'{"text": "a b c"}', task="count the words in a sentence")
    a.push(str(hub))
    published = git(a.repo.path, "rev-parse", f"refs/evogit/logs/{a.writer()}").strip()
    assert "Good \"git\" signature" in git(a.repo.path, "verify-commit", published, check=False)

    report, _ = b.pull(str(hub))
    assert report.trusted == [a.writer()] and not report.claims
    assert sum(m.runs for m in b.stats("word-count").values()) == 1

    # a squatter pushes a log under a writer id whose key it does not have: kept apart, never counted
    forged_log(b, tmp_path, "carol", poison("word-count", b.repo.resolve("word-count").fingerprint, ["x"], 5))
    allowed.write_text(allowed.read_text() + f"carol {_key(tmp_path, 'carol-real')[1]}\n")
    state = Runtime(b.repo.path).projections().state
    assert state.claims["carol"].runs == 5 and sum(m.runs for m in state.versions.values()) == 1


def test_a_squatted_writer_id_gets_a_message_naming_what_to_do(small_rt: Runtime, tmp_path: Path):
    victim = small_rt
    hub = tmp_path / "hub.git"
    Runtime.init(hub, starter=False, bare=True)
    squatter, _ = Runtime.init(tmp_path / "squatter", starter=False)
    squatter.repo.git.config["evogit.writer"] = victim.writer()
    squatter.log.append([ev.Feedback(tool="word-count", fingerprint="f" * 64, task="t", solved=True)])
    squatter.push(str(hub))
    victim.run("word-count", b'{"text": "a"}')
    out = CliRunner().invoke(main, ["push", str(hub), "--repo", str(victim.repo.path)])
    assert out.exit_code == 1 and len(out.output.strip().splitlines()) == 1, out.output
    assert "did not write" in out.output and "git config evogit.writer NEW-ID" in out.output
    victim.repo.git.config["evogit.writer"] = "victim-2"
    again = Runtime(victim.repo.path)
    again.run("word-count", b'{"text": "b"}')
    assert "refs/evogit/logs/victim-2" in again.push(str(hub)).updated  # a new id, and the push goes through


def test_a_new_writer_id_keeps_this_machines_own_evidence_and_never_adopts_a_squatters(small_rt: Runtime,
                                                                                        tmp_path: Path):
    victim = small_rt
    hub = tmp_path / "hub.git"
    Runtime.init(hub, starter=False, bare=True)
    old_id = victim.writer()
    for _ in range(3):
        assert victim.run("word-count", b'{"text": "a b"}', task="count the words").ok
    # a squatter took the old id on the hub first, with "evidence" that extends the victim's log
    squatter, _ = Runtime.init(tmp_path / "squatter", starter=False)
    squatter.repo.git.config["evogit.writer"] = old_id
    squatter = Runtime(squatter.repo.path)
    wc = victim.repo.resolve("word-count")
    squatter.log.append([ev.ToolRun(tool="word-count", fingerprint=wc.fingerprint, input_sha256="0" * 64, ok=False)
                         for _ in range(40)])
    squatter.push(str(hub))
    with pytest.raises(EvogitError, match="did not write"):
        victim.push(str(hub))

    victim.repo.git.config["evogit.writer"] = "victim-2"  # what the message says to do
    again = Runtime(victim.repo.path)
    assert again.run("word-count", b'{"text": "c"}').ok
    assert "refs/evogit/logs/victim-2" in again.push(str(hub)).updated
    again.pull(str(hub))
    m = Runtime(victim.repo.path).projections().state.versions[f"word-count@{wc.fingerprint}"]
    assert (m.runs, m.ok) == (4, 4)  # its own 3 under the old id and 1 under the new; none of the squatter's 40
    assert Runtime(victim.repo.path).replay().state.versions[f"word-count@{wc.fingerprint}"].runs == 4


# -- signed version tags, the `signed` trust policy, a hub that requires signing ----------------------------------
def _signing_machine(tmp_path: Path, name: str, allowed: Path) -> tuple[Runtime, str]:
    """A machine with a signing key set up before it builds anything; its writer id is its principal."""
    rt, _ = Runtime.init(tmp_path / name, starter=False)
    key, pub = _key(tmp_path, name)
    _signs(rt, key, allowed)
    rt.repo.git.config["evogit.writer"] = name
    with allowed.open("a") as f:
        f.write(f"{name} {pub}\n")
    return Runtime(rt.repo.path), pub


def test_signed_version_tags_are_what_git_verify_tag_accepts(tmp_path: Path):
    allowed = tmp_path / "allowed_signers"
    a, _ = _signing_machine(tmp_path, "alice", allowed)
    v = a.commit("echo-tool", tool_files(), "Echo").version
    ref = f"tools/echo-tool/{v.fingerprint}"
    assert git(a.repo.path, "cat-file", "-t", ref).strip() == "tag"
    assert git(a.repo.path, "rev-parse", f"{ref}^{{commit}}").strip() == v.build_commit  # on the build commit
    said = subprocess.run(["git", "-C", str(a.repo.path), "verify-tag", ref], capture_output=True, text=True)
    assert said.returncode == 0 and 'Good "git" signature for alice' in said.stderr, said.stderr
    assert a.run("echo-tool", b'{"text": "hi"}').ok and a.describe("echo-tool").fingerprint == v.fingerprint
    (verdict,) = a.verify("echo-tool", signed=True)
    assert verdict.ok and verdict.signed_by == ["alice"]
    out = CliRunner().invoke(main, ["verify", "--signed", "--repo", str(a.repo.path)])
    assert out.exit_code == 0 and "signed by alice" in out.output
    git(a.repo.path, "fsck", "--strict")
    # the build commit itself is as deterministic as an unsigned one: a rebuild writes the very same commit
    assert a.verify("echo-tool", rebuild=True)[0].ok


def test_the_signed_policy_takes_signed_tags_without_a_rebuild_and_refuses_the_rest(tmp_path: Path, monkeypatch):
    allowed = tmp_path / "allowed_signers"
    alice, _ = _signing_machine(tmp_path, "alice", allowed)
    mallory, _ = _signing_machine(tmp_path, "mallory", tmp_path / "mallory_allowed")  # a key nobody allowed
    plain, _ = Runtime.init(tmp_path / "plain", starter=False)  # no key: unsigned tags
    hub = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    signed = alice.commit("echo-tool", tool_files(), "Echo").version
    alice.push(str(hub))
    for rt, tool in ((mallory, "shout-tool"), (plain, "plain-tool")):
        assert rt.commit(tool, tool_files(tool), "A tool").ok
        rt.push(str(hub))

    bob, _ = Runtime.init(tmp_path / "bob", starter=False)
    git(bob.repo.path, "config", "gpg.ssh.allowedSignersFile", str(allowed))
    bob.repo.git.config["evogit.trust"] = "signed"

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the signed policy rebuilt a version")

    monkeypatch.setattr(bob.sharing, "_rebuilt", no_rebuild)
    report, _ = bob.pull(str(hub))
    assert report.accepted_tags == [f"tools/echo-tool/{signed.fingerprint}"]
    reasons = {tag.split("/")[1]: why for tag, why in report.refused_tags.items()}
    assert "signed by no key of the allowed-signers file" in reasons["shout-tool"]
    assert "is not a signed tag" in reasons["plain-tool"]
    assert bob.run("echo-tool", b'{"text": "hi"}').ok


def test_a_hub_that_requires_signing_refuses_unsigned_tags_and_squatted_logs(tmp_path: Path):
    allowed = tmp_path / "allowed_signers"
    alice, _ = _signing_machine(tmp_path, "alice", allowed)
    mallory, pub = _signing_machine(tmp_path, "mallory", allowed)  # allowed, but only as mallory
    hub = tmp_path / "hub.git"
    out = CliRunner().invoke(main, ["init", str(hub), "--bare", "--no-starter", "--require-signed"])
    assert out.exit_code == 0, out.output
    git(hub, "config", "gpg.ssh.allowedSignersFile", str(allowed))
    alice.commit("echo-tool", tool_files(), "Echo")
    alice.run("echo-tool", b'{"text": "hi"}')
    assert "refs/evogit/logs/alice" in alice.push(str(hub)).updated

    # mallory writes under alice's id with its own key: refused, and alice's log on the hub is untouched
    mallory.repo.git.config["evogit.writer"] = "alice"
    squat = Runtime(mallory.repo.path)
    squat.log.append([ev.Feedback(tool="echo-tool", fingerprint="f" * 64, task="t", solved=True)])
    before = git(hub, "rev-parse", "refs/evogit/logs/alice").strip()
    said = CliRunner().invoke(main, ["push", str(hub), "--repo", str(squat.repo.path)])
    assert said.exit_code == 1 and "Traceback" not in said.output
    assert git(hub, "rev-parse", "refs/evogit/logs/alice").strip() == before

    # a machine with no key: its unsigned version tag is refused
    plain, _ = Runtime.init(tmp_path / "plain", starter=False)
    plain.commit("plain-tool", tool_files("plain-tool"), "A tool")
    with pytest.raises(EvogitError, match="is not a signed tag"):
        plain.push(str(hub))
    assert "plain-tool" not in git(hub, "tag", "-l")


def test_a_literal_signing_key_is_taken_as_git_takes_it(tmp_path: Path):
    """git allows `user.signingkey key::<public key>` (the private half in ssh-agent): builds must not fail."""
    from evogit.signing import signing_key

    _, pub = _key(tmp_path, "lit")
    rt, _ = Runtime.init(tmp_path / "r", starter=False)
    git(rt.repo.path, "config", "gpg.format", "ssh")
    git(rt.repo.path, "config", "user.signingkey", f"key::{pub}")
    path = signing_key(Runtime(rt.repo.path).repo.git.config)
    assert path is not None and path.read_text().strip() == pub


def test_push_skips_a_branch_whose_tree_is_nested_too_deeply(small_rt: Runtime):
    import pygit2

    from evogit.share import unsound_refs

    git_repo = small_rt.repo.git
    tree = git_repo.TreeBuilder().write()
    for _ in range(1200):
        tb = git_repo.TreeBuilder()
        tb.insert("d", tree, pygit2.enums.FileMode.TREE)
        tree = tb.write()
    sig = pygit2.Signature("a", "a@a")
    commit = git_repo.create_commit(None, sig, sig, "deep", tree, [])
    git_repo.references.create("refs/heads/tools/deep-tool", commit)
    found = unsound_refs(small_rt.repo)
    assert found["refs/heads/tools/deep-tool"] == "its history holds a tree nested too deeply to check"
    assert "refs/heads/tools/word-count" not in found


# -- end to end: a hostile hub between two honest machines that sign ------------------------------------------------
def _starter_files(name: str) -> dict[str, bytes]:
    from .conftest import STARTER

    root = STARTER / name
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_hostile_hub_between_two_honest_machines_that_sign(tmp_path: Path):
    """Alice and Bob sign and allow each other; whoever controls the hub writes to it at will: a forged log, a log
    under an allowed writer's id signed with another key, a fast-forward that drops cases, an unsigned and a wrongly
    signed tag. Honest evidence crosses and is used; forged evidence never fires the fast path; nothing breaks."""
    from evogit.agent.solve import Solver

    allowed = tmp_path / "allowed_signers"
    alice, _ = _signing_machine(tmp_path, "alice", allowed)
    bob, _ = _signing_machine(tmp_path, "bob", allowed)
    _, carol_pub = _key(tmp_path, "carol")  # carol is allowed; her key stays with her
    with allowed.open("a") as f:
        f.write(f"carol {carol_pub}\n")
    hub = tmp_path / "hub.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))  # a plain hub: it checks nothing, its owner writes anything

    for name in ("word-count", "slugify"):
        assert alice.commit(name, _starter_files(name), f"Import {name}").ok
    wc, slug = alice.repo.resolve("word-count"), alice.repo.resolve("slugify")
    tasks = ["count the words in this text", "how many words are in my essay", "word count please"]
    for task in tasks:
        assert alice.run("word-count", b'{"text": "one two three"}', task=task).ok
        alice.feedback("word-count", task, True)
    alice.push(str(hub))

    # the attacks, each pushed to the hub by a machine the attacker runs
    mallory, _ = _signing_machine(tmp_path, "mallory", tmp_path / "mallory_allowed")  # a key nobody allowed
    mallory.pull(str(hub))
    forged = poison("slugify", slug.fingerprint, tasks, 40)
    forged += [ev.ToolRun(tool="word-count", fingerprint=wc.fingerprint, input_sha256="0" * 64, ok=False, task=t)
               for t in tasks * 30]
    mallory.log.append(forged)
    files, _ = mallory.repo.files(mallory.repo.head("word-count").tree)
    files = {p: d for p, d in files.items() if not p.startswith("build/")}
    files["tests/cases.jsonl"] = files["tests/cases.jsonl"].splitlines(keepends=True)[0]  # 1 case, no supersession
    assert mallory.commit("word-count", files, "Simpler").ok
    assert mallory.commit("shout-tool", tool_files("shout-tool"), "A tool").ok  # a tag signed by mallory's key
    mallory.push(str(hub))
    squat, _ = _signing_machine(tmp_path, "squat", tmp_path / "squat_allowed")
    squat.repo.git.config["evogit.writer"] = "carol"  # an allowed writer's id, signed with another key
    Runtime(squat.repo.path).log.append(poison("slugify", slug.fingerprint, tasks, 40))
    Runtime(squat.repo.path).push(str(hub))
    plain, _ = Runtime.init(tmp_path / "plain", starter=False)  # no key at all: an unsigned tag
    plain.repo.git.config["evogit.writer"] = "plain"
    plain = Runtime(plain.repo.path)
    assert plain.commit("plain-tool", tool_files("plain-tool"), "A tool").ok
    plain.push(str(hub))

    for rt in (alice, bob):
        rt.repo.git.config["evogit.trust"] = "signed"
    bob = Runtime(bob.repo.path)
    report, _ = bob.pull(str(hub))
    assert sorted(report.accepted_tags) == sorted(f"tools/{v.name}/{v.fingerprint}" for v in (wc, slug))
    refused = {tag.split("/")[1]: why for tag, why in report.refused_tags.items()}
    assert "signed by no key of the allowed-signers file" in refused["shout-tool"]
    assert "is not a signed tag" in refused["plain-tool"]
    assert sorted(report.unbuilt) == ["plain-tool", "shout-tool"]  # their code is not made a version here
    assert not bob.repo.versions("shout-tool") and not bob.repo.versions("plain-tool")
    # the case-dropping commit is refused; alice's commits under it still arrive
    (why,) = [w for r, w in report.refused.items() if r.endswith("tools/word-count")]
    assert "without an Evogit-Supersedes trailer" in why and "taken up to" in why
    assert "word-count" in report.created and bob.repo.head("word-count").id == alice.repo.head("word-count").id
    assert report.trusted == ["alice"] and sorted(report.claims) == ["carol", "mallory", "plain"]

    state = bob.projections().state
    assert state.versions[f"word-count@{wc.fingerprint}"].runs == 3  # alice's runs, not mallory's 90 failures
    assert f"slugify@{slug.fingerprint}" not in state.served
    assert state.claims["mallory"].runs == 130 and state.claims["carol"].runs == 40
    solver = Solver(bob, None)
    for task in tasks:
        result = solver.solve(task, b'{"text": "a b c d e"}')
        assert result.decision is not None and result.decision.tool is not None, result
        assert result.decision.tool.startswith("word-count@"), (task, result.decision)
        if result.fast_path:
            assert isinstance(result.answer, dict) and result.answer["words"] == 5
    for args in (["list"], ["stats"], ["stats", "--cost"], ["search", "count the words"], ["describe", "word-count"],
                 ["replay"], ["verify", "--signed"], ["lineage", "word-count"]):
        out = CliRunner().invoke(main, [*args, "--repo", str(bob.repo.path)])
        assert out.exit_code == 0 and "Traceback" not in out.output, (args, out.output)
    assert bob.run("word-count", b'{"text": "a b"}').output["words"] == 2  # the 7-case head, not mallory's

    # bob's own evidence goes back through the same hub and alice uses it
    assert bob.run("slugify", b'{"text": "Hello World"}', task="make a url slug").ok
    bob_sees = Runtime(bob.repo.path).projections().state.versions
    bob.push(str(hub))
    report, _ = Runtime(alice.repo.path).pull(str(hub))
    assert report.trusted == ["bob"] and sorted(report.claims) == ["carol", "mallory", "plain"]
    state = Runtime(alice.repo.path).projections().state
    assert state.versions[f"slugify@{slug.fingerprint}"].runs == 1
    key = f"word-count@{wc.fingerprint}"
    assert state.versions[key].runs == bob_sees[key].runs > 3  # alice's 3 and bob's own, on both machines
    for path in (alice.repo.path, bob.repo.path, hub):
        git(path, "fsck", "--strict")
