"""Solving a task: reuse before regenerate.

    task (+ input) ──► search: the top K with their records
                  ──► decide (evogit.decide): confidently the right tool, and the input validates?
                        yes ──► run it in the sandbox: the answer, with zero model tokens
                        no  ──► the model, through the catalog's tool functions (standard OpenAI `tools` /
                                `tool_calls`, results sent back as `role: tool` messages), for at most
                                `max_steps` calls: it runs, describes, searches, mutates or creates, then
                                answers; if its turn ends with no answer, no run that served the task and
                                nothing written, the solve creates a tool for the task itself and runs it
                        no model configured ──► which tool is likely and how sure, and how to configure one

The first request shows the model the candidates (name@fp, first sentence, input schema, record) and the
decision's confidence. Runs go through the runtime as `evogit run` does (the repository's limits, schemas,
sandbox), and the version that served the task is remembered (retrieval learns: the tasks a tool
solved are among the texts it is known for); a tool created or mutated inside the loop is committed, tagged
and runnable at the next step. Each solve is one `Solved` event: how it was served and what its model calls
cost (`evogit stats --cost` sums them, with the tokens reuse saved). In the loop, only the version whose run
answered is credited with the task (a solved `Feedback`): a tool the model tried first and dropped is not.

Servers whose tool calling is weak: a model may write its call as text (llama-cpp-python parses no call with
`tool_choice: "auto"`; a GGUF chat template shows `<tool_call>{…}</tool_call>`, and a 1.5B model copies it with
its braces doubled). A reply with no `tool_calls` is read for calls written as text (`llm.reply.text_tool_calls`);
calls found are carried out like real ones, and go back as an assistant message with those calls as
`tool_calls` (synthetic ids, no `content`) followed by `role: tool` results: OpenAI accepts any id that
the tool messages answer, llama.cpp and llama-cpp-python render such a message through the model's own chat
template — so the model sees its call in the format it should have used — whereas a user message of results
after an assistant message of call-like text would teach it to go on writing calls as text. A reply that looks
like a call but cannot be read is neither carried out nor an answer: the model is told (a user message) and
the loop goes on. The final reply is an answer only if it is non-empty, not cut off, and not a call; the
serving run's output echoed as the answer is the answer, whatever its keys (and its whole result echoed, the
`{"ok": true, "version", "output", …}` a run returns, is that output) — except that a task which names its
answer's fields ('… and answer {"count": n}') is held to them: a run whose output lacks one is shown to the model
as not doing the task and does not serve it (on the fast path it is also failed feedback, and the model is asked),
and a JSON answer that lacks one is sent back, at most MAX_UNFIT times before the solve fails (seen live: a 1.5B
model answered "split 135 minutes into hours and minutes" with the output of a list-splitting tool). A reply that only repeats runs
already made in the solve (the same function, the same arguments: small models do, after seeing the result)
is not carried out again: the repeated run's output is the answer. An answer given when no run in
the solve succeeded is the model's own (`served_by` None, and its step says so): it is kept as an answer
(a task may need no tool, or the model explains why the input cannot be served), and `stats --cost` counts
it as unserved.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .. import events as ev
from .. import jsonio
from ..decide import Decision, decide
from ..errors import InvalidInput, InvalidJSON, ModelError
from ..events import short_key
from ..llm.client import ModelClient, ToolCall
from ..llm.reply import text_tool_calls
from ..runtime import Runtime
from ..runtime.results import CallError, CallFailed, Ran, SolveReport, Written
from ..runtime.running import check_task
from ..sandbox import Limits
from . import prompt
from .catalog import ANSWER, BY_NAME, Catalog, Served, answer_fields, misfit, openai_tools, output_digest

FUNCTION_NAMES = frozenset(BY_NAME)

ANSWER_PARAMETER = next(iter(ANSWER.parameters["properties"]))  # "result"

DEFAULT_MAX_STEPS = 8  # model calls in one solve
DEFAULT_MAX_WRITES = 2  # creates and mutations in one solve (each call counts, green or not)
DEFAULT_DEADLINE = 1200.0  # seconds a solve may take: no model call or new tool starts after it
K = 5  # candidates retrieved and shown to the model
MAX_INPUT_SHOWN = 16_000  # characters of the input put in the first request
MAX_CALLS = 16  # function calls carried out per model reply; the rest are answered with an error
MAX_UNFIT = 2  # answers without the fields the task names that are sent back before the solve fails
#: The `tool_choice` of a solve's first model call: "auto"; "required" (with the `answer` function offered, so
#: that every reply of a server that honours it is a call); "named" (run_binary named, when there are candidates)
CHOICES = ("auto", "required", "named")
FIRST_CHOICE = "auto"
NO_MODEL = ("no model is configured (set EVOGIT_MODEL and OPENAI_API_KEY, and OPENAI_BASE_URL for a server other "
            "than OpenAI's, or git config evogit.model / evogit.baseUrl)")


@dataclass
class Step:
    """One thing a solve did, as it happened: search, fast_path, model, call, answer, stop."""

    kind: str
    text: str  # one line for people
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # since the solve began

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "seconds": round(self.seconds, 3), **self.data}


@dataclass
class SolveResult:
    """What a solve answered, which version served it, and what it cost."""

    task: str
    ok: bool
    outcome: str  # answered, no_model, step_limit, deadline, model_error, failed
    answer: Any = None  # the serving run's output, or the model's final reply (JSON if it is JSON)
    served_by: str | None = None  # name@fingerprint of the version whose run answered
    model_used: bool = False
    fast_path: bool = False
    decision: Decision | None = None
    steps: list[Step] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    author_tokens: int = 0  # tokens of tools written inside the solve
    written: list[str] = field(default_factory=list)
    superseded: list[dict[str, str]] = field(default_factory=list)  # cases a mutation here superseded, whole
    message: str = ""  # why it is not ok, one line

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens + self.author_tokens

    def to_json(self) -> SolveReport:
        return SolveReport(self.answer, self.served_by, self.model_used, [s.to_json() for s in self.steps],
                           self.tokens, self.ok, self.outcome, self.fast_path,
                           round(self.decision.confidence, 4) if self.decision else None, self.written,
                           self.superseded, None if self.ok else self.message)


class Solver:
    """Solves tasks with one runtime's library and, when the fast path does not serve, a model (or none)."""

    def __init__(self, rt: Runtime, client: ModelClient | Callable[[], ModelClient | None] | None, *,
                 max_steps: int = DEFAULT_MAX_STEPS,
                 rounds: int = 3, limits: Limits | None = None, progress: Callable[[Step], None] | None = None,
                 first_choice: str = FIRST_CHOICE, max_writes: int = DEFAULT_MAX_WRITES,
                 deadline: float = DEFAULT_DEADLINE):
        if max_steps < 1:
            raise InvalidInput("--max-steps must be at least 1")
        if max_writes < 0:
            raise InvalidInput("--max-writes must be 0 or more")
        if not deadline > 0 or deadline == float("inf"):
            raise InvalidInput("--deadline must be a positive number of seconds")
        self.max_writes, self.deadline = max_writes, deadline
        if first_choice not in CHOICES:
            raise InvalidInput(f"first_choice must be one of {', '.join(CHOICES)}")
        self.first_choice = first_choice
        # a function for the client is called only when the fast path does not serve: the configured model may be
        # the embedded one, whose server a solve served from the library has no reason to start
        self._connect = client if callable(client) else None
        self.client: ModelClient | None = None if callable(client) else client
        self.rt, self.max_steps, self.rounds, self.limits = rt, max_steps, rounds, limits
        self.progress = progress or (lambda step: None)

    def _model(self) -> ModelClient | None:
        if self._connect is not None:
            self.client, self._connect = self._connect(), None
        return self.client

    def solve(self, task: str, input_json: bytes | None = None, *, fast_path: bool = True) -> SolveResult:
        """Solve `task`, on `input_json` (one JSON document) if given."""
        check_task(task)
        task = task.strip()
        limits = self.limits or self.rt.default_limits()
        value = _decode_input(input_json, limits) if input_json is not None else None
        t0 = time.monotonic()
        result = SolveResult(task, False, "failed")

        def step(kind: str, text: str, **data: Any) -> None:
            result.steps.append(Step(kind, text, data, time.monotonic() - t0))
            self.progress(result.steps[-1])

        hits, embedder = self.rt.search(task, K)
        # runs inside the loop do not carry the task: a model may try a tool that does not serve it before one
        # that does, and only the version whose run answered is credited with the task (`_done`)
        catalog = Catalog(self.rt, self.client, solving=task, rounds=self.rounds, limits=limits,
                          progress=lambda message: step("author", message), max_writes=self.max_writes,
                          deadline=t0 + self.deadline, by_fit=input_json is not None)
        top = f"; top {_short(hits[0].key)} (p {hits[0].probability:.2f})" if hits else ""
        step("search", f"{len(hits)} candidate{'s' if len(hits) != 1 else ''}{top}",
             candidates=[h.key for h in hits])

        def input_ok(key: str) -> bool:
            return self.rt.load(key).contract.input_problem(value) is None

        decision = decide(hits, input_ok if input_json is not None else None, model_id=embedder.model_id)
        result.decision = decision
        failed_fast = ran_line = ""
        if not fast_path:
            step("fast_path", "off (--no-fast-path)", confidence=round(decision.confidence, 4))
        elif decision.reuse and decision.tool is not None and input_json is not None:
            step("fast_path", f"{_short(decision.tool)}: {decision.reason}", tool=decision.tool,
                 confidence=round(decision.confidence, 4))
            outcome = self.rt.run(decision.tool, input_json, limits, task=task)
            ran = catalog.ran(outcome)
            step("run", f"{_short(decision.tool)}: {_outcome_line(ran)}", result=msgspec.to_builtins(ran))
            if isinstance(ran, Ran) and ran.answers_task is msgspec.UNSET:
                result.ok, result.outcome, result.fast_path = True, "answered", True
                result.answer, result.served_by = outcome.output, ran.version
                return self._done(result, catalog)
            ran_line = _outcome_line(ran)
            if isinstance(ran, Ran):  # it ran, but its output is not what the task asks for: evidence against it
                self.rt.feedback(decision.tool, task, False, note=f"evogit solve, fast path: {ran.note}")
                failed_fast = f"The fast path ran {decision.tool} on the input, and {ran_line}"
            else:
                failed_fast = f"The fast path ran {decision.tool} on the input and it failed: {ran_line}"
        else:
            step("fast_path", f"no: {decision.reason}", tool=decision.tool, confidence=round(decision.confidence, 4))

        catalog.client = self._model()
        if catalog.client is None:
            result.outcome = "no_model"
            if failed_fast:  # the likely tool ran and refused the input: its own words, as `evogit run` says them
                result.message = f"{_short(decision.tool)}: {ran_line}; {NO_MODEL} to try another way"
            else:
                why = decision.reason if fast_path else "--no-fast-path"
                likely = (f"the likely tool is {_short(decision.tool)} (confidence {decision.confidence:.2f}): "
                          f"`evogit run {decision.tool.partition('@')[0]}` on the input"
                          if decision.tool else "the library has no tool for it")
                result.message = f"no fast path ({why}) and {NO_MODEL}; {likely}"
            step("stop", result.message)
            return self._done(result, catalog)

        return self._with_model(result, catalog, hits, value, input_json, failed_fast, step)

    def _with_model(self, result: SolveResult, catalog: Catalog, hits: list[Any], value: Any,
                    input_json: bytes | None, failed_fast: str, step: Callable[..., None]) -> SolveResult:
        assert self.client is not None and result.decision is not None
        shown = _shown(value) if input_json is not None else None
        first = prompt.solve_message(result.task, shown, [catalog.candidate(h) for h in hits],
                                     result.decision.confidence, result.decision.reason)
        if failed_fast:
            first += "\n\n" + failed_fast
        messages: list[dict[str, Any]] = [{"role": "system", "content": prompt.SOLVE_SYSTEM},
                                          {"role": "user", "content": first}]
        tools = openai_tools() + ([ANSWER.openai()] if self.first_choice != "auto" else [])
        names = [t["function"]["name"] for t in tools]
        result.model_used = True
        ran: dict[str, Served] = {}  # the successful runs of this solve, by call (name and arguments)
        unserving: dict[str, str] = {}  # why, by call, of the successful runs that did not serve the task
        unfit = 0  # answers sent back for lacking the fields the task names
        empty = False  # an empty reply was asked again (once)
        unread = ""  # the last reply that was neither an answer nor a readable call
        for n in range(1, self.max_steps + 1):
            if catalog.deadline is not None and time.monotonic() >= catalog.deadline:
                result.outcome = "deadline"
                result.message = f"no answer within the solve's deadline of {self.deadline:g} s (--deadline)"
                step("stop", result.message)
                return self._done(result, catalog)
            choice = self._choice(n, hits)
            try:
                reply = self.client.chat(messages, purpose="solve", tools=tools, tool_choice=choice, round=n)
            except ModelError as e:
                result.outcome, result.message = "model_error", f"the model call failed: {e}"
                step("stop", result.message, kind_of_error=e.kind)
                return self._done(result, catalog)
            result.prompt_tokens += reply.prompt_tokens
            result.completion_tokens += reply.completion_tokens
            calls, as_text, problem = list(reply.tool_calls), False, None
            if not calls and not self._echoes(reply.content, catalog):
                found = text_tool_calls(reply.content, id_prefix=f"text{n}", functions=names)
                calls, problem, as_text = found.calls, found.problem, bool(found.calls)
            shown_calls = ", ".join(_clip(c.name, 40) for c in calls[:MAX_CALLS])
            what = (f"{shown_calls} (written as text)" if as_text else shown_calls) if calls else \
                "a call that cannot be read" if problem else "answers" if (reply.content or "").strip() else "nothing"
            step("model", f"model call {n}: {what} ({reply.prompt_tokens + reply.completion_tokens} tokens)",
                 tokens=reply.prompt_tokens + reply.completion_tokens, written_as_text=as_text)
            # calls written as text go back as the real tool calls they stand for (see the module's docstring)
            messages.append(_assistant(None if as_text else reply.content, calls))
            if not calls:
                text = (reply.content or "").strip()
                if not text and reply.finish_reason != "length" and not empty:
                    # seen live: a 1.5B model, told that its run did not serve the task, replied nothing
                    empty = True
                    step("empty", "an empty reply: the model is asked again, once")
                    messages[-1] = {"role": "user", "content": prompt.SOLVE_EMPTY}  # not an empty assistant turn
                    continue
                if not text or reply.finish_reason == "length":
                    result.outcome = "failed"
                    result.message = ("the model replied with neither an answer nor a function call" if not text
                                      else "the model's reply was cut off (finish_reason length)")
                    return self._stalled(result, catalog, input_json, step)
                if problem is not None:  # neither an answer nor a call: the model is told, and the loop goes on
                    step("unread", f"not carried out and not an answer: {_clip(problem, 160)}", problem=problem)
                    if text == unread:  # the same again, after being told (live: 7 times): its turn is over
                        result.outcome = "failed"
                        result.message = f"the model wrote the same unreadable call twice: {_clip(problem, 200)}"
                        return self._stalled(result, catalog, input_json, step)
                    unread = text
                    messages.append({"role": "user", "content": prompt.solve_unread(problem)})
                    continue
                answer = _answer(text)
                if self.first_choice != "auto" and isinstance(answer, dict) and set(answer) == {ANSWER_PARAMETER}:
                    answer = _answer_call(text)[0]  # the answer function's arguments, written without its name
                if (why := _unfit(result.task, _unwrapped(answer, catalog), catalog, step)) is None:
                    return self._answered(result, catalog, answer, step)
                unfit += 1
                if unfit > MAX_UNFIT:
                    return self._stop_unfit(result, catalog, why, input_json, step)
                step("unfit", f"not the task's answer: {_clip(why, 160)}", problem=why)
                messages.append({"role": "user", "content": prompt.solve_unfit(why)})
                continue
            answers = [c for c in calls if c.name == ANSWER.name]
            if answers and len(answers) == len(calls):
                answer, problem = _answer_call(answers[0].arguments)
                if problem is None and (problem := _unfit(result.task, _unwrapped(answer, catalog), catalog, step)) is None:
                    return self._answered(result, catalog, answer, step)
                unfit_answer = answer is not None and problem is not None
                if unfit_answer and (unfit := unfit + 1) > MAX_UNFIT:
                    return self._stop_unfit(result, catalog, problem or "", input_json, step)
                step("unfit" if unfit_answer else "unread", f"not an answer: {_clip(problem or '', 160)}",
                     problem=problem)
                for c in answers:  # every call is answered (OpenAI refuses a next request that leaves one out)
                    messages.append({"role": "tool", "tool_call_id": c.id, "content": _refusal(
                        "not_the_answer", prompt.solve_unfit(problem or "")) if unfit_answer else _refusal(
                        "bad_arguments", f"{problem}: call answer again with the result as a JSON string")})
                continue
            if all(_call_key(c, catalog) in ran for c in calls):  # the same runs again: it has what it wanted
                catalog.last = ran[_call_key(calls[-1], catalog)]
                step("repeat", f"model call {n} repeats a run it already made: that run's output is the answer")
                return self._answered(result, catalog, catalog.last.output, step)
            if n == self.max_steps:  # no model call would read their results: they are not carried out
                break
            for i, call in enumerate(calls):
                if i >= MAX_CALLS:
                    out = _refusal("too_many_calls", f"at most {MAX_CALLS} function calls are carried out per reply")
                elif call.name == ANSWER.name:
                    out = _refusal("answer_too_soon", "answer was called with other functions: call it alone, "
                                                      "once their results are in")
                elif (key := _call_key(call, catalog)) in unserving:  # seen live: a 1.5B model ran it again
                    out = _refusal("repeated_run", f"not carried out: you made this run already, and {unserving[key]}. "
                                                   "create_binary writes a tool that does the task")
                else:
                    before, known = catalog.last, len(catalog.unserved)
                    out = catalog.call(call.name, call.arguments)
                    if catalog.last is not None and catalog.last is not before:
                        ran[key] = catalog.last
                    elif len(catalog.unserved) > known:
                        unserving[key] = next(reversed(catalog.unserved.values())).why
                messages.append({"role": "tool", "tool_call_id": call.id, "content": out})
                if i < MAX_CALLS:
                    step("call", f"{_clip(call.name, 40)}({_clip(call.arguments, 120)}) -> {_clip(out, 160)}",
                         function=call.name, arguments=_clip(call.arguments, 2000),
                         result=jsonio.decode(out, what="result"))
        result.outcome = "step_limit"
        result.message = (f"no answer within {self.max_steps} model calls (--max-steps); the last one's "
                          f"{len(calls)} function calls were not carried out" if calls else
                          f"no answer within {self.max_steps} model calls (--max-steps); the last reply was a "
                          "call that could not be read")
        return self._stalled(result, catalog, input_json, step)

    def _choice(self, n: int, hits: list[Any]) -> Any:
        """The `tool_choice` of model call `n`: "auto" after the first; the first as `first_choice` says."""
        if n > 1 or self.first_choice == "auto":
            return "auto"
        if self.first_choice == "named" and hits:
            return {"type": "function", "function": {"name": "run_binary"}}
        return "required"

    @staticmethod
    def _echoes(content: str | None, catalog: Catalog) -> bool:
        """Whether a reply is the last successful run's output as it is (an answer, whatever its keys)."""
        if catalog.last is None or not (content or "").strip():
            return False
        return bool(_answer(content) == catalog.last.output)

    def _answered(self, result: SolveResult, catalog: Catalog, answer: Any,
                  step: Callable[..., None]) -> SolveResult:
        """The model's final reply is the answer. It is served by the last version whose run succeeded in this
        solve; when none did, it is the model's own answer (served_by None, and the step says so)."""
        last = catalog.last
        result.answer = _unwrapped(answer, catalog)
        if isinstance(result.answer, dict) and result.answer.get("ok") is False and (
                last is None or result.answer != last.output):
            # a failure report shaped like a function's result, that no run of this solve returned: small models
            # make these up ({"ok": false, "error_kind": "invalid_input", ...}) after a run that succeeded
            if last is None:
                result.answer, result.outcome = None, "failed"
                result.message = f"the model reports a failure no run showed: {_clip(jsonio.encode(answer), 200)}"
                step("stop", result.message)
                return self._done(result, catalog)
            step("contradicted", f"the model's reply reports a failure that {_short(last.version)}'s run does not "
                                 "show; that run's output is the answer", reply=result.answer)
            result.answer = last.output
        if last is not None:
            result.served_by = last.version
        result.ok, result.outcome = True, "answered"
        step("answer", f"served by {_short(result.served_by)}" if result.served_by else
             "the model's own answer: no tool's run served it", served_by=result.served_by)
        return self._done(result, catalog)

    def _stop_unfit(self, result: SolveResult, catalog: Catalog, why: str, input_json: bytes | None,
                    step: Callable[..., None]) -> SolveResult:
        """The model kept answering with something that is not the task's answer."""
        result.outcome = "failed"
        result.message = f"no answer from a tool that does the task: {why}"
        return self._stalled(result, catalog, input_json, step)

    def _stalled(self, result: SolveResult, catalog: Catalog, input_json: bytes | None,
                 step: Callable[..., None]) -> SolveResult:
        """The model's turn ended without an answer (`result.message` says how). If no run served the task and
        nothing was written, the solve takes the step the model did not: create_binary for the task (with the
        input's shape), once, then the new tool run on the input. Seen live: a 1.5B model ran tools that did not
        do the task, or none, and never created one from inside a solve (every bench run so far)."""
        if (input_json is None or catalog.last is not None or catalog.writes or self.max_writes == 0
                or catalog.deadline is not None and time.monotonic() >= catalog.deadline):
            step("stop", result.message)
            return self._done(result, catalog)
        stalled = result.message
        step("create", f"the model stopped without a tool that does the task ({_clip(stalled, 120)}): the solve "
                       "asks for one (create_binary)", why=stalled)
        text = input_json.decode("utf-8", "replace")
        task = f"{result.task}\n\nThe input is one JSON document like this one: {_clip(text, MAX_INPUT_SHOWN)}"
        written = catalog.result("create_binary", jsonio.encode({"task_description": task}))
        if not isinstance(written, Written):
            why = _outcome_line(written) if isinstance(written, CallFailed) else "no version came back"
            result.message = f"{stalled}; the tool the solve asked for was not written: {why}"
            step("stop", result.message)
            return self._done(result, catalog)
        step("written", f"{_short(written.version)} written ({written.attempts} attempts, {written.tokens} tokens)",
             version=written.version)
        ran = catalog.result("run_binary", jsonio.encode({"binary_id": written.version, "input_json": text}))
        if not isinstance(ran, (Ran, CallFailed)):
            raise AssertionError(f"run_binary returned {type(ran).__name__}")
        step("run", f"{_short(written.version)}: {_outcome_line(ran)}", result=msgspec.to_builtins(ran))
        if isinstance(ran, Ran) and ran.answers_task is msgspec.UNSET:
            result.message = ""
            return self._answered(result, catalog, ran.output, step)
        result.message = f"{stalled}; the tool the solve asked for, {_short(written.version)}, {_outcome_line(ran)}"
        step("stop", result.message)
        return self._done(result, catalog)

    def _done(self, result: SolveResult, catalog: Catalog) -> SolveResult:
        result.author_tokens, result.written = catalog.author_tokens, list(catalog.written)
        result.superseded = list(catalog.superseded)
        if result.ok and result.served_by and not result.fast_path:  # the fast path's run carried the task
            self.rt.feedback(result.served_by, result.task, True, note="evogit solve: its run answered the task")
        self.rt.log.append([ev.Solved(
            task=result.task, outcome=result.outcome, served_by=result.served_by or "", fast_path=result.fast_path,
            model_used=result.model_used, steps=sum(s.kind == "model" for s in result.steps),
            prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
            author_tokens=result.author_tokens, written=result.written,
            confidence=round(result.decision.confidence, 4) if result.decision else 0.0)])
        return result


def _decode_input(data: bytes, limits: Limits) -> Any:
    if len(data) > limits.max_input:
        raise InvalidInput(f"the input is larger than {limits.max_input:,} bytes (raise --max-input or git config "
                           "evogit.maxInput)")
    try:
        return jsonio.decode(data, what="input")
    except InvalidJSON as e:
        raise InvalidInput(str(e)) from None


def _shown(value: Any) -> str:
    text = jsonio.encode(value)
    if len(text) <= MAX_INPUT_SHOWN:
        return text
    return text[:MAX_INPUT_SHOWN] + f"… (cut: {len(text):,} characters in all)"


def _answer(content: str | None) -> Any:
    """The model's final reply: the JSON it wrote (the serving output, as it is told), else its text."""
    text = (content or "").strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        return jsonio.decode(text, what="answer")
    except InvalidJSON:
        return (content or "").strip()


def _assistant(content: str | None, calls: list[ToolCall]) -> dict[str, Any]:
    """A reply as the assistant message sent back: its calls as `tool_calls`, its content only when it has some.
    `content: null` is what OpenAI sends, but llama-cpp-python's server refuses it (HTTP 500: the content of an
    assistant message must be a string); every server accepts it left out beside `tool_calls`."""
    out: dict[str, Any] = {"role": "assistant"}
    if content or not calls:
        out["content"] = content or ""
    if calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                             for c in calls]
    return out


def _answer_call(arguments: str) -> tuple[Any, str | None]:
    """The answer given through the `answer` function: its `result` (JSON if it is JSON), or, when the arguments
    cannot be read (a small model escapes the JSON inside the string twice, or not at all), why."""
    try:
        args = jsonio.decode(arguments, what="the answer's arguments")
    except InvalidJSON as e:
        return None, str(e).replace("`", "")
    if isinstance(args, dict) and len(args) == 1:
        (value,) = args.values()
        return (_answer(value) if isinstance(value, str) else value), None
    return args, None


def _call_key(call: ToolCall, catalog: Catalog) -> str:
    """A call written one way: a run (run_binary, or a tool's name used as the function's) as the version it
    names, resolved (`url-parse@1be027b063a6` and `url-parse@1be027b063a6ebe8…` are one version) and its input;
    any other call as its function's name and its arguments (keys sorted when they are JSON)."""
    try:
        value = jsonio.decode(call.arguments or "{}", what="arguments")
    except (InvalidJSON, ValueError):
        return call.name + " " + call.arguments
    target, given = call.name, value
    if call.name == "run_binary" and isinstance(value, dict):
        target, given = str(value.get("binary_id")), value.get("input_json")
    elif call.name in FUNCTION_NAMES:
        return call.name + " " + jsonio.encode(value, sort_keys=True)
    elif isinstance(value, dict) and set(value) <= {"binary_id", "input_json"} and "input_json" in value:
        given = value["input_json"]
    if isinstance(given, str):
        with contextlib.suppress(InvalidJSON, ValueError):
            given = jsonio.decode(given, what="input_json")
    return f"run {catalog.tool_named(target) or target} {jsonio.encode(given, sort_keys=True)}"


def _refusal(kind: str, message: str) -> str:
    return msgspec.json.encode(CallFailed(error=CallError(kind, message))).decode()


def _unwrapped(answer: Any, catalog: Catalog) -> Any:
    """The answer, or the last serving run's output when the answer is that run's whole result echoed (as small
    models do: `{"ok": true, "version": …, "output": …}`)."""
    last = catalog.last
    if (last is not None and isinstance(answer, dict) and answer.get("ok") is True and "output" in answer
            and answer["output"] == last.output):  # not by its version: small models garble long hex digits
        return last.output
    return answer


def _unfit(task: str, answer: Any, catalog: Catalog, step: Callable[..., None]) -> str | None:
    """Why an answer is not the task's: it lacks a field the task names (catalog.misfit), or it is the output of
    a run that did not serve the task (Catalog.unfit: echoed as it is, or as the run's whole result). Text is the
    model saying why the task cannot be done, unless the task names its answer's fields: then text is not it
    either (seen live: "To count the words … you can use the `word-count@37b3c4ff99ff` tool."). A run that did not
    serve only by its fit (2.1% of right tools' runs on ToolE's test split fall below the floor) serves when the model,
    told so, answers with its output again."""
    if not isinstance(answer, (dict, list)):
        fields = answer_fields(task)
        return f"the task asks for a JSON answer with {', '.join(fields)}; this is text" if fields else None
    if catalog.unserved:
        echoed = [answer, answer["output"]] if isinstance(answer, dict) and "output" in answer else [answer]
        for value in echoed:
            if (unserved := catalog.unserved.get(output_digest(value))) is None:
                continue
            if unserved.by_fit and unserved.told:
                catalog.last = Served(unserved.version, value)
                step("kept", f"the model answers with {_short(unserved.version)}'s output again, told that it is "
                             "not known for such tasks: it serves the task", served_by=unserved.version)
                return None
            unserved.told = True
            return unserved.why
    return misfit(task, answer)


def _outcome_line(ran: Ran | CallFailed) -> str:
    if isinstance(ran, CallFailed):
        return f"{ran.error.kind}: {_clip(ran.error.message, 200)}"
    if ran.answers_task is False:
        return f"ran ({ran.wall_ms:.1f} ms), but {ran.note}"
    return f"ok ({ran.wall_ms:.1f} ms)"


def _short(key: str | None) -> str:
    return short_key(key) if key else "-"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
