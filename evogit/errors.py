"""The one exception tree. Every error evogit raises on purpose is an `EvogitError`.

The CLI prints `Error: <message>` and exits 1 for these; anything else is a bug (exit 3).
"""

from __future__ import annotations

from collections.abc import Sequence


class EvogitError(Exception):
    """Root of every error evogit raises on purpose; the message is one line for the user."""


class RepoNotFound(EvogitError):
    """The path is not an evogit skills repository."""


class ToolNotFound(EvogitError):
    """No tool branch or no version matches the name or fingerprint."""


class AmbiguousVersion(EvogitError):
    """A fingerprint prefix matches more than one version."""


class ToolExists(EvogitError):
    """A tool branch with that name already exists."""


class InvalidName(EvogitError):
    """A tool name is not a lowercase slug."""


class InvalidPackage(EvogitError):
    """A tool's source tree breaks the package rules (manifest, dependencies, build-time safety)."""


class BuildFailed(EvogitError):
    """Compiling, unit tests or behavioural cases failed; `record` says why."""

    def __init__(self, message: str, record: object | None = None):
        super().__init__(message)
        self.record = record


class BuildLimitExceeded(BuildFailed):
    """A build hit its wall-time, memory or output limit."""


class SandboxUnavailable(BuildFailed):
    """Bubblewrap cannot run here, and the code to build is not evogit's own."""


class CompileFailed(BuildFailed):
    """rustc refused the tool's source; `diagnostics` holds its structured messages (toolchain.Diagnostic)."""

    def __init__(self, message: str, diagnostics: Sequence[object]):
        super().__init__(message)
        self.diagnostics = list(diagnostics)


class ToolchainMissing(EvogitError):
    """No Rust toolchain able to target WASI was found."""


class CommandFailed(EvogitError):
    """An external command failed; the message carries the command, exit code and stderr tail."""

    def __init__(self, argv: list[str], returncode: int, stderr: str):
        tail = "\n".join(stderr.strip().splitlines()[-30:])
        super().__init__(f"{' '.join(argv)} exited with {returncode}:\n{tail}")
        self.argv, self.returncode, self.stderr = argv, returncode, stderr


class ConcurrentUpdate(EvogitError):
    """A ref kept moving under us; the write was retried and still could not land."""


class InvalidInput(EvogitError):
    """Input to a tool or a command is not valid JSON or breaks the input schema."""


class InvalidJSON(EvogitError):
    """A document is not strict JSON (RFC 8259), or nests deeper than jsonio.MAX_DEPTH."""


class InvalidLimit(EvogitError):
    """A run limit (timeout, fuel, memory, output or input size) is out of its range."""


class SandboxError(EvogitError):
    """A run ended in a sandbox failure; `kind` names it (timeout, out_of_fuel, trap, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class ModelNotConfigured(EvogitError):
    """No model is configured (EVOGIT_MODEL / OPENAI_BASE_URL / OPENAI_API_KEY, or git config evogit.*)."""


class LocalModelError(EvogitError):
    """The embedded local model could not be installed, checked, started or stopped."""


class ModelError(EvogitError):
    """A model call failed; `kind` names how (timeout, rate_limited, server_error, bad_response, ...)."""

    def __init__(self, kind: str, message: str, result: object | None = None):
        super().__init__(message)
        self.kind = kind
        self.result = result  # the reply, when there was one (a reply that is not the JSON asked for)


class InvalidVersion(EvogitError):
    """A version tag fails verification (malformed, forged or broken); `stage` names the check."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage
