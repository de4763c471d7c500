"""The tool functions a model (or any agent framework) drives evogit with: one transport-neutral catalog, from
which the OpenAI definitions are made here and the MCP server's later.

    list_tools()                                 every tool: name@fingerprint, what it does, its record
    search_tools(query)                          the tools ranked for a task in words, with the decision
    describe_binary(binary_id)                   one version: schemas, example cases, record, lineage
    run_binary(binary_id, input_json)            run it in the sandbox (the input as a JSON string)
    mutate_binary(parent_id, task_description)   a model specialises it: a new, tested version
    create_binary(task_description)              a model writes a new tool from the task
    feedback(binary_id, task_description, solved)   whether a version solved a task (retrieval learns)

Each definition is strict (`"strict": true`, every property required, no others), so a server that enforces
schemas (OpenAI's structured outputs, llama.cpp's grammars) keeps the model to them, and the arguments are
decoded into the same typed structs the schemas are made from (leniently where small models slip: `input_json`
given as the JSON document itself is encoded, and a tool's name used as a function's name runs that tool with
run_binary; the result's `note` says so). `Catalog.call(name, arguments_json)` executes
one call and returns compact JSON the model can act on: `{"ok": true, ...}`, or `{"ok": false, "error":
{"kind", "message"}}` — an unknown function, arguments that are not the schema's, a tool that is not there, a
run that failed — never a traceback. Every result that concerns a version names it as `name@fingerprint`
(`version`), so the model can pin what answered.

A run goes through the runtime exactly as `evogit run` does (the repository's limits, input and output
schemas, the sandbox) and is recorded with the catalog's `task` when it has one (a solve sets it), so
retrieval learns which version served which task. Create and mutate go through `agent.author.Author`: built
in the sandbox, only a green version committed, tagged and usable by the next call.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .. import jsonio
from ..contract import RunOutcome
from ..decide import FIT_FLOOR
from ..errors import EvogitError, InvalidJSON, ModelError, ModelNotConfigured, SandboxError
from ..events import version_key
from ..llm.client import ModelClient
from ..manifest import first_sentence
from ..runtime import Runtime
from ..runtime.results import (
    CallError,
    CallFailed,
    CallResult,
    Candidate,
    Candidates,
    Described,
    Example,
    Listed,
    Listing,
    Ran,
    Record,
    Recorded,
    Supersession,
    Written,
)
from ..sandbox import Limits

MAX_RESULT = 16_000  # characters of a result the model is sent; a longer tool output is cut (`truncated`)
MAX_CASES = 3  # example cases shown by describe_binary
SEARCH_K = 5

_log = logging.getLogger("evogit")

_TYPES = {str: "string", bool: "boolean"}


@dataclass(frozen=True)
class Function:
    """One function of the catalog: its name, what the model is told about it, its parameters (strict JSON
    Schema) and the struct its arguments decode into (made from the same declaration)."""

    name: str
    description: str
    parameters: dict[str, Any]
    arguments: type[msgspec.Struct] = field(repr=False)
    writes: bool = False  # it writes tools, with a model

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters, "strict": True}}


def _function(name: str, description: str, writes: bool = False, **params: tuple[type, str]) -> Function:
    schema = {"type": "object",
              "properties": {p: {"type": _TYPES[t], "description": about} for p, (t, about) in params.items()},
              "required": list(params), "additionalProperties": False}
    struct = msgspec.defstruct(f"{name}_arguments", [(p, t) for p, (t, _) in params.items()],
                               forbid_unknown_fields=True)
    return Function(name, description, schema, struct, writes)


_BINARY = (str, "A tool: name (its newest version) or name@fingerprint (a prefix will do).")
_TASK = (str, "The task in plain words: what the tool must do, its input and output, edge cases.")

FUNCTIONS: tuple[Function, ...] = (
    _function("list_tools", "List the library's tools: name@fingerprint, what each does, runs, success rate."),
    _function("search_tools", "Rank the library's tools for a task in words, with their input schemas.",
              query=(str, "The task in plain words.")),
    _function("describe_binary", "One tool version in full: description, input and output schemas, example "
                                 "cases, record, lineage.", binary_id=_BINARY),
    _function("run_binary", "Run a tool on one input in the sandbox: its output JSON, or the error kind "
                            "(invalid_input, timeout, exit_code, ...) and message.",
              binary_id=_BINARY, input_json=(str, "One JSON document as a string, matching the tool's input "
                                                  "schema.")),
    _function("mutate_binary", "A model specialises a tool for a task: a new tested version that still passes "
                               "the parent's cases (unless superseded with a reason). Slow: it builds.",
              writes=True, parent_id=(str, "The tool to specialise: name or name@fingerprint."),
              task_description=_TASK),
    _function("create_binary", "A model writes a new tool for a task no tool does (Rust to WebAssembly, "
                               "with tests). Slow: it builds. Returns the new version, ready to run.",
              writes=True, task_description=_TASK),
    _function("feedback", "Record whether a tool's result solved a task, so the library learns.",
              binary_id=_BINARY, task_description=_TASK, solved=(bool, "Whether it solved the task.")),
)
BY_NAME = {f.name: f for f in FUNCTIONS}
#: Not a catalog function: a solve offers it when its first call requires a function call (`tool_choice`
#: "required" or named), so that a model can always answer with a call; the solve loop reads it itself.
ANSWER = _function("answer", "Give the task's answer and end: the output JSON of the run that answered it, as it "
                             "is, or one line of words.",
                   result=(str, "The answer: the run's output JSON as it is, or words."))


def openai_tools() -> list[dict[str, Any]]:
    """The catalog as OpenAI tool definitions (the `tools` of a chat completion)."""
    return [f.openai() for f in FUNCTIONS]


class ToolCallError(EvogitError):
    """A call the catalog cannot carry out; `kind` names why (unknown_function, bad_arguments, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


#: Where a task says what its answer looks like: '... and return {"count": n}', 'answering {"hours": h, ...}'.
_ANSWER_SHAPE = re.compile(r"\b(?:answer(?:ing|s)?|return(?:ing|s)?|output(?:ting|s)?|respond(?:ing|s)?|"
                           r"reply(?:ing)?|print(?:ing|s)?|giv(?:e|es|ing)|as)(?:\s+me)?\s*:?\s*(\{[^{}]*\})", re.I)
_FIELD = re.compile(r'"([^"\\]{1,64})"\s*:')


def answer_fields(task: str | None) -> list[str]:
    """The fields a task names for its answer ('... and answer {"count": n}': count), or [] when it names none."""
    m = _ANSWER_SHAPE.search(task or "")
    return _FIELD.findall(m.group(1)) if m else []


def misfit(task: str | None, output: Any) -> str | None:
    """Why `output` does not answer `task` by the task's own words (an answer field the task names is missing),
    or None. Seen live: a 1.5B model ran a tool that did something else and gave its output as the answer."""
    fields = answer_fields(task)
    missing = [f for f in fields if not (isinstance(output, dict) and f in output)]
    if not missing:
        return None
    has = f"its fields are {', '.join(list(output)[:8])}" if isinstance(output, dict) and output else \
        "it is not a JSON object with fields"
    return f"the task asks for an answer with {', '.join(fields)}; this one has no {', '.join(missing)} ({has})"


def output_digest(output: Any) -> str:
    """A run's output, or an answer, as a short key that equal JSON values share (keys sorted)."""
    return hashlib.sha256(jsonio.encode(output, sort_keys=True).encode()).hexdigest()


@dataclass
class Unserved:
    """A successful run, in a solve, that did not serve its task: why, the version, and whether only by its fit
    (and if so, whether the model has been told so after answering with its output)."""

    why: str
    version: str
    by_fit: bool
    told: bool = False


@dataclass
class Served:
    """A run that succeeded through the catalog: the version and its whole output."""

    version: str
    output: Any


class Catalog:
    """Executes the catalog's functions on one runtime. A model client is needed only to create and mutate:
    `client`, or `connect()` called the first time one is needed (e.g. the repository's configured model)."""

    def __init__(self, rt: Runtime, client: ModelClient | None = None, *, task: str | None = None,
                 solving: str | None = None, connect: Callable[[], ModelClient] | None = None, rounds: int = 3,
                 limits: Limits | None = None, progress: Callable[[str], None] | None = None,
                 max_writes: int | None = None, deadline: float | None = None, by_fit: bool = False):
        """`task`: recorded with every run. `solving`: the task of the solve these calls serve; feedback is then
        about that task only, for a version this solve ran (a model cannot teach the library about other
        tasks, or credit a tool it never tried); a mutation that supersedes an inherited case becomes a new tool
        (a fork, with lineage), never the default of the tool it changes: a model solving one task must not
        change what a tool does for everyone else. `max_writes`: creates and mutations allowed (each call counts,
        green or not); `deadline`: the time.monotonic() after which none starts; `by_fit`: runs are also held to
        the calibrated fit of their tool to the solved task (see `unfit`)."""
        self.rt, self.client, self.task, self.solving, self.rounds = rt, client, task, solving, rounds
        self._connect = connect
        self._limits = limits
        self.progress = progress
        self.last: Served | None = None  # the last successful run (only it: outputs can be large)
        self.tried: set[str] = set()  # versions run through this catalog, name@fingerprint
        self.unserved: dict[str, Unserved] = {}  # by output_digest: the successful runs that did not serve `solving`
        self.written: list[str] = []  # versions created or mutated through this catalog, name@fingerprint
        self.author_tokens = 0  # tokens the model spent writing them (every attempt)
        self.superseded: list[dict[str, str]] = []  # every case a mutation here superseded: version, case, reason
        self.writes = 0  # create and mutate calls carried out
        self.max_writes, self.deadline, self.by_fit = max_writes, deadline, by_fit
        self._own_client = False

    def close(self) -> None:
        if self._own_client and self.client is not None:
            self.client.close()
            self.client, self._own_client = None, False

    def call(self, name: str, arguments_json: str) -> str:
        """Execute one call; returns compact JSON, an error result included, never raises for the model's mistakes
        or the library's refusals."""
        return _fit(self.result(name, arguments_json))

    def result(self, name: str, arguments_json: str) -> CallResult:
        """Execute one call; returns its whole result (one of runtime.results' call results, `ok` true, or a
        CallFailed), never raises for the caller's mistakes or the library's refusals."""
        try:
            result = self.dispatch(name, arguments_json)
        except ToolCallError as e:
            result = _error(e.kind, str(e))
        except (ModelError, SandboxError) as e:
            result = _error(e.kind, str(e))
        except EvogitError as e:
            result = _error(_kind(e), str(e))
        except Exception as e:  # a bug of ours: the model gets one line, the log the traceback
            _log.debug("tool function %s failed", name, exc_info=True)
            result = _error("internal_error", f"{type(e).__name__}: {e}")
        return result

    def dispatch(self, name: str, arguments_json: str) -> CallResult:
        """Decode the arguments against the function's schema and execute it; raises ToolCallError or the
        runtime's EvogitError. Lenient on the way in, as small models write calls: run_binary's `input_json`
        given as a JSON value instead of a string is encoded, and a library tool's name used as the function's
        name (`word-count`, `word-count@d9be165`, or `word_count`) runs that tool with run_binary, the arguments
        as its input (or their `input_json`); the result says so (`note`)."""
        fn = BY_NAME.get(name)
        text = arguments_json if arguments_json.strip() else "{}"  # models send "" for no arguments
        if fn is None:
            tool = self.tool_named(name)
            if tool is None:
                raise ToolCallError("unknown_function", f"no function named {_clip(name, 60)!r}; the functions are "
                                                        + ", ".join(BY_NAME))
            value = _arguments(name, text)
            given = value.get("input_json", value) if isinstance(value, dict) and set(value) <= {
                "binary_id", "input_json"} and "input_json" in value else value
            out = self._run_binary(_RunArguments(tool, given if isinstance(given, str) else jsonio.encode(given)))
            if isinstance(out, Ran) and out.note is msgspec.UNSET:
                out.note = f"{_clip(name, 60)} is a tool, not a function: it was run with run_binary"
            return out
        value = _arguments(name, text)
        if name == "run_binary" and isinstance(value, dict) and "input_json" in value and not isinstance(
                value["input_json"], str):
            value["input_json"] = jsonio.encode(value["input_json"])  # the document itself, not as a string
        try:
            args = msgspec.convert(value, fn.arguments)
        except msgspec.ValidationError as e:
            raise ToolCallError("bad_arguments", f"{name}: arguments: {str(e).replace('`', '')}") from None
        handler: Callable[[Any], CallResult] = getattr(self, f"_{name}")
        return handler(args)

    def tool_named(self, name: str) -> str | None:
        """The library tool (as name or name@fp) that a function name names, if it names one."""
        for spec in dict.fromkeys((name.strip(), name.strip().replace("_", "-"))):
            try:
                v = self.rt.repo.resolve(spec)
            except (EvogitError, ValueError):
                continue
            return v.key
        return None

    # -- the functions -----------------------------------------------------------------------------------------
    def _list_tools(self, args: Any) -> Listing:
        metrics = self.rt.projections().state.versions  # not rt.stats(): that walks every lineage too
        tools = []
        for t in self.rt.list_tools():
            if t.latest is None:
                continue
            key = t.latest.key
            m = metrics.get(key)
            rate = m.success_rate if m is not None else None
            tools.append(Listed(key, first_sentence(t.description), m.runs if m is not None else 0,
                                None if rate is None else round(rate, 4)))
        return Listing(tools=tools)

    def _search_tools(self, args: Any) -> Candidates:
        from ..decide import confidence

        hits, _ = self.rt.search(args.query, SEARCH_K)
        return Candidates(confidence=round(confidence(hits), 3), tools=[self.candidate(h) for h in hits])

    def candidate(self, hit: Any) -> Candidate:
        """What a model is shown of a search hit: name@fp, first sentence, input schema, record, probability."""
        loaded = self.rt.load(hit.key)
        return Candidate(hit.key, first_sentence(hit.description), loaded.manifest.input_schema,
                         round(hit.probability, 3), hit.runs,
                         None if hit.success_rate is None else round(hit.success_rate, 3))

    def _describe_binary(self, args: Any) -> Described:
        d = self.rt.describe(args.binary_id)
        m = d.metrics
        return Described(
            version=version_key(d.tool, d.fingerprint), description=d.description, tags=d.tags,
            input_schema=d.input_schema, output_schema=d.output_schema,
            examples=[Example(c.get("input"), c.get("expect", msgspec.UNSET), c.get("exit", msgspec.UNSET))
                      for c in d.cases[:MAX_CASES]],
            cases=len(d.cases),
            record=Record(m.runs, m.success_rate, m.errors, m.p50_ms, m.feedback_solved, m.feedback_failed),
            versions=len(d.versions), newest=d.head_is_this_version, parents=d.parents, superseded=d.superseded)

    def _run_binary(self, args: Any) -> Ran | CallFailed:
        limits = self._limits or self.rt.default_limits()
        data = args.input_json.encode("utf-8", "surrogatepass")
        outcome = self.rt.run(args.binary_id, data, limits, task=self.task)
        return self.ran(outcome)

    def ran(self, outcome: RunOutcome) -> Ran | CallFailed:
        """A run's result for the model (and a successful one remembered as served)."""
        version = version_key(outcome.tool, outcome.fingerprint)
        self.tried.add(version)
        if outcome.ok:
            out = Ran(version=version, output=outcome.output, wall_ms=round(outcome.wall_ms, 2))
            if self.solving is not None and (unfit := self.unfit(outcome.tool, outcome.output)) is not None:
                # it ran, but it does not do the task: not remembered as serving it, and the model is told so
                out.answers_task = False
                out.note = f"{unfit[0]}; find, mutate or create a tool that does"
                self.unserved[output_digest(outcome.output)] = Unserved(unfit[0], version, by_fit=unfit[1])
                return out
            self.last = Served(version, outcome.output)
            return out
        failed = _error(outcome.error or "failed", outcome.detail or outcome.error or "the run failed")
        failed.version = version
        if outcome.output is not None:
            failed.output = outcome.output
        if outcome.stderr.strip():
            failed.stderr = _clip(outcome.stderr.strip(), 500)
        return failed

    def unfit(self, tool: str, output: Any) -> tuple[str, bool] | None:
        """Why a successful run of `tool` does not serve the task being solved, and whether only by its fit; or
        None. By the task's own words first (a field it names for its answer is missing); a task that names none
        is held, with `by_fit`, to the calibrated fit: a tool that the task is too far from everything it is
        known for does not serve it (seen live: a 1.5B model ran fuzzy-match on "is this phrase a palindrome …"
        and answered with its matches). The fit is weaker evidence than missing fields (see solve's `_unfit`),
        and only judges a task that is an instruction alone: one that carries its arguments in its words ("How
        many words are in: the quick brown fox jumps", word-count's fit 0.06) is far from any tool."""
        assert self.solving is not None
        if (why := misfit(self.solving, output)) is not None:
            return f"{why}: this tool does not do the task", False
        if not self.by_fit or answer_fields(self.solving):
            return None  # the output has every field the task names: that outweighs how the task is worded
        fit = self.rt.fit(self.solving, tool)
        if fit is not None and fit < FIT_FLOOR:
            return (f"{tool} is not known for tasks like this one (fit {fit:.2f}, below {FIT_FLOOR:.2f}): its output "
                    "is not taken as the task's answer unless you answer with it again"), True
        return None

    def _create_binary(self, args: Any) -> Written | CallFailed:
        task = _task(args.task_description)
        self._may_write()
        return self._written(self._author().create(task))

    def _mutate_binary(self, args: Any) -> Written | CallFailed:
        task = _task(args.task_description)
        self._may_write()
        return self._written(self._author().mutate(args.parent_id, task, fork_weakened=self.solving is not None))

    def _may_write(self) -> None:
        """Count a create or mutate call, or refuse it past the write limit or the deadline."""
        if self.max_writes is not None and self.writes >= self.max_writes:
            raise ToolCallError("write_limit", f"this solve already wrote {self.writes} tools (at most "
                                               f"{self.max_writes}, --max-writes): use the tools there are")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise ToolCallError("deadline", "this solve is past its deadline (--deadline): no new tool is written")
        self.writes += 1

    def _feedback(self, args: Any) -> Recorded:
        task, note = args.task_description, ""
        if self.solving is not None:
            v = self.rt.repo.resolve(args.binary_id)
            key = v.key
            if key not in self.tried:
                raise ToolCallError("feedback_refused", f"feedback inside a solve is for a version this solve ran; "
                                                        f"{v.short} did not run (ran: "
                                                        f"{', '.join(sorted(self.tried)) or 'none'})")
            task, note = self.solving, f"the model, solving: {_clip(' '.join(task.split()), 200)}"
        e = self.rt.feedback(args.binary_id, task, args.solved, note)
        return Recorded(version=version_key(e.tool, e.fingerprint), task=e.task,
                        recorded="solved" if e.solved else "failed")

    # -- writing tools -------------------------------------------------------------------------------------------
    def _author(self) -> Any:
        from .author import Author

        if self.client is None:
            if self._connect is None:
                raise ModelNotConfigured("no model to write tools with: configure one (EVOGIT_MODEL, "
                                         "OPENAI_BASE_URL, OPENAI_API_KEY)")
            self.client, self._own_client = self._connect(), True
        return Author(self.rt, self.client, rounds=self.rounds, progress=self.progress)

    def _written(self, result: Any) -> Written | CallFailed:
        self.author_tokens += result.tokens
        if not result.ok or result.version is None:
            last = result.attempts[-1] if result.attempts else None
            kind = last.error if last is not None and last.stage == "model" and last.error else "not_green"
            out = _error(kind, result.message)  # a model that failed says how (timeout, ...); else not green
            out.attempts, out.tokens = len(result.attempts), result.tokens
            return out
        v = result.version
        key = v.key
        self.written.append(key)
        manifest = self.rt.load(key).manifest
        self.superseded += [{"version": key, "case": s.case, "reason": s.reason} for s in result.superseded]
        return Written(version=key, description=manifest.description, input_schema=manifest.input_schema,
                       output_schema=manifest.output_schema, parent=result.parent, attempts=len(result.attempts),
                       tokens=result.tokens, superseded=[Supersession(s.case, s.reason) for s in result.superseded])


def error_result(e: Exception) -> str:
    """An error as a call's compact JSON result."""
    return _compact(_error(_kind(e) if isinstance(e, EvogitError) else "internal_error", str(e)))


def _error(kind: str, message: str) -> CallFailed:
    return CallFailed(error=CallError(kind, _clip(" ".join(message.split()), 1000)))


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _kind(e: EvogitError) -> str:
    """An error's kind for the model: its own `kind`, else its class in snake case (ToolNotFound: tool_not_found)."""
    kind = getattr(e, "kind", None)
    return kind if isinstance(kind, str) else _CAMEL.sub("_", type(e).__name__).lower()


def _fit(call: CallResult) -> str:
    """Compact JSON of a result, at most MAX_RESULT characters: a longer output is cut to a string, a longer
    list of tools to its first ones (with how many there are), and says so."""
    text = _compact(call)
    if len(text) <= MAX_RESULT:
        return text
    result = msgspec.to_builtins(call)
    if "output" in result:
        return _compact({**result, "output": _compact(result["output"])[: MAX_RESULT // 2], "truncated": True})
    if isinstance(result.get("tools"), list):
        tools, size = [], 200
        for t in result["tools"]:
            size += len(_compact(t)) + 1
            if size > MAX_RESULT:
                break
            tools.append(t)
        return _compact({**result, "tools": tools, "truncated": True, "total": len(result["tools"]),
                         "hint": "search_tools finds the ones for a task"})
    return _compact(_error("result_too_large", f"the result has {len(text):,} characters, more than {MAX_RESULT:,}"))


class _RunArguments(msgspec.Struct):
    binary_id: str
    input_json: str


def _arguments(name: str, text: str) -> Any:
    """A call's arguments decoded (strictly, bounded as every document evogit reads)."""
    try:
        return jsonio.decode(text, what="arguments")
    except InvalidJSON as e:
        raise ToolCallError("bad_arguments", f"{name}: {str(e).replace('`', '')}") from None


def _task(text: str) -> str:
    if not text.strip():
        raise ToolCallError("bad_arguments", "task_description is blank: say in words what the tool must do")
    return text


def _compact(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
