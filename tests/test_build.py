"""The build pipeline with real cargo and wasmtime: green builds, failures that say why, determinism."""

from __future__ import annotations

import json
import subprocess

import pygit2
import pytest

from evogit.artifact import interface_digests, interface_of
from evogit.errors import InvalidVersion
from evogit.runtime import Runtime

from .conftest import tool_files

pytestmark = pytest.mark.slow


def _tags(rt: Runtime) -> list[str]:
    return sorted(r for r in rt.repo.git.references if r.startswith("refs/tags/"))


def test_green_build_writes_a_build_commit_and_tag(empty_rt: Runtime):
    outcome = empty_rt.commit("echo-tool", tool_files(), "Echo text back")
    assert outcome.ok, outcome.error
    v = outcome.version
    build = empty_rt.repo.commit(v.build_commit)
    assert [str(p) for p in build.parent_ids] == [v.source_commit]
    record = json.loads(empty_rt.repo.read(build, "build/build.json"))
    assert record["fingerprint"] == v.fingerprint and record["ok"] is True
    assert record["unit_tests"] == {"passed": 2, "failed": 0}
    assert [c["name"] for c in record["cases"]] == ["plain", "upper", "bad"]
    assert "time" not in json.dumps(record) and "host" not in json.dumps(record)
    assert build.author.name == "evogit-builder"
    assert build.commit_time == empty_rt.repo.commit(v.source_commit).commit_time
    assert _tags(empty_rt) == [f"refs/tags/tools/echo-tool/{v.fingerprint}"]
    run = empty_rt.run("echo-tool", b'{"text": "ok", "upper": true}')
    assert run.ok and run.output == {"text": "OK"}


@pytest.mark.parametrize(
    "files, stage, says",
    [
        (tool_files(main_rs="fn main() { let x: u32 = \"no\"; }"), "compile", "mismatched types"),
        (tool_files(main_rs="fn main() {}\n#[cfg(test)] mod t { #[test] fn boom() { assert_eq!(1, 2, \"one is not two\"); } }"),
         "unit_tests", "one is not two"),
        (tool_files(cases=[{"name": "wrong", "input": {"text": "a"}, "expect": {"text": "b"}}]),
         "cases", 'wrong: expected {"text": "b"} (exit 0), got {"text": "a"} (exit 0)'),
        (tool_files(cases=[{"name": "exit", "input": {"text": "a"}, "expect": {"text": "a"}, "exit": 1}]),
         "cases", '(exit 1), got {"text": "a"} (exit 0)'),
        (tool_files(cases=[{"name": "schema", "input": {"text": 5}, "expect": {"text": "5"}}]),
         "cases", "case input breaks input_schema"),
        (tool_files(cargo_extra='libc = "0.2"\n'), "package", "dependency 'libc' in [dependencies] is not allowed"),
        (tool_files(extra={"build.rs": b"fn main() {}"}), "package", "build scripts are not allowed"),
    ],
    ids=["compile-error", "unit-test-fails", "wrong-output", "wrong-exit", "case-breaks-schema", "bad-dependency",
         "build-script"],
)
def test_failing_build_tags_nothing_and_says_why(empty_rt: Runtime, files, stage, says):
    outcome = empty_rt.commit("echo-tool", files, "A broken version")
    assert not outcome.ok
    assert outcome.record.stage == stage
    assert says in outcome.error
    assert _tags(empty_rt) == []
    # The source commit is kept (nothing stored is lost), and the failure is remembered for `list`.
    assert empty_rt.repo.head("echo-tool").message == "A broken version"
    assert [t.head_status for t in empty_rt.list_tools()] == ["failed"]


def test_identical_rebuild_gives_identical_build_commit(empty_rt: Runtime):
    first = empty_rt.commit("echo-tool", tool_files(), "Echo")
    assert first.ok
    head = empty_rt.repo.head("echo-tool")
    again = empty_rt.builder.build(head, "echo-tool", force=True)  # really recompiles and retests
    assert again == first.version
    # Written a second time from scratch (tag deleted), the build commit is the same object.
    empty_rt.repo.git.references.delete(f"refs/tags/tools/echo-tool/{first.version.fingerprint}")
    rebuilt = empty_rt.builder.build(head, "echo-tool", force=True)
    assert rebuilt.build_commit == first.version.build_commit


def test_a_change_to_tool_json_alone_is_a_new_version_that_takes_effect(empty_rt: Runtime):
    """Found (issue 17): a mutation changing only the schema or description printed ok, but the binary was
    identical, so the old tag and the old schema stayed in force, and list and describe disagreed."""
    first = empty_rt.commit("echo-tool", tool_files(), "Echo")
    files = tool_files()
    manifest = json.loads(files["tool.json"])
    manifest["description"] = "Echo a short 'text' field back, optionally upper-cased."
    manifest["input_schema"]["properties"]["text"]["maxLength"] = 5
    files["tool.json"] = json.dumps(manifest, indent=2).encode()
    second = empty_rt.commit("echo-tool", files, "At most 5 characters")
    assert first.ok and second.ok, second.error
    assert second.version.fingerprint != first.version.fingerprint  # the interface is in the fingerprint
    wasm = empty_rt.repo.read(empty_rt.repo.commit(second.version.build_commit), "build/tool.wasm")
    assert interface_of(wasm) == interface_digests(files)
    assert empty_rt.describe("echo-tool").fingerprint == second.version.fingerprint
    assert empty_rt.describe("echo-tool").description.startswith("Echo a short")
    (summary,) = [t for t in empty_rt.list_tools() if t.name == "echo-tool"]
    assert summary.latest == second.version and summary.head_status == "green"
    refused = empty_rt.run("echo-tool", b'{"text": "too long"}')
    assert not refused.ok and refused.error == "invalid_input"  # the new schema is in force
    assert empty_rt.run(f"echo-tool@{first.version.fingerprint}", b'{"text": "too long"}').ok  # the old version
    assert [v.ok for v in empty_rt.verify("echo-tool")] == [True, True]
    # changing the cases alone is a new version too
    files["tests/cases.jsonl"] += b'{"name": "five", "input": {"text": "abcde"}, "expect": {"text": "abcde"}}\n'
    third = empty_rt.commit("echo-tool", files, "One more case")
    assert third.ok and third.version.fingerprint not in (first.version.fingerprint, second.version.fingerprint)


def test_a_forged_build_pairing_a_wasm_with_another_tool_json_is_refused(empty_rt: Runtime):
    from evogit.verify import contents

    a = empty_rt.commit("echo-tool", tool_files(), "Echo").version
    files = tool_files()
    files["tool.json"] = files["tool.json"].replace(b"optionally", b"maybe")
    b = empty_rt.commit("echo-tool", files, "Reword").version
    git = empty_rt.repo.git
    build_b = git[b.build_commit]
    wasm_a = git[git[a.build_commit].tree["build/tool.wasm"].id].data
    # b's source tree with a's wasm: an honest hash, a dishonest interface
    tb = git.TreeBuilder(build_b.tree)
    bb = git.TreeBuilder(build_b.tree["build"].peel(pygit2.Tree))
    bb.insert("tool.wasm", git.create_blob(wasm_a), pygit2.enums.FileMode.BLOB)
    record = json.loads(git[build_b.tree["build/build.json"].id].data)
    record.update(fingerprint=a.fingerprint, wasm_bytes=len(wasm_a))
    bb.insert("build.json", git.create_blob(json.dumps(record).encode()), pygit2.enums.FileMode.BLOB)
    tb.insert("build", bb.write(), pygit2.enums.FileMode.TREE)
    forged = git.create_commit(None, build_b.author, build_b.committer,
                               build_b.message.replace(b.fingerprint, a.fingerprint), tb.write(), [build_b.parent_ids[0]])
    with pytest.raises(InvalidVersion, match="tool.wasm was built for another tool.json") as e:
        contents(git, "echo-tool", a.fingerprint, git[forged])
    assert e.value.stage == "interface"


def test_identical_tree_is_not_recompiled(empty_rt: Runtime, monkeypatch):
    first = empty_rt.commit("echo-tool", tool_files(), "Echo")
    assert first.ok

    def no_compile(*args, **kwargs):
        raise AssertionError("an identical tree was compiled again")

    monkeypatch.setattr(empty_rt.builder.compiler, "compile", no_compile)
    # Same tree under another tool name needs a new tree (the name is in tool.json), so fork onto the same tree:
    # a revert commit on the same branch has the same tree as the first version.
    files = tool_files()
    files["src/main.rs"] += b"// comment\n"
    empty_rt.repo.commit_version("echo-tool", files, "Comment")  # built lazily below
    empty_rt.repo.commit_version("echo-tool", tool_files(), "Revert the comment")
    outcome = empty_rt.build(["echo-tool"])[0]
    assert outcome.ok and outcome.version.fingerprint == first.version.fingerprint
    assert empty_rt.build(["echo-tool"])[0].ok  # and a no-op the second time


def test_a_commit_with_an_intact_version_is_its_build_before_any_package_check(empty_rt: Runtime, monkeypatch):
    """Building a source commit that already has an intact version returns it without reading the package (the
    package checks cost ~30 ms a head: a pull that brought 100 heads with their versions spent 3.2 s on them); a
    version that is not intact is no answer."""
    from evogit import build

    first = empty_rt.commit("echo-tool", tool_files(), "Echo")
    assert first.ok and first.version is not None
    head = empty_rt.repo.head("echo-tool")

    def no_check(*args, **kwargs):
        raise AssertionError("the package of a built commit was checked again")

    with monkeypatch.context() as m:
        m.setattr(build, "check_package", no_check)
        assert empty_rt.builder.build(head, "echo-tool") == first.version
        assert empty_rt.builder.build(head) == first.version  # no branch: named by its tool.json
    # a tag of another build commit under that name (not intact: no cached verdict is taken for it) is no answer
    tag = f"refs/tags/tools/echo-tool/{first.version.fingerprint}"
    bogus = empty_rt.repo.git.create_commit(None, head.author, head.author, "bogus", head.tree_id, [head.id])
    empty_rt.repo.git.references.create(tag, bogus, force=True)
    assert empty_rt.builder.existing(head, "echo-tool") is None
    assert empty_rt.builder.build(head, "echo-tool").build_commit == first.version.build_commit  # rebuilt, retagged


def test_build_cli_reports_noop_and_failures(empty_rt: Runtime):
    from click.testing import CliRunner

    from evogit.cli import main

    assert empty_rt.commit("echo-tool", tool_files(), "Echo").ok
    runner = CliRunner()
    result = runner.invoke(main, ["build", "--repo", str(empty_rt.repo.path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["ok"] is True
    empty_rt.repo.commit_version("echo-tool", tool_files(main_rs="fn main() { nope }"), "Broken")
    result = runner.invoke(main, ["build", "--repo", str(empty_rt.repo.path)])
    assert result.exit_code == 1
    assert "Error: 1 of 1 builds failed" in result.output
    assert "cannot find value `nope`" in result.output


def test_git_fsck_is_clean(empty_rt: Runtime):
    assert empty_rt.commit("echo-tool", tool_files(), "Echo").ok
    fsck = subprocess.run(["git", "-C", str(empty_rt.repo.path), "fsck", "--strict"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def test_red_builds_carry_structured_diagnostics_and_the_first_failing_case(empty_rt: Runtime):
    broken = tool_files("echo-tool", main_rs=tool_files()["src/main.rs"].decode().replace("shout(t, upper)", "shout(txet, upper)"))
    outcome = empty_rt.commit("echo-tool", broken, "a typo")
    record = outcome.record
    assert record is not None and record.stage == "compile"
    (first, *_) = record.diagnostics
    assert (first.level, first.code, first.file) == ("error", "E0425", "src/main.rs") and first.line
    assert "txet" in first.message and "txet" in first.rendered and "^" in first.rendered
    assert "error[E0425]" in record.message and "src/main.rs:" in record.message
    wrong = tool_files("echo-tool", cases=[{"name": "plain", "input": {"text": "hi"}, "expect": {"text": "HI"}}])
    record = empty_rt.commit("echo-tool", wrong, "a wrong case").record
    assert record is not None and record.stage == "cases" and record.first_failure is not None
    f = record.first_failure
    assert (f.name, f.input, f.expected, f.actual, f.actual_exit) == ("plain", {"text": "hi"}, {"text": "HI"}, {"text": "hi"}, 0)
