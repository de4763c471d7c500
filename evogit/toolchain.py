"""The Rust → wasm32-wasi toolchain: detect it, and compile a tool package offline into a shared target dir.

Detection order: $EVOGIT_CARGO/$EVOGIT_RUSTC; Debian's /usr/bin/cargo + /usr/bin/rustc with the wasm32-wasi
std; any rustc on PATH whose sysroot has wasm32-wasip1 or wasm32-wasi. Crates always come from Debian's
vendored registry, offline. Builds on one machine are serialised by a lock on the shared target dir.
"""

from __future__ import annotations

import fcntl
import functools
import glob
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildFailed, ToolchainMissing
from .userstate import cache_root

REGISTRY = "/usr/share/cargo/registry"
COMPILE_TIMEOUT = 600  # seconds for one cargo invocation
CARGO_CONFIG = f"""\
[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "{REGISTRY}"
[net]
offline = true
"""
#: Bump when the build pipeline changes what it produces or checks: it keys the build-result cache.
BUILD_RULES = "3"
#: Profile settings evogit imposes (env beats Cargo.toml): small, stripped, deterministic release builds.
PROFILE_ENV = {
    "CARGO_PROFILE_RELEASE_STRIP": "symbols",
    "CARGO_PROFILE_RELEASE_DEBUG": "false",
    "CARGO_PROFILE_RELEASE_INCREMENTAL": "false",
    "CARGO_PROFILE_RELEASE_PANIC": "abort",
}


@dataclass(frozen=True)
class Toolchain:
    cargo: str
    rustc: str
    target: str
    rustc_version: str
    cargo_version: str

    @property
    def key(self) -> str:
        """Identifies everything that decides a build's output (used to key the build cache)."""
        text = "\n".join([BUILD_RULES, self.rustc_version, self.cargo_version, self.target, json.dumps(PROFILE_ENV, sort_keys=True)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, str]:
        return {"rustc": self.rustc_version, "cargo": self.cargo_version, "target": self.target}


def _version(exe: str, *args: str) -> str:
    return subprocess.run([exe, *args], capture_output=True, text=True, check=True).stdout.strip()


def _wasi_target(rustc: str) -> str | None:
    try:
        sysroot = _version(rustc, "--print", "sysroot")
    except (OSError, subprocess.CalledProcessError):
        return None
    for target in ("wasm32-wasip1", "wasm32-wasi"):
        if os.path.isdir(os.path.join(sysroot, "lib", "rustlib", target, "lib")):
            return target
    return None


@functools.cache
def detect() -> Toolchain:
    """Find a cargo/rustc pair that can build wasm32-wasi(p1) offline."""
    candidates: list[tuple[str, str]] = []
    if os.environ.get("EVOGIT_CARGO") or os.environ.get("EVOGIT_RUSTC"):
        candidates.append((os.environ.get("EVOGIT_CARGO", "cargo"), os.environ.get("EVOGIT_RUSTC", "rustc")))
    candidates.append(("/usr/bin/cargo", "/usr/bin/rustc"))
    if shutil.which("cargo") and shutil.which("rustc"):
        candidates.append((shutil.which("cargo") or "cargo", shutil.which("rustc") or "rustc"))
    for cargo, rustc in candidates:
        if not (shutil.which(cargo) and shutil.which(rustc)):
            continue
        target = _wasi_target(rustc)
        if target:
            return Toolchain(cargo, rustc, target, _version(rustc, "-V"), _version(cargo, "-V"))
    raise ToolchainMissing(
        "no Rust toolchain with a wasm32-wasi target found; run scripts/setup "
        "(installs Debian's rustc, cargo, libstd-rust-dev-wasm32 and lld)"
    )


@dataclass
class Artifacts:
    wasm: bytes
    test_wasms: list[bytes]
    log: str


class Compiler:
    """Compiles package directories with one toolchain into a shared, locked target dir."""

    def __init__(self, toolchain: Toolchain | None = None, cache: Path | None = None):
        self.toolchain = toolchain or detect()
        self.cache = cache or cache_root()
        self.target_dir = self.cache / "target"
        self.cargo_home = self.cache / "cargo-home"

    def _env(self) -> dict[str, str]:
        self.cargo_home.mkdir(parents=True, exist_ok=True)
        config = self.cargo_home / "config.toml"
        if not config.exists() or config.read_text() != CARGO_CONFIG:
            config.write_text(CARGO_CONFIG)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CARGO_", "RUST"))}
        env.update(PROFILE_ENV)
        env.update(
            CARGO_HOME=str(self.cargo_home),
            CARGO_TARGET_DIR=str(self.target_dir),
            RUSTC=self.toolchain.rustc,
            CARGO_TERM_COLOR="never",
        )
        if os.environ.get("RUSTUP_HOME"):
            env["RUSTUP_HOME"] = os.environ["RUSTUP_HOME"]
        return env

    def compile(self, package_dir: Path) -> Artifacts:
        """Build the tool and its unit-test harness for WASI. Raises BuildFailed with the compiler's output."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(self.cache / "build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # Every tool is package "tool": forget the previous one so cargo never trusts stale mtimes.
            out = self.target_dir / self.toolchain.target / "release"
            for stale in glob.glob(str(out / ".fingerprint" / "tool-*")):
                shutil.rmtree(stale, ignore_errors=True)
            argv = [self.toolchain.cargo, "build", "--release", "--offline", "--target", self.toolchain.target,
                    "--bins", "--tests", "--message-format=json-render-diagnostics"]
            try:
                proc = subprocess.run(argv, cwd=package_dir, env=self._env(), capture_output=True, text=True,
                                      timeout=COMPILE_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise BuildFailed(f"compilation took longer than {COMPILE_TIMEOUT} s") from None
            if proc.returncode != 0:
                raise BuildFailed("compilation failed:\n" + _tail(proc.stderr, 60))
            wasm: bytes | None = None
            tests: list[bytes] = []
            for line in proc.stdout.splitlines():
                msg = json.loads(line)
                if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
                    continue
                if "path+file" not in msg["package_id"]:
                    continue  # a dependency, not the tool itself
                data = Path(msg["executable"]).read_bytes()
                if msg["profile"]["test"]:
                    tests.append(data)
                elif msg["target"]["name"] == "tool":
                    wasm = data
            if wasm is None:
                raise BuildFailed("compilation produced no tool.wasm (is there a src/main.rs with fn main?)")
            return Artifacts(wasm, tests, proc.stderr)


def _tail(text: str, lines: int) -> str:
    kept = [ln for ln in text.strip().splitlines() if not ln.strip().startswith(("Compiling ", "Finished "))]
    return "\n".join(kept[-lines:])
