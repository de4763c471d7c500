"""Run WASI preview 1 command modules in wasmtime with hard limits: time, fuel, memory, output size.

A run gets a fresh `Store`, stdin as bytes, stdout/stderr captured up to a cap, no environment, no arguments
but the program name, no preopened directories, and a `poll_oneoff` that refuses to block (so `sleep` cannot
escape fuel and epoch checks). Compiled modules are cached on disk by fingerprint and wasmtime version, each
authenticated by a MAC under a per-user key, and never deserialized unless it holds.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import hmac
import math
import re
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import version as _pkg_version
from pathlib import Path

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import _wasi
from wasmtime._extern import wrap_extern

from .atomic import write_atomic
from .errors import SandboxError
from .userstate import module_key

WASI_MODULE = "wasi_snapshot_preview1"
POOL_SLOTS = 128  # instances that may be alive at once in one process (the pooling allocator's slots)
EPOCH_PERIOD = 0.005  # seconds per epoch tick; timeouts are precise to about one tick
ENOSYS = 52  # WASI errno for "function not supported"
WASMTIME_VERSION = _pkg_version("wasmtime")
_MAC_MAGIC = b"evogit-cwasm-mac1\n"  # then HMAC-SHA256 of (fingerprint, wasmtime version, native code), then the code
_MAC_BYTES = 32
_PANIC_END = re.compile(r"(', |^)[^ ']+\.rs:\d+:\d+$")

#: Error kinds a run can end with, besides success.
ERROR_KINDS = ("invalid_input", "timeout", "out_of_fuel", "memory_limit", "stack_overflow", "output_limit",
               "trap", "exit_code", "invalid_output", "invalid_module")


@dataclass(frozen=True)
class Limits:
    """Per-run limits. Fuel: ~10 billion is about one second of CPU."""

    timeout: float = 5.0
    fuel: int = 20_000_000_000
    memory: int = 256 * 1024 * 1024
    max_output: int = 4 * 1024 * 1024
    max_stderr: int = 256 * 1024
    max_input: int = 16 * 1024 * 1024  # refused before decoding (see Runtime.run); the sandbox takes any stdin


DEFAULT_LIMITS = Limits()


@dataclass
class RunResult:
    """What happened in one run. `error` is None on a clean exit 0, else one of `ERROR_KINDS`."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    error: str | None = None
    detail: str = ""
    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    fuel: int = 0
    memory_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class _Ticker:
    """Advances an engine's epoch every EPOCH_PERIOD, catching up on ticks missed under load, until stopped."""

    def __init__(self, engine: wasmtime.Engine):
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="evogit-epoch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        start, ticks = time.monotonic(), 0
        while not self._stop.wait(EPOCH_PERIOD):
            due = int((time.monotonic() - start) / EPOCH_PERIOD)
            while ticks < due:
                self._engine.increment_epoch()
                ticks += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _Capture:
    """A stdout/stderr sink that refuses writes past `cap` bytes (the guest sees EFBIG)."""

    __slots__ = ("cap", "chunks", "size", "overflowed")

    def __init__(self, cap: int):
        self.cap, self.size, self.overflowed = cap, 0, False
        self.chunks: list[bytes] = []

    def __call__(self, data: bytes) -> int:
        if self.size + len(data) > self.cap:
            self.overflowed = True
            return -errno.EFBIG
        self.chunks.append(data)
        self.size += len(data)
        return len(data)

    def value(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class LoadedModule:
    """A module checked, compiled and pre-linked once; cheap to instantiate per run."""

    fingerprint: str
    module: wasmtime.Module
    pre: wasmtime.InstancePre = field(repr=False)


def fingerprint(wasm: bytes) -> str:
    """A tool version's identity: the sha256 of its .wasm."""
    return hashlib.sha256(wasm).hexdigest()


class _Engine:
    """The process-wide engine, WASI linker and epoch ticker that every Sandbox shares.

    One engine per process: its pooling allocator reserves address space up front, and compiled modules
    and the ticker thread are per engine.
    """

    def __init__(self) -> None:
        self.pooling = True
        try:
            self.engine = wasmtime.Engine(_config(pooling=True))
        except wasmtime.WasmtimeError:  # e.g. a capped address space: fall back to on-demand allocation
            self.engine, self.pooling = wasmtime.Engine(_config(pooling=False)), False
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.linker.allow_shadowing = True
        i32 = wasmtime.ValType.i32()
        self.linker.define_func(
            WASI_MODULE, "poll_oneoff", wasmtime.FuncType([i32, i32, i32, i32], [i32]), lambda *args: ENOSYS
        )
        self._ticker: _Ticker | None = None
        self._lock = threading.Lock()

    def start_ticker(self) -> None:
        if self._ticker is None:
            with self._lock:
                if self._ticker is None:
                    self._ticker = _Ticker(self.engine)

    def stop_ticker(self) -> None:
        with self._lock:
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.stop()


def settle(timeout: float = 2.0) -> bool:
    """Wait until wasmtime has released every WASI output callback of the runs that ended; True if it has.

    A store's stdout/stderr sinks are dropped on one of wasmtime's own (tokio) threads shortly after the
    store is closed, and dropping one calls back into Python (`custom_finalize`). If that call comes while
    the interpreter is finalising, CPython ends the calling thread with pthread_exit, which cannot unwind
    through Rust frames: the process aborts ("panic in a function that cannot unwind"). Closing a runtime
    (and the exit hook) waits here, while calling into Python is still safe.
    """
    deadline = time.monotonic() + timeout
    while _wasi.CUSTOM_OUTPUTS.handles:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def shutdown() -> None:
    """Stop the shared engine's epoch ticker and wait for wasmtime to release its callbacks (at exit)."""
    if _SHARED is not None:
        _SHARED.stop_ticker()
    settle()


_SHARED: _Engine | None = None
_SHARED_LOCK = threading.Lock()


def _shared_engine() -> _Engine:
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = _Engine()
        return _SHARED


def _config(pooling: bool) -> wasmtime.Config:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    if pooling:
        _use_pooling_allocator(config)
    return config


class Sandbox:
    """A compiled-module cache over the shared engine; `run()` is safe to call from several threads.

    Cached modules carry a MAC under this user's module key (`userstate.module_key`, kept outside every
    repository), checked before anything is deserialized.
    """

    def __init__(self, cache_dir: Path | None = None, key: bytes | None = None):
        self._engine = _shared_engine()
        self.engine, self.linker = self._engine.engine, self._engine.linker
        self.cache_dir = cache_dir
        self._key = key
        self._loaded: dict[str, LoadedModule] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Drop the compiled modules this sandbox holds and wait for wasmtime to release the output callbacks
        of its finished runs. The shared engine stays (other sandboxes use it); `shutdown` stops its ticker."""
        with self._lock:
            self._loaded.clear()
        settle()

    # -- loading ---------------------------------------------------------------------------------------------
    def load(self, wasm: bytes, expected_fingerprint: str | None = None, cache: bool = True) -> LoadedModule:
        """Verify, compile (or fetch from the on-disk cache, if `cache`) and pre-link a module."""
        fp = fingerprint(wasm)
        if expected_fingerprint is not None and fp != expected_fingerprint:
            raise SandboxError("invalid_module", f"fingerprint mismatch: expected {expected_fingerprint[:12]}, got {fp[:12]}")
        with self._lock:
            loaded = self._loaded.get(fp)
        if loaded is not None:
            return loaded
        module = self._compile(wasm, fp, cache)
        for imp in module.imports:
            if imp.module != WASI_MODULE:
                raise SandboxError(
                    "invalid_module", f"module imports {imp.module}.{imp.name}; only {WASI_MODULE} is allowed"
                )
        exports = {e.name for e in module.exports}
        if "_start" not in exports or "memory" not in exports:
            raise SandboxError("invalid_module", "module is not a WASI command (needs _start and memory exports)")
        try:
            pre = self.linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as e:
            raise SandboxError("invalid_module", f"cannot link module: {_first_line(str(e))}") from None
        loaded = LoadedModule(fp, module, pre)
        if not cache:
            return loaded
        with self._lock:
            return self._loaded.setdefault(fp, loaded)

    def _compile(self, wasm: bytes, fp: str, cache: bool) -> wasmtime.Module:
        cached = self.cache_dir / f"{fp}-wasmtime{WASMTIME_VERSION}.cwasm" if self.cache_dir and cache else None
        if cached is not None:
            module = self._cached(cached, fp)
            if module is not None:
                return module
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as e:
            raise SandboxError("invalid_module", f"not a valid WebAssembly module: {_first_line(str(e))}") from None
        if cached is not None:
            native = bytes(module.serialize())
            write_atomic(cached, _MAC_MAGIC + self._mac(fp, native) + native)
        return module

    def _mac(self, fp: str, native: bytes | memoryview) -> bytes:
        if self._key is None:
            self._key = module_key()
        mac = hmac.new(self._key, b"evogit-module\0%s\0%s\0" % (fp.encode(), WASMTIME_VERSION.encode()), "sha256")
        mac.update(native)
        return mac.digest()

    def _cached(self, path: Path, fp: str) -> wasmtime.Module | None:
        """A compiled module from the cache, only if its MAC (this user's key, this fingerprint, this wasmtime)
        holds: deserializing runs native code unchecked, so a file evogit did not write here — another tool's
        module copied under this name, a corrupted one, an old unauthenticated one — is compiled anew instead."""
        try:
            data = path.read_bytes()  # read once: what is checked is what is loaded
        except OSError:
            return None
        head = len(_MAC_MAGIC) + _MAC_BYTES
        authentic = (data[:len(_MAC_MAGIC)] == _MAC_MAGIC and len(data) > head
                     and hmac.compare_digest(data[len(_MAC_MAGIC):head], self._mac(fp, memoryview(data)[head:])))
        if authentic:
            try:
                return wasmtime.Module.deserialize(self.engine, data[head:])
            except wasmtime.WasmtimeError:
                pass  # compiled for another engine configuration: recompile
        path.unlink(missing_ok=True)
        return None

    # -- running ---------------------------------------------------------------------------------------------
    def run(self, loaded: LoadedModule, stdin: bytes, limits: Limits = DEFAULT_LIMITS,
            argv: tuple[str, ...] = ("tool",)) -> RunResult:
        """Run a loaded module's `_start` once with `stdin`, under `limits`. Tools get only their name as argv."""
        self._engine.start_ticker()
        out, err = _Capture(limits.max_output), _Capture(limits.max_stderr)
        store = wasmtime.Store(self.engine)
        try:
            store.set_limits(memory_size=limits.memory)
            store.set_fuel(limits.fuel)
            store.set_epoch_deadline(math.ceil(limits.timeout / EPOCH_PERIOD) + 1)
            wasi = wasmtime.WasiConfig()
            wasi.argv = list(argv)
            _set_stdin_bytes(wasi, stdin)
            wasi.stdout_custom = out
            wasi.stderr_custom = err
            store.set_wasi(wasi)
            t0, c0 = time.perf_counter(), time.thread_time()
            exit_code: int | None = 0
            trap: Exception | None = None
            instance: wasmtime.Instance | None = None
            try:
                instance = loaded.pre.instantiate(store)
                start = _export(store, instance, b"_start")
                assert isinstance(start, wasmtime.Func)
                start(store)
            except wasmtime.ExitTrap as e:
                exit_code = e.code
            except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
                exit_code, trap = None, e
            wall, cpu = (time.perf_counter() - t0) * 1000, (time.thread_time() - c0) * 1000
            used = limits.fuel - store.get_fuel()
            if trap is not None and instance is not None:  # only a trap needs the memory size (memory_limit)
                memory = _export(store, instance, b"memory")
                mem_bytes = memory.data_len(store) if isinstance(memory, wasmtime.Memory) else 0
            else:
                mem_bytes = 0
        finally:
            store.close()
        result = RunResult(exit_code, out.value(), err.value(), wall_ms=wall, cpu_ms=cpu, fuel=used,
                           memory_bytes=mem_bytes)
        _classify(result, trap, out, err, limits)
        return result


def _classify(r: RunResult, trap: Exception | None, out: _Capture, err: _Capture, limits: Limits) -> None:
    """Name the failure of a run (or leave `error` None)."""
    stderr_tail = r.stderr.decode("utf-8", "replace").strip()
    if trap is None:
        if r.exit_code != 0:
            r.error, r.detail = "exit_code", f"exited with code {r.exit_code}" + (f": {_last_line(stderr_tail)}" if stderr_tail else "")
        return
    code = trap.trap_code if isinstance(trap, wasmtime.Trap) else None
    message = _first_line(str(trap))
    if out.overflowed or err.overflowed:
        which = "stdout" if out.overflowed else "stderr"
        cap = limits.max_output if out.overflowed else limits.max_stderr
        r.error, r.detail = "output_limit", f"{which} exceeded {cap} bytes"
    elif code == wasmtime.TrapCode.OUT_OF_FUEL:
        r.error, r.detail = "out_of_fuel", f"used all {limits.fuel} fuel"
    elif code == wasmtime.TrapCode.INTERRUPT:
        r.error, r.detail = "timeout", f"ran longer than {limits.timeout:g} s"
    elif code == wasmtime.TrapCode.STACK_OVERFLOW:
        r.error, r.detail = "stack_overflow", "call stack exhausted"
    elif code == wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS and _recursing(trap):
        # Rust's shadow stack lives in linear memory below the data; deep recursion runs it off address 0.
        r.error, r.detail = "stack_overflow", "shadow stack exhausted (unbounded recursion)"
    elif "memory allocation of" in stderr_tail or r.memory_bytes + 65536 * 16 > limits.memory:
        r.error, r.detail = "memory_limit", f"linear memory limit {limits.memory} bytes reached"
    else:
        panic = _panic_message(stderr_tail)
        r.error, r.detail = "trap", panic or message


def _recursing(trap: Exception) -> bool:
    """True if the innermost frames of a trap are one function calling itself."""
    try:
        frames = [f.func_index for f in trap.frames[:12]]  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - frames are best-effort diagnostics
        return False
    return len(frames) >= 8 and max(frames.count(i) for i in set(frames)) >= 8


def _panic_message(stderr: str) -> str:
    """The panic message (which may span lines, up to its source location), else stderr's last line."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if "panicked at" in line:
            end = next((j for j in range(i, len(lines)) if _PANIC_END.search(lines[j])), i)
            return " ".join(ln.strip() for ln in lines[i:end + 1])[:1000]
    return _last_line(stderr)


def _first_line(s: str) -> str:
    return s.strip().splitlines()[0] if s.strip() else s


def _last_line(s: str) -> str:
    return s.strip().splitlines()[-1] if s.strip() else s


def _use_pooling_allocator(config: wasmtime.Config) -> bool:
    """Pre-reserve instance slots so a run neither maps nor unmaps its memory (saves ~25 µs of ~230 per run).

    Slots cap how many runs can be in flight at once in one process (POOL_SLOTS); each may grow its memory
    to the wasm32 maximum, so every `Limits.memory` still works. Not exposed by wasmtime-py's Config, but
    reachable through its C API bindings.
    """
    try:
        pool = ffi.wasmtime_pooling_allocation_config_new()
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, POOL_SLOTS)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, POOL_SLOTS)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, POOL_SLOTS)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pool, 4 << 30)
        ffi.wasmtime_pooling_allocation_config_max_unused_warm_slots_set(pool, 16)
        ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pool, 2 << 20)
        ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pool)
        ffi.wasmtime_pooling_allocation_config_delete(pool)
        return True
    except (AttributeError, OSError):
        return False


def _export(store: wasmtime.Store, instance: wasmtime.Instance, name: bytes) -> object:
    """One export by name. `Instance.exports()` wraps every export on each call; a run needs one or two."""
    item = ffi.wasmtime_extern_t()
    buf = ctypes.create_string_buffer(name, len(name))
    found = ffi.wasmtime_instance_export_get(
        store._context(), ctypes.byref(instance._instance), ctypes.cast(buf, ctypes.POINTER(ctypes.c_char)),
        len(name), ctypes.byref(item))
    if not found:
        raise SandboxError("invalid_module", f"module has no export {name.decode()!r}")
    return wrap_extern(item)


def _set_stdin_bytes(wasi: wasmtime.WasiConfig, data: bytes) -> None:
    """WasiConfig has no bytes-stdin setter; the C API does (it takes ownership of the vector). The vector is
    copied straight from the bytes object's buffer: one copy of the input, not two."""
    vec = ffi.wasm_byte_vec_t()
    buf = ctypes.cast(ctypes.c_char_p(data), ctypes.POINTER(ctypes.c_ubyte))
    ffi.wasm_byte_vec_new(ctypes.byref(vec), len(data), buf)
    ffi.wasi_config_set_stdin_bytes(wasi.ptr(), ctypes.byref(vec))
