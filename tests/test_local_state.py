"""Local state that does not match its log is rebuilt or refused, never trusted; processes die with their command;
the runtime closes cleanly (issue 10, items 5 and 7). Each test is named after a finding, with the attack as input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from evogit import events as ev
from evogit.cli import main
from evogit.runtime import Runtime
from evogit.share import LOGS, PublishedLogLost, WriterConflict, publish_log

from .conftest import tool_files
from .test_log import _boundaries

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _runs(n: int, start: int = 0) -> list[ev.ToolRun]:
    return [ev.ToolRun(tool="t", fingerprint="ffff", input_sha256=str(i), ok=True, wall_ms=1.0)
            for i in range(start, start + n)]


@pytest.fixture
def logged(empty_rt: Runtime) -> Runtime:
    """A repository whose log holds 60 runs, projected and verified (as after a few commands: each opening of
    the log verifies what was appended before it)."""
    empty_rt.log.append(_runs(60))
    empty_rt.projections()
    empty_rt.close()
    Runtime(empty_rt.repo.path).close()
    rt = Runtime(empty_rt.repo.path)
    assert rt.log.repaired == 0
    return rt


def _log_path(rt: Runtime) -> Path:
    return rt.repo.state_dir / "log" / f"{rt.writer()}.log"


# -- the event log ---------------------------------------------------------------------------------------------
def test_a_torn_log_tail_is_reported_through_the_cli(logged: Runtime):
    repo = str(logged.repo.path)
    path = _log_path(logged)
    good = path.stat().st_size
    record = path.read_bytes()[:120]
    with open(path, "ab") as f:
        f.write(record[:57])  # a crash in the middle of an append
    result = invoke("log", "--repo", repo, "-n", "1")
    assert result.exit_code == 0, result.output
    assert f"Warning: {path}: cut a torn tail of 57 bytes at byte {good}" in result.stderr
    assert path.stat().st_size == good
    again = invoke("log", "--repo", repo, "-n", "1")
    assert again.exit_code == 0 and "torn" not in again.stderr  # reported once


@pytest.mark.parametrize("attack", ["zero the middle", "truncate and refill with zeros"])
def test_a_zeroed_log_is_a_clear_error_for_every_command_that_reads_it(logged: Runtime, attack: str):
    repo = str(logged.repo.path)
    path = _log_path(logged)
    data = bytearray(path.read_bytes())
    if attack == "zero the middle":
        data[len(data) // 3: len(data) // 2] = bytes(len(data) // 2 - len(data) // 3)
    else:
        data = bytearray(len(data))
    path.write_bytes(bytes(data))
    for command in (["log"], ["replay"], ["stats"], ["search", "count words"], ["log"]):
        (logged.repo.state_dir / "projections.msgpack").unlink(missing_ok=True)  # stats must read the log
        result = invoke(*command, "--repo", repo)
        assert result.exit_code == 1, (command, result.output)
        line = result.output.strip()
        assert line.count("\n") == 0 and line.startswith(f"Error: {path}: bad record at byte "), (command, line)
        assert "evogit replay --repair" in line
    assert path.read_bytes() == bytes(data)  # nothing cut, nothing appended after the damage


def test_replay_repair_keeps_every_readable_event_and_the_damaged_file(logged: Runtime):
    repo = str(logged.repo.path)
    path = _log_path(logged)
    data = bytearray(path.read_bytes())
    cut = _boundaries(bytes(data))
    data[cut[20] + 3: cut[22] - 5] = bytes(cut[22] - cut[20] - 8)  # damages records 20 and 21
    path.write_bytes(bytes(data))
    result = invoke("replay", "--repair", "--repo", repo, "--json")
    assert result.exit_code == 0, result.output
    assert "rewritten with 58 events" in result.stderr and "kept as" in result.stderr
    assert json.loads(result.stdout)["versions"] == 1
    assert (path.parent / f"{path.name}.damaged").read_bytes() == bytes(data)
    stats = json.loads(invoke("stats", "--repo", repo, "--json").stdout)
    assert stats["t@ffff"]["runs"] == 58
    rt = Runtime(repo)
    rt.log.append(_runs(1, 100))  # the log works again
    assert rt.stats()["t@ffff"].runs == 59
    assert invoke("replay", "--repair", "--repo", repo).stderr.count("rewritten") == 0  # nothing left to repair


def test_a_log_cut_short_under_a_newer_projections_snapshot_is_rebuilt_and_reported_once(logged: Runtime):
    repo = str(logged.repo.path)
    path = _log_path(logged)
    os.truncate(path, _boundaries(path.read_bytes())[10])
    Runtime(repo).log.append(_runs(5, 100))
    result = invoke("stats", "--repo", repo, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["t@ffff"]["runs"] == 15  # not 60, and the 5 new runs are counted
    assert "Warning:" in result.stderr and "projections.msgpack reflected events the log no longer holds" in result.stderr
    again = invoke("stats", "--repo", repo, "--json")
    assert json.loads(again.stdout)["t@ffff"]["runs"] == 15 and "Warning" not in again.stderr


def test_a_log_deleted_under_a_newer_projections_snapshot_is_rebuilt(logged: Runtime):
    repo = str(logged.repo.path)
    _log_path(logged).unlink()
    Runtime(repo).log.append(_runs(2, 100))
    result = invoke("stats", "--repo", repo, "--json")
    assert json.loads(result.stdout)["t@ffff"]["runs"] == 2 and "rebuilt from the log" in result.stderr


def test_a_log_cut_short_in_the_middle_of_a_record_is_damage_and_repair_keeps_the_rest(logged: Runtime):
    repo = str(logged.repo.path)
    path = _log_path(logged)
    os.truncate(path, _boundaries(path.read_bytes())[10] + 30)  # these bytes were verified: not a torn tail
    result = invoke("log", "--repo", repo)
    assert result.exit_code == 1 and "runs past the end of the file" in result.output
    assert invoke("replay", "--repair", "--repo", repo).exit_code == 0
    assert json.loads(invoke("stats", "--repo", repo, "--json").stdout)["t@ffff"]["runs"] == 10


# -- markers and caches ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("garbage", [b"", b"\xff\xfe not text", b"12 oops", b"-5"])
def test_a_garbage_log_ok_mark_is_treated_as_missing_and_reported(logged: Runtime, garbage: bytes):
    mark = logged.repo.state_dir / "log" / f"{logged.writer()}.ok"
    mark.write_bytes(garbage)
    result = invoke("log", "--repo", str(logged.repo.path), "-n", "1")
    assert result.exit_code == 0, result.output
    assert f"Warning: {mark} was unreadable" in result.stderr
    assert mark.read_text() == str(_log_path(logged).stat().st_size)  # rewritten: reported once
    assert "Warning" not in invoke("log", "--repo", str(logged.repo.path), "-n", "1").stderr


def _broken_tool(rt: Runtime) -> None:
    """A tool whose head fails at the package stage (no cargo needed): it leaves a build record."""
    files = tool_files("broken")
    files["build.rs"] = b"fn main() {}"
    assert not rt.commit("broken", files, "A tool with a build script").ok


@pytest.mark.parametrize("damage", ["truncated", "not json", "another shape", "empty"])
def test_a_truncated_build_record_is_treated_as_missing_and_reported_once(empty_rt: Runtime, damage: str):
    _broken_tool(empty_rt)
    (record,) = (empty_rt.repo.state_dir / "builds").glob("*.json")
    data = record.read_bytes()
    record.write_bytes({"truncated": data[: len(data) // 2], "not json": b"\x00\x01garbage",
                        "another shape": b'{"tool": 5}', "empty": b""}[damage])
    repo = str(empty_rt.repo.path)
    result = invoke("list", "--repo", repo)
    assert result.exit_code == 0, result.output
    assert f"Warning: {record} was unreadable: treated as missing" in result.stderr
    assert "broken" in result.stdout and "[head unbuilt]" in result.stdout
    again = invoke("list", "--repo", repo)
    assert again.exit_code == 0 and "Warning" not in again.stderr
    result = invoke("build", "broken", "--repo", repo)
    assert result.exit_code == 1 and "build.rs" in result.output  # the true failure, recorded again
    assert "[head failed]" in invoke("list", "--repo", repo).stdout


@pytest.mark.parametrize("garbage", [b"[1, 2]", b"{\"refs/evogit/logs/x\": 5}", b"\xff\xff", b"{"])
def test_a_garbage_imported_json_is_treated_as_missing_and_reported_once(logged: Runtime, tmp_path: Path,
                                                                         garbage: bytes, caplog):
    other, _ = Runtime.init(tmp_path / "other", starter=False)
    other.log.append(_runs(3, 500))
    publish_log(other.repo, other.log.dir, other.log.writer)
    subprocess.run(["git", "-C", str(logged.repo.path), "fetch", "-q", str(other.repo.path), f"{LOGS}*:{LOGS}*"],
                   check=True)
    subprocess.run(["git", "-C", str(logged.repo.path), "config", "--add", "evogit.trustWriter", other.writer()],
                   check=True)  # its runs count here
    assert logged.stats()["t@ffff"].runs == 63
    seen = logged.repo.state_dir / "imported.json"
    seen.write_bytes(garbage)
    rt = Runtime(logged.repo.path)
    assert rt.stats()["t@ffff"].runs == 63  # counted once, not twice
    assert caplog.text.count("imported.json was unreadable") == 1
    assert isinstance(json.loads(seen.read_text()), dict)
    caplog.clear()
    Runtime(logged.repo.path).stats()
    assert "unreadable" not in caplog.text


# -- the published-log marker ----------------------------------------------------------------------------------
@pytest.mark.parametrize("garbage", [b"\x00\x9f\xff", b"not a commit", b"", b"0" * 40])
def test_a_garbage_published_marker_is_re_derived_not_blamed_on_another_machine(logged: Runtime, tmp_path: Path,
                                                                             garbage: bytes):
    repo = str(logged.repo.path)
    server = tmp_path / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", str(server)], check=True)
    assert invoke("push", "--repo", repo, str(server)).exit_code == 0
    marker = logged.repo.state_dir / f"published-{logged.writer()}"
    marker.write_bytes(garbage)
    Runtime(repo).log.append(_runs(2, 100))
    result = invoke("push", "--repo", repo, str(server))
    assert result.exit_code == 0, result.output
    assert "another machine" not in result.output and "1 event logs updated" in result.stdout
    assert f"Warning: {marker} was unreadable or out of date: re-derived" in result.stderr
    assert marker.read_text().split()[0] == str(logged.repo.git.references[LOGS + logged.writer()].target)
    again = invoke("push", "--repo", repo, str(server))
    assert again.exit_code == 0 and "Warning" not in again.output


def test_a_missing_published_marker_with_our_log_in_git_is_restored_silently(logged: Runtime):
    publish_log(logged.repo, logged.log.dir, logged.writer())
    (logged.repo.state_dir / f"published-{logged.writer()}").unlink()
    logged.log.append(_runs(1, 100))
    assert publish_log(logged.repo, logged.log.dir, logged.writer()) is not None


def test_another_machine_under_our_writer_id_is_still_a_writer_conflict(logged: Runtime, tmp_path: Path):
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    b.repo.git.config["evogit.writer"] = logged.writer()
    b.log.append(_runs(70, 1000))  # longer than ours, other bytes
    publish_log(b.repo, b.log.dir, b.log.writer)
    subprocess.run(["git", "-C", str(logged.repo.path), "fetch", "-q", str(b.repo.path), f"{LOGS}*:{LOGS}*"],
                   check=True)
    (logged.repo.state_dir / f"published-{logged.writer()}").write_bytes(b"garbage")
    with pytest.raises(WriterConflict, match="another repository publishes under writer id"):
        publish_log(logged.repo, logged.log.dir, logged.writer())


def test_a_published_log_cut_short_is_refused_at_push_and_repair_restores_it_from_git(logged: Runtime):
    repo = str(logged.repo.path)
    publish_log(logged.repo, logged.log.dir, logged.writer())
    logged.close()
    path = _log_path(logged)
    published = path.read_bytes()
    os.truncate(path, _boundaries(published)[10])
    Runtime(repo).log.append(_runs(4, 100))
    rt = Runtime(repo)
    with pytest.raises(PublishedLogLost, match="replay --repair"):
        publish_log(rt.repo, rt.log.dir, rt.writer())
    rt.close()
    result = invoke("replay", "--repair", "--repo", repo, "--json")
    assert result.exit_code == 0 and f"{len(published)} bytes from git" in result.stderr
    assert path.read_bytes().startswith(published)
    rt = Runtime(repo)
    assert rt.stats()["t@ffff"].runs == 64  # the 60 published and the 4 written after the cut
    assert publish_log(rt.repo, rt.log.dir, rt.writer()) is not None


# -- processes -------------------------------------------------------------------------------------------------
def _group_alive(marker: str) -> list[str]:
    """Command lines of live (non-zombie) processes that mention `marker`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z" and str(os.getpid()) != entry.name:
            out.append(cmd)
    return out


def test_sigkill_of_push_leaves_no_git_running_and_an_immediate_retry_works(logged: Runtime, tmp_path: Path):
    server = tmp_path / "slow-remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(server)], check=True)
    flag, started = tmp_path / "slow", tmp_path / "hook-started"
    hook = server / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ncat >/dev/null\ntouch {started}\nif [ -e {flag} ]; then sleep 60; fi\n")
    hook.chmod(0o755)
    flag.touch()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    push = subprocess.Popen([sys.executable, "-m", "evogit", "push", "--repo", str(logged.repo.path), str(server)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), push.communicate()
    assert any("receive-pack" in c for c in _group_alive(str(server)))
    push.send_signal(signal.SIGKILL)
    push.wait()
    deadline = time.monotonic() + 10
    while _group_alive(str(server)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group_alive(str(server)) == []  # no git push, receive-pack, hook or sleep left behind
    flag.unlink()
    result = invoke("push", "--repo", str(logged.repo.path), str(server))
    assert result.exit_code == 0, result.output
    assert "1 event logs updated" in result.output


def test_a_push_the_remote_refuses_gets_its_true_reason_and_no_pull_hint(logged: Runtime, tmp_path: Path):
    server = tmp_path / "strict.git"
    subprocess.run(["git", "init", "-q", "--bare", str(server)], check=True)
    hook = server / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'no pushes today' >&2\nexit 1\n")
    hook.chmod(0o755)
    result = invoke("push", "--repo", str(logged.repo.path), str(server))
    assert result.exit_code == 1 and "pre-receive hook declined" in result.output
    assert "evogit pull" not in result.output and "lacks" not in result.output


CHILD = """
import sys, threading
from evogit.runtime import Runtime
rt = Runtime(sys.argv[1])
def work():
    for i in range(150):
        assert rt.run("word-count", b'{"text": "a b %d"}' % i).ok
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
if sys.argv[2] == "close":
    with rt:
        pass
"""


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["close", "exit"])
def test_four_processes_using_the_runtime_exit_without_an_abort(small_rt: Runtime, ending: str):
    """Before Runtime.close() and its exit hook, about a third of such exits aborted in a wasmtime thread."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    small_rt.run("word-count", b'{"text": "warm the module cache"}')
    for _ in range(4):
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(small_rt.repo.path), ending], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0 and b"panicked" not in err, err.decode(errors="replace")[-2000:]
    runs = small_rt.stats("word-count")
    assert sum(m.runs for m in runs.values()) == 1 + 16 * 300


@pytest.mark.slow
def test_a_closed_runtime_releases_its_log_and_works_again(small_rt: Runtime):
    path = small_rt.repo.path
    with Runtime(path) as rt:
        assert rt.run("word-count", b'{"text": "x"}').ok
        log = rt.log
    assert log._fd == -1  # closed (and synced)
    rt.close()  # twice is fine
    assert rt.run("word-count", b'{"text": "y"}').ok  # reopens what it needs
    rt.close()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["record", "wasm"])
def test_a_damaged_build_result_cache_is_rebuilt_not_read(tmp_path: Path, damage: str, caplog):
    import secrets

    files = tool_files("cache-victim", extra={"NOTES.md": secrets.token_hex(8).encode()})  # a tree of its own
    a, _ = Runtime.init(tmp_path / "a", starter=False)
    first = a.commit("cache-victim", files, "Build it once")
    assert first.ok, first.error
    tree = str(a.repo.head("cache-victim").tree_id)
    record, wasm = a.builder.cache_paths(tree, sandboxed=True)
    if damage == "record":
        record.write_bytes(record.read_bytes()[:40])  # truncated
    else:
        wasm.write_bytes(b"\0asm another module")
    b, _ = Runtime.init(tmp_path / "b", starter=False)
    again = b.commit("cache-victim", files, "The same tree elsewhere")
    assert again.ok, again.error
    assert again.version.fingerprint == first.version.fingerprint
    assert ("was unreadable: treated as missing" if damage == "record" else "does not match its build record") in caplog.text
    assert json.loads(record.read_bytes())["ok"] is True  # rewritten whole
