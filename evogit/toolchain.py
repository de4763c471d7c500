"""The Rust → wasm32-wasi toolchain: detect it, and compile a tool package offline inside bubblewrap.

Detection order: $EVOGIT_CARGO/$EVOGIT_RUSTC; Debian's /usr/bin/cargo + /usr/bin/rustc with the wasm32-wasi
std; any rustc on PATH whose sysroot has wasm32-wasip1 or wasm32-wasi. Crates always come from Debian's
vendored registry, offline.

**The build sandbox.** cargo, and every rustc, linker and build script it starts, runs under bubblewrap
(`$EVOGIT_BWRAP`, else `bwrap` on PATH) and sees only the toolchain (/usr, /etc/alternatives — crates' build
scripts link with `cc` through it — and a toolchain's sysroot outside /usr, read-only), the package at /pkg,
a target dir at /target and a read-only CARGO_HOME at /cargo: no network, no host environment (only PATH,
CARGO_HOME, RUSTC, CARGO_TARGET_DIR and the profile variables), a hostname of its own, and cargo as pid 1 of
its own pid namespace (bubblewrap's own pid-1 helper would show the host's environment in /proc/1/environ).
It runs through `proc.run`: a wall-time limit for the whole build, an address-space limit for each process in
it, and an output cap (`BuildLimits`). The paths inside are fixed, so outputs do not depend on host paths.

**Target-dir slots.** Dependencies compile once into a shared target dir, but one build must not hold the
others up: the cache has up to `MAX_SLOTS` target dirs (`targets/<n>`), each with its own lock. A build takes
a free one; if all are busy it makes a new one, seeded by copying the warmest (valid because inside the
sandbox every slot is /target; cargo's fingerprints are copied first, so a unit copied while it was being
written is rebuilt, never trusted); past `MAX_SLOTS` it waits for one. A slow or hostile build holds its slot
only, and for at most its time limit.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from . import proc
from .errors import BuildFailed, BuildLimitExceeded, CompileFailed, ToolchainMissing
from .userstate import cache_root

REGISTRY = "/usr/share/cargo/registry"
CARGO_CONFIG = f"""\
[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "{REGISTRY}"
[net]
offline = true
"""
#: Bump when the build pipeline changes what it produces or checks: it keys the build-result cache.
BUILD_RULES = "4"
#: Profile settings evogit imposes (env beats Cargo.toml): small, stripped, deterministic release builds.
PROFILE_ENV = {
    "CARGO_PROFILE_RELEASE_STRIP": "symbols",
    "CARGO_PROFILE_RELEASE_DEBUG": "false",
    "CARGO_PROFILE_RELEASE_INCREMENTAL": "false",
    "CARGO_PROFILE_RELEASE_PANIC": "abort",
}
#: Target dirs kept at most; a build past that many at once waits for a free one.
MAX_SLOTS = 4
#: Where things are inside the sandbox.
PKG, TARGET, CARGO_HOME = "/pkg", "/target", "/cargo"
#: The environment of the bubblewrap process itself (what the host's environment is replaced with).
_BWRAP_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_SANDBOX_BASE = ["--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                 "--symlink", "usr/bin", "/bin", "--ro-bind", "/etc/alternatives", "/etc/alternatives"]
_SANDBOX_FLAGS = ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--unshare-all", "--hostname", "evogit",
                  "--die-with-parent", "--new-session", "--as-pid-1", "--clearenv"]
#: What rustc says when the address-space limit stops an allocation.
_OOM_SIGNS = ("memory allocation of", "out of memory", "Cannot allocate memory", "failed to allocate",
              "std::bad_alloc")
_QUOTED_SOURCE = re.compile(r"\s*\d*\s*\|")  # a diagnostic quoting the tool's source: not the compiler speaking


@dataclass(frozen=True)
class BuildLimits:
    """Limits of one compile: wall time of the whole cargo run, address space of each process in it (cargo,
    every rustc and linker), bytes of output (cargo's JSON messages and its stderr together)."""

    timeout: float = 600.0
    memory: int = 2 << 30
    max_output: int = 16 << 20


DEFAULT_BUILD_LIMITS = BuildLimits()


@dataclass(frozen=True)
class Toolchain:
    cargo: str
    rustc: str
    target: str
    rustc_version: str
    cargo_version: str
    sysroot: str = "/usr"

    @property
    def key(self) -> str:
        """Identifies everything that decides a build's output (used to key the build cache)."""
        text = "\n".join([BUILD_RULES, self.rustc_version, self.cargo_version, self.target, json.dumps(PROFILE_ENV, sort_keys=True)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, str]:
        return {"rustc": self.rustc_version, "cargo": self.cargo_version, "target": self.target}

    def executables(self) -> tuple[str, str]:
        """The real cargo and rustc binaries (a rustup proxy replaced by its toolchain's binary), which run
        with no environment to find a toolchain by."""
        found = []
        for exe in (self.cargo, self.rustc):
            real = os.path.realpath(shutil.which(exe) or exe)
            if os.path.basename(real).startswith("rustup"):
                real = os.path.join(self.sysroot, "bin", os.path.basename(exe))
            found.append(real)
        return found[0], found[1]

    def outside_usr(self) -> list[str]:
        """Directories the toolchain needs that /usr does not cover (bound read-only into the sandbox)."""
        dirs = [self.sysroot, *(os.path.dirname(e) for e in self.executables())]
        out: list[str] = []
        for d in map(os.path.realpath, dirs):
            if not any(d == o or d.startswith(o + "/") for o in ["/usr", *out]):
                out.append(d)
        return out


def _version(exe: str, *args: str) -> str:
    return subprocess.run([exe, *args], capture_output=True, text=True, check=True).stdout.strip()


def _sysroot(rustc: str) -> str | None:
    try:
        return _version(rustc, "--print", "sysroot")
    except (OSError, subprocess.CalledProcessError):
        return None


def _wasi_target(sysroot: str) -> str | None:
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
        sysroot = _sysroot(rustc)
        target = _wasi_target(sysroot) if sysroot else None
        if sysroot and target:
            return Toolchain(cargo, rustc, target, _version(rustc, "-V"), _version(cargo, "-V"), sysroot)
    raise ToolchainMissing(
        "no Rust toolchain with a wasm32-wasi target found; run scripts/setup "
        "(installs Debian's rustc, cargo, libstd-rust-dev-wasm32 and lld)"
    )


def bwrap() -> str:
    """The bubblewrap executable: $EVOGIT_BWRAP, else `bwrap` on PATH."""
    return os.environ.get("EVOGIT_BWRAP") or shutil.which("bwrap") or "bwrap"


def sandbox_problem() -> str | None:
    """Why builds cannot run under bubblewrap here, or None if they can (probed once per process)."""
    return _probe(bwrap())


def sandboxed(argv: list[str], exe: str | None = None) -> tuple[list[str], dict[str, str]]:
    """`argv` in an empty build sandbox (only the toolchain visible), and the environment to start it with."""
    return [exe or bwrap(), *_SANDBOX_BASE, *_SANDBOX_FLAGS, "--", *argv], dict(_BWRAP_ENV)


@functools.cache
def _probe(exe: str) -> str | None:
    try:
        argv, env = sandboxed(["/usr/bin/true"], exe)
        done = proc.run(argv, env=env, timeout=30)
    except OSError as e:
        return f"{exe}: {e.strerror or e}"
    if done.ok:
        return None
    said = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return said[-1] if said else f"{exe} exited with {done.returncode}"


@dataclass
class Artifacts:
    wasm: bytes
    test_wasms: list[bytes]
    log: str


class Compiler:
    """Compiles package directories with one toolchain into the shared target-dir slots."""

    def __init__(self, toolchain: Toolchain | None = None, cache: Path | None = None):
        self.toolchain = toolchain or detect()
        self.cache = cache or cache_root()
        self.slots = self.cache / "targets"
        self.cargo_home = self.cache / "cargo-home"

    def _cargo_home(self) -> Path:
        self.cargo_home.mkdir(parents=True, exist_ok=True)
        config = self.cargo_home / "config.toml"
        if not config.exists() or config.read_text() != CARGO_CONFIG:
            config.write_text(CARGO_CONFIG)
        return self.cargo_home

    def command(self, package_dir: Path, slot: Path, *, sandboxed: bool = True) -> tuple[list[str], dict[str, str]]:
        """The command line and environment of one build (sandboxed: the bubblewrap command line)."""
        cargo, rustc = self.toolchain.executables()
        path = ":".join(dict.fromkeys([os.path.dirname(cargo), os.path.dirname(rustc), "/usr/bin", "/bin"]))
        env = {"PATH": path, "RUSTC": rustc, "CARGO_TERM_COLOR": "never", **PROFILE_ENV}
        cargo_argv = [cargo, "build", "--release", "--offline", "--target", self.toolchain.target, "--bins",
                      "--tests", "--message-format=json"]
        home = self._cargo_home()
        if not sandboxed:
            return cargo_argv, {**env, "CARGO_HOME": str(home), "CARGO_TARGET_DIR": str(slot)}
        env.update(CARGO_HOME=CARGO_HOME, CARGO_TARGET_DIR=TARGET)
        argv = [bwrap(), *_SANDBOX_BASE]
        for extra in self.toolchain.outside_usr():
            argv += ["--ro-bind", extra, extra]
        argv += ["--bind", str(package_dir), PKG, "--ro-bind", str(home), CARGO_HOME, "--bind", str(slot), TARGET,
                 *_SANDBOX_FLAGS]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        return [*argv, "--chdir", PKG, "--", *cargo_argv], dict(_BWRAP_ENV)

    def compile(self, package_dir: Path, limits: BuildLimits = DEFAULT_BUILD_LIMITS, *,
                sandboxed: bool = True) -> Artifacts:
        """Build the tool and its unit-test harness for WASI. Raises BuildFailed with the compiler's output,
        BuildLimitExceeded if the build hit a limit."""
        with self._slot() as slot:
            _forget_tool(slot, self.toolchain.target)
            argv, env = self.command(package_dir, slot, sandboxed=sandboxed)
            try:
                done = proc.run(argv, cwd=package_dir, env=env, timeout=limits.timeout,
                                max_output=limits.max_output, memory=limits.memory)
                return self._artifacts(done, slot, limits, sandboxed)
            except OSError as e:
                raise BuildFailed(f"cannot start the build: {e.strerror or e}") from None
            finally:
                _forget_tool(slot, self.toolchain.target)

    def _artifacts(self, done: proc.Completed, slot: Path, limits: BuildLimits, sandboxed: bool) -> Artifacts:
        stderr = done.stderr.decode("utf-8", "replace")
        if done.timed_out:
            raise BuildLimitExceeded(f"the build took longer than its time limit of {limits.timeout:g} s "
                                     "(git config evogit.buildTimeout SECONDS raises it)")
        if done.overflowed:
            raise BuildLimitExceeded(f"the build printed more than its output limit of {limits.max_output} bytes "
                                     "(git config evogit.buildMaxOutput BYTES raises it)")
        if done.returncode != 0:
            said = [ln.strip() for ln in stderr.splitlines()
                    if any(sign in ln for sign in _OOM_SIGNS) and not _QUOTED_SOURCE.match(ln)]
            if said:
                raise BuildLimitExceeded(
                    f"the build ran out of its memory limit of {limits.memory >> 20} MiB per process "
                    f"(git config evogit.buildMemory MIB raises it): {said[0].lstrip('= ')}")
            found = diagnostics(done.stdout.decode("utf-8", "replace"))
            errors = [d for d in found if d.level == "error"]
            if not errors:  # no structured message (a linker or cargo failure): cargo's own words
                raise BuildFailed("compilation failed:\n" + _tail(stderr, 60))
            raise CompileFailed(f"compilation failed: {errors[0].headline()}"
                                + (f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""), found)
        wasm: bytes | None = None
        tests: list[bytes] = []
        for line in done.stdout.decode("utf-8", "replace").splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict) or msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
                continue
            if "path+file" not in str(msg.get("package_id")):
                continue  # a dependency, not the tool itself
            data = _read_output(str(msg["executable"]), slot, sandboxed)
            if msg.get("profile", {}).get("test"):
                tests.append(data)
            elif msg.get("target", {}).get("name") == "tool":
                wasm = data
        if wasm is None:
            raise BuildFailed("compilation produced no tool.wasm (is there a src/main.rs with fn main?)")
        return Artifacts(wasm, tests, stderr)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[Path]:
        """Hold a target dir of our own for the length of one build (see the module docstring)."""
        self.slots.mkdir(parents=True, exist_ok=True)
        delay = 0.05
        while True:
            with _locked(self.slots / "slots.lock"):
                taken = _take_slot(self.slots)
            if taken is not None:
                break
            time.sleep(delay)  # every slot is busy: each is held for at most its build's time limit
            delay = min(delay * 2, 0.5)
        n, lock = taken
        try:
            slot = self.slots / str(n)
            if not slot.is_dir():
                _seed(self.slots, slot)
            yield slot
        finally:
            lock.close()


def _take_slot(root: Path) -> tuple[int, IO[str]] | None:
    """Lock a free slot, or a new one if all are busy and there are fewer than MAX_SLOTS (call under the
    slots lock). Returns (number, open lock file) or None."""
    numbers = sorted(int(p.stem) for p in root.glob("*.lock") if p.stem.isdigit())
    for n in numbers:
        lock = open(root / f"{n}.lock", "a")  # noqa: SIM115 - held until the build ends
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return n, lock
        except BlockingIOError:
            lock.close()
    if len(numbers) >= MAX_SLOTS:
        return None
    n = min(set(range(len(numbers) + 1)) - set(numbers))
    lock = open(root / f"{n}.lock", "a")  # noqa: SIM115 - new, so no one else holds it
    fcntl.flock(lock, fcntl.LOCK_EX)
    return n, lock


def _seed(root: Path, slot: Path) -> None:
    """Fill a new slot with a copy of the warmest existing one (fingerprints first), or leave it empty."""
    def warmth(d: Path) -> int:
        return sum(len(os.listdir(f)) for f in glob.glob(str(d / "*" / ".fingerprint")) +
                   glob.glob(str(d / "*" / "*" / ".fingerprint")) if not os.path.islink(f))
    warm = [d for d in root.iterdir() if d.name.isdigit() and d.is_dir() and not d.is_symlink()]
    tmp = root / f"{slot.name}.seeding"
    shutil.rmtree(tmp, ignore_errors=True)
    source = max(warm, key=warmth, default=None)
    if source is not None and warmth(source):
        for dirpath, dirnames, _ in os.walk(source):
            if ".fingerprint" in dirnames:
                fp = Path(dirpath) / ".fingerprint"
                shutil.copytree(fp, tmp / fp.relative_to(source), symlinks=True, dirs_exist_ok=True)
            dirnames[:] = [d for d in dirnames if d != ".fingerprint"]
        shutil.copytree(source, tmp, symlinks=True, dirs_exist_ok=True,
                        ignore=lambda d, names: [".fingerprint"] if ".fingerprint" in names else [])
    tmp.mkdir(exist_ok=True)
    tmp.rename(slot)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _forget_tool(slot: Path, target: str) -> None:
    """Remove the previous tool's outputs from a slot: every tool is package "tool", so cargo must never
    trust stale mtimes, and no build should find another tool's binary in /target. Never follows a link
    (a build could have planted one)."""
    for profile in (Path("release"), Path(target) / "release"):
        for sub, pattern in ((profile / ".fingerprint", "tool-*"), (profile / "deps", "tool-*"),
                             (profile / "build", "tool-*"), (profile, "tool*")):
            if not _real_dir(slot, sub):
                continue
            for entry in (slot / sub).glob(pattern):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()


def _real_dir(slot: Path, relative: Path) -> bool:
    """`slot / relative` is a directory reached without following any symbolic link."""
    current = slot
    for part in ("", *relative.parts):
        current = current / part if part else current
        if current.is_symlink() or not current.is_dir():
            return False
    return True


def _read_output(path: str, slot: Path, sandboxed: bool) -> bytes:
    """Read an artifact cargo reported, mapping /target back to the slot; only a regular file inside it."""
    if sandboxed:
        if not path.startswith(TARGET + "/"):
            raise BuildFailed(f"the build reported an artifact outside {TARGET}")
        path = str(slot / path[len(TARGET) + 1:])
    real, root = os.path.realpath(path), os.path.realpath(slot)
    if not real.startswith(root + os.sep) or not os.path.isfile(real):
        raise BuildFailed("the build reported an artifact that is not a file in its target dir")
    return Path(real).read_bytes()


class Fix(msgspec.Struct, frozen=True):
    """A change rustc suggests for one of its errors: replace bytes [start, end) of `file` with `replacement`."""

    file: str
    start: int
    end: int
    replacement: str
    note: str  # rustc's words for it ("try using a conversion method")


FIXABLE = ("MachineApplicable", "MaybeIncorrect")  # rustc's applicability of a suggestion worth trying


class Diagnostic(msgspec.Struct, omit_defaults=True):
    """One of rustc's messages about the tool's source (cargo's `compiler-message` record)."""

    level: str  # error, warning
    message: str
    code: str | None = None  # E0425 ...
    file: str | None = None  # of the primary span, relative to the package
    line: int | None = None
    column: int | None = None
    rendered: str = ""  # as rustc prints it, with the source lines and carets (capped)
    fixes: list[Fix] = []  # rustc's first suggestion for it, every part of it (FIXABLE ones only)

    def headline(self) -> str:
        where = f" at {self.file}:{self.line}:{self.column}" if self.file else ""
        return f"{self.level}{f'[{self.code}]' if self.code else ''}: {self.message}{where}"


MAX_DIAGNOSTICS = 10
MAX_RENDERED = 2000


def diagnostics(stdout: str) -> list[Diagnostic]:
    """rustc's errors, then its warnings, from cargo's JSON messages: each once (the binary and the test build
    report the same error twice), at most MAX_DIAGNOSTICS, each rendered text capped; the closing "aborting due
    to …" summaries are left out."""
    found: list[Diagnostic] = []
    seen: set[tuple[str, str, object, object, object]] = set()
    for line in stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict) or msg.get("reason") != "compiler-message":
            continue
        m = msg.get("message")
        if not isinstance(m, dict) or m.get("level") not in ("error", "warning"):
            continue
        text = str(m.get("message") or "")
        spans = [sp for sp in m.get("spans") or [] if isinstance(sp, dict) and sp.get("is_primary")]
        if not spans and text.startswith(("aborting due to", "could not compile")):
            continue
        code = m.get("code")
        span = spans[0] if spans else {}
        key = (str(m["level"]), text, span.get("file_name"), span.get("line_start"), span.get("column_start"))
        if key in seen:
            continue
        seen.add(key)
        rendered = str(m.get("rendered") or "")
        found.append(Diagnostic(
            str(m["level"]), text, code.get("code") if isinstance(code, dict) else None,
            str(span["file_name"]) if span.get("file_name") else None,
            span.get("line_start") if isinstance(span.get("line_start"), int) else None,
            span.get("column_start") if isinstance(span.get("column_start"), int) else None,
            rendered if len(rendered) <= MAX_RENDERED else rendered[:MAX_RENDERED] + "…", _fixes(m)))
    found.sort(key=lambda d: d.level != "error")
    return found[:MAX_DIAGNOSTICS]


def _fixes(message: dict[str, Any]) -> list[Fix]:
    """rustc's first suggestion for a message (a child with suggested replacements), every part of it; where
    it offers alternatives for one place (spans at the same bytes) the first. None that rustc marks as having
    placeholders or as unspecified."""
    for child in message.get("children") or []:
        if not isinstance(child, dict):
            continue
        parts: dict[tuple[int, int], Fix] = {}
        for sp in child.get("spans") or []:
            if (not isinstance(sp, dict) or not isinstance(sp.get("suggested_replacement"), str)
                    or sp.get("suggestion_applicability") not in FIXABLE or not isinstance(sp.get("file_name"), str)
                    or not isinstance(sp.get("byte_start"), int) or not isinstance(sp.get("byte_end"), int)):
                continue
            where = (sp["byte_start"], sp["byte_end"])
            parts.setdefault(where, Fix(sp["file_name"], *where, sp["suggested_replacement"], str(child.get("message") or "")))
        if parts:
            return list(parts.values())
    return []


def _tail(text: str, lines: int) -> str:
    kept = [ln for ln in text.strip().splitlines() if not ln.strip().startswith(("Compiling ", "Finished "))]
    return "\n".join(kept[-lines:])
