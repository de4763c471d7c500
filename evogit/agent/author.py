"""Authoring: a model creates a tool from a task, repairs it from the compiler's and the tests' own words until
it is green, specialises an existing tool without losing what the parent was tested to do, and is taught by a
person's examples.

Each attempt is one chat completion in the authoring wire format (`wire.py`) and one sandboxed build of the
files it returned, *before* anything is committed: only a green package becomes a commit (the build is then a
cache hit) and a tag. Every attempt, green or red, is an `AuthorAttempt` event with its round, the stage it
reached, the error kind and the tokens it cost. A red attempt's evidence — cargo's structured diagnostics, or
the first failing case with input, expected and actual — goes back to the model in the next round, with a
one-line summary of each earlier round instead of the whole chat (`prompt.repair_message`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .. import events as ev
from .. import jsonio
from ..build import BuildRecord
from ..contract import checker
from ..errors import EvogitError, InvalidName, InvalidPackage, ModelError, ToolExists
from ..llm.client import ChatResult, ModelClient
from ..manifest import Case, ToolManifest, check_name, manifest_json, parse_cases, parse_manifest
from ..repo import Version, branch_ref
from ..runtime import Runtime
from ..runtime.results import Attempt, AuthorReport, Supersession
from ..runtime.running import check_task
from . import mend, prompt, wire

DEFAULT_ROUNDS = 3  # repair rounds after the first attempt
#: Model errors that are the reply's, not the server's: the next round asks again, with the evidence.
ROUND_ERRORS = frozenset({"timeout", "bad_response", "refused"})
TEMPERATURE_STEP, MAX_TEMPERATURE = 0.2, 1.0  # each repair round asks a little less greedily
#: A fresh request (the first one again, after a repair that got no further) is sampled this warm at least: at the
#: configured 0.2 the real 1.5B model answered the first request with the same code run after run.
FRESH_TEMPERATURE = 0.8
MAX_SUFFIX = 99

Progress = Callable[[str], None]


@dataclass
class AuthorResult:
    """The outcome of create / mutate / teach: a green tagged version, or every attempt that was not."""

    kind: str  # create, mutate, teach
    tool: str
    ok: bool
    version: Version | None = None
    parent: str | None = None  # name@fingerprint of the version mutated
    parent_reason: str = ""  # why that version was chosen as the parent
    attempts: list[Attempt] = field(default_factory=list)
    superseded: list[wire.Supersede] = field(default_factory=list)
    mended: list[str] = field(default_factory=list)  # what was put back or ignored in the reply's cases
    notes: str = ""
    model: str = ""
    commit: str | None = None
    message: str = ""  # why it failed, one line

    @property
    def tokens(self) -> int:
        return sum(a.prompt_tokens + a.completion_tokens for a in self.attempts)

    def to_json(self) -> AuthorReport:
        return AuthorReport(self.kind, self.ok, self.tool, self.version.short if self.version else None,
                            self.version.fingerprint if self.version else None, self.parent,
                            self.parent_reason or None, self.model, self.tokens, self.attempts,
                            [Supersession(s.case, s.reason) for s in self.superseded], self.mended, self.notes,
                            self.commit, None if self.ok else self.message)


@dataclass
class _Job:
    kind: str
    task: str
    first: str  # the first round's user message
    name: str | None  # fixed name, or None when the model chooses (create only)
    parent: Version | None = None
    parent_reason: str = ""
    parent_cases: list[Case] = field(default_factory=list)
    examples: list[Case] = field(default_factory=list)
    parent_files: dict[str, bytes] = field(default_factory=dict)  # what a reply's missing blocks are taken from
    fork_weakened: bool = False  # a mutation that supersedes a parent's case becomes a new tool, not its version


class Author:
    """Writes tools with a model into one runtime's library."""

    def __init__(self, rt: Runtime, client: ModelClient, *, rounds: int = DEFAULT_ROUNDS,
                 progress: Progress | None = None):
        if rounds < 0:
            raise EvogitError("repair rounds must be 0 or more")
        self.rt, self.client, self.rounds = rt, client, rounds
        self.progress = progress or (lambda message: None)

    # -- the three ways in -------------------------------------------------------------------------------------
    def create(self, task: str, name: str | None = None, examples: Sequence[Any] = ()) -> AuthorResult:
        """A new tool on a new branch `tools/<name>` (the model names it unless `name` is given)."""
        task = _task(task)
        if name is not None:
            check_name(name)
            if branch_ref(name) in self.rt.repo.git.references:
                raise ToolExists(f"a tool named {name!r} already exists (mutate it, or pick another name)")
        cases = wire.example_cases(list(examples))
        return self._author(_Job("create", task, prompt.create_message(task, name, cases), name, examples=cases))

    def mutate(self, spec: str, task: str, name: str | None = None, examples: Sequence[Any] = (),
               kind: str = "mutate", fork_weakened: bool = False) -> AuthorResult:
        """A new version of a tool (a child commit on its branch) or, with `name`, a new tool forked at the
        parent's source commit. The parent's cases are inherited unless the reply supersedes them by name.
        `fork_weakened`: a result that supersedes any of them is forked as a new tool (`<parent>-2`, ...) instead
        of becoming the parent's next version (a model inside a solve)."""
        task = _task(task)
        if name is not None:
            check_name(name)
            if branch_ref(name) in self.rt.repo.git.references:
                raise ToolExists(f"a tool named {name!r} already exists")
        parent, reason = self.parent_for(spec, task)
        build = self.rt.repo.commit(parent.build_commit)
        files, _ = self.rt.repo.files(build.tree)
        files = {p: d for p, d in files.items() if not p.startswith("build/")}
        parent_cases = parse_cases(files["tests/cases.jsonl"])
        cases = wire.example_cases(list(examples))
        first = prompt.mutate_message(task, parent.short, files, parent_cases, self.failures(parent), name, cases)
        return self._author(_Job(kind, task, first, name or parent.name, parent, reason, parent_cases, cases, files,
                                 fork_weakened=fork_weakened and name is None))

    def teach(self, tool: str, instruction: str, examples: Sequence[Any]) -> AuthorResult:
        """A mutation whose examples (`{"input", "expect"}`) become new cases that must pass."""
        if not examples:
            raise InvalidPackage("teach needs at least one example: --example '{\"input\": ..., \"expect\": ...}'")
        return self.mutate(tool, instruction, None, examples, kind="teach")

    # -- choosing a parent ---------------------------------------------------------------------------------------
    def parent_for(self, spec: str, task: str) -> tuple[Version, str]:
        """`name@fp` is that version. A bare name is the version with the best record for tasks like this one:
        the most net successes (solved feedback and successful runs minus failures) on tasks that share at least
        half of its words, then the best success rate over all its runs, then the newest. Returns it and why."""
        if "@" in spec:
            return self.rt.repo.resolve(spec), "named by the caller"
        records = parent_records(self.rt, spec, task)
        newest = next(v for v, _, _, is_newest in records if is_newest)
        if len(records) < 2:
            return newest, "its only green version"
        best, similar, rate, _ = max(records, key=lambda r: (r[1], r[2], r[3]))
        if best == newest and similar <= 0:
            return best, "the newest green version (no version has a better record for similar tasks)"
        return best, (f"the best record for similar tasks: net {similar} solved, {rate * 100:.0f}% of its runs ok"
                      + ("" if best == newest else f" (newest is {newest.short})"))

    def failures(self, v: Version, limit: int = 8) -> list[str]:
        """Where a version failed: its runs' error kinds with counts, and failed feedback with the notes."""
        out: list[str] = []
        m = self.rt.projections().state.versions.get(v.key)
        if m is not None:
            out += [f"{n} runs ended in {kind}" for kind, n in sorted(m.errors.items(), key=lambda kv: -kv[1])]
        notes: list[str] = []
        for _, _, e in self.rt.log.read():
            if isinstance(e, ev.Feedback) and not e.solved and e.tool == v.name and e.fingerprint == v.fingerprint:
                notes.append(f"failed the task {e.task!r}" + (f": {e.note}" if e.note else ""))
        return (out + notes[-limit:])[:limit]

    # -- the loop ------------------------------------------------------------------------------------------------
    def _author(self, job: _Job) -> AuthorResult:
        parent = job.parent.key if job.parent is not None else None
        result = AuthorResult(job.kind, job.name or "", False, parent=parent, parent_reason=job.parent_reason)
        system = prompt.system_prompt()
        history: list[str] = []
        files: dict[str, bytes] = {}
        evidence = shown = text = ""
        last: dict[str, bytes] = {}
        repeats = fresh = 0  # replies identical to an earlier one; fresh requests made
        repeated = False  # the last reply was an earlier one again, word for word
        seen: set[tuple[tuple[str, bytes], ...]] = set()  # every package built so far
        request, score, repaired = "first", 0.0, 0.0  # the last round's request, how far it got, and its base's
        for rnd in range(1, self.rounds + 2):
            # Repair while repairs get further; otherwise ask afresh. A small model answers its own code and its
            # errors with the same code or the same mistake (seen live: 4 of 18 red first attempts repaired in 3
            # rounds), while a fresh, warmer sample of the first request is an independent try.
            if rnd > 1:
                stuck = repeated or (request == "repair" and score <= repaired)
                request, repaired = ("fresh", 0.0) if stuck else ("repair", score)
                if stuck:
                    files, last, shown, fresh = {}, {}, "", fresh + 1
            user = prompt.repair_message(job.first, history, files, evidence, shown) if request == "repair" \
                else job.first
            repeated = False
            self.progress(f"model call ({job.kind}, round {rnd}" + (", a fresh request" if request == "fresh" else "")
                          + ")")
            t0 = time.monotonic()
            attempt = Attempt(rnd, "model", request=request)
            result.attempts.append(attempt)
            temperature = (self._temperature(rnd + repeats) if request != "fresh" else
                           round(min(max(self.client.config.temperature, FRESH_TEMPERATURE)
                                     + TEMPERATURE_STEP * (fresh - 1), MAX_TEMPERATURE), 2))
            score = 0.0
            try:
                chat = self.client.chat([{"role": "system", "content": system}, {"role": "user", "content": user}],
                                        purpose=job.kind, stream=True, tool=job.name, round=rnd,
                                        temperature=temperature)
            except ModelError as e:
                cut = e.result if isinstance(e.result, ChatResult) else None
                attempt.model_seconds = attempt.seconds = time.monotonic() - t0
                attempt.error, attempt.evidence = e.kind, str(e)
                if cut is not None:
                    attempt.prompt_tokens, attempt.completion_tokens = cut.prompt_tokens, cut.completion_tokens
                if e.kind not in ROUND_ERRORS:  # the server, not the reply: another round would fail the same way
                    self._record(job, result, attempt)
                    result.message = f"the model call failed: {e}"
                    return result
                files = {}
                attempt.evidence = _model_evidence(e, cut)
            else:
                attempt.prompt_tokens, attempt.completion_tokens = chat.prompt_tokens, chat.completion_tokens
                attempt.model_seconds = time.monotonic() - t0
                result.model = chat.model
                text = chat.content or ""
                green, files, score = self._attempt(job, result, attempt, chat, text, t0,
                                                    last or job.parent_files or _from_examples(job))
                if green is not None:
                    return green
                if files and (key := tuple(sorted(files.items()))) in seen:
                    repeats, repeated = repeats + 1, True
                    attempt.evidence = ("Your reply was the same as an earlier attempt, and failed the same way: "
                                        "this time change the code.\n" + attempt.evidence)
                elif files:
                    seen.add(key)
                last = files or last  # the package a later reply's missing blocks come from
            attempt.seconds = time.monotonic() - t0
            self._record(job, result, attempt)
            evidence = attempt.evidence
            # a reply cut short is not shown again: a small model copies it, cut where it was (seen live)
            shown = "" if attempt.error in ("timeout", "cut_off") else text if attempt.stage == "reply" else ""
            history.append((attempt.evidence.splitlines()[0] if attempt.evidence else f"{attempt.stage}: {attempt.error}")[:300])
            self.progress(f"round {rnd} red at {attempt.stage}: {history[-1]}")
        result.message = (f"no green version after {len(result.attempts)} attempts; last: {history[-1]}"
                          if history else "no green version")
        return result

    def _temperature(self, rnd: int) -> float:
        """The configured temperature for the first round, a little higher for each repair round: a small model
        at a low temperature answers the same evidence with the same reply."""
        configured = self.client.config.temperature  # never lowered: a user's 1.5 stays 1.5
        return round(max(configured, min(configured + TEMPERATURE_STEP * (rnd - 1), MAX_TEMPERATURE)), 2)

    def _attempt(self, job: _Job, result: AuthorResult, attempt: Attempt, chat: ChatResult, text: str,
                 t0: float, base: dict[str, bytes]) -> tuple[AuthorResult | None, dict[str, bytes], float]:
        """Read one reply and build what it holds: the result if it is green (committed and tagged), else None
        with the attempt's stage, error and evidence set; the files it held; and how far they got (`progress`)."""
        cut = (f"Your reply was cut off after {chat.completion_tokens} tokens (the reply limit, git config "
               "evogit.maxTokens): write less — only your part of src/main.rs, short tests, 4-6 cases.\n"
               if chat.finish_reason == "length" else "")
        try:
            reply = wire.read_reply(text, prompt.SKELETON, base, cut=bool(cut))
            files, name = self._package(job, reply, result)
        except (InvalidPackage, InvalidName) as e:
            attempt.stage, attempt.error = "reply", "cut_off" if cut else "invalid_reply"
            attempt.evidence = f"{cut}stage reply: {e}"
            return None, {}, 0.0
        self.progress(f"building {name} (round {attempt.round})" + (f"; mended: {'; '.join(reply.mended)}"
                                                                    if reply.mended else ""))
        record, _ = self.rt.builder.try_files(files)
        if record.stage == "compile":
            record, files = self._with_compiler_fixes(name, record, files, result.mended)
        if not record.ok and (trimmed := self._without_own_mistakes(job, record, files, result)) is not None:
            files = trimmed
            self.progress(f"building {name} again without the reply's own cases that its code contradicts")
            record, _ = self.rt.builder.try_files(files)
        if record.ok:
            attempt.stage, attempt.seconds = "green", time.monotonic() - t0
            return self._commit(job, result, attempt, files, name, reply.notes), files, progress(record)
        attempt.stage, attempt.error = record.stage or "package", f"{record.stage or 'package'}_failed"
        attempt.evidence = cut + evidence_of(record)
        if result.mended:
            attempt.evidence += "\n(evogit mended your reply: " + "; ".join(result.mended) + ")"
        return None, files, progress(record)

    def _package(self, job: _Job, reply: wire.Reply, result: AuthorResult) -> tuple[dict[str, bytes], str]:
        """The files to build: the reply's, with the name settled and the cases that must pass put in."""
        files = dict(reply.files)
        manifest = parse_manifest(files["tool.json"], check_schemas=False)  # checked whole by the build
        name = job.name if job.name is not None else self._free_name(manifest.name)
        fitted = _valid_schemas(manifest, job.examples) + _fit_schemas(manifest, job.examples)
        if manifest.name != name or fitted:
            manifest.name = name
            files["tool.json"] = manifest_json(manifest)
        files["tests/cases.jsonl"], applied, mended = wire.inherit_cases(
            job.parent_cases, files["tests/cases.jsonl"], reply.superseded, job.examples)
        if applied and job.fork_weakened and job.parent is not None and name == job.parent.name:
            name = self._free_name(name)
            mended.append(f"it supersedes {len(applied)} of {job.parent.name}'s cases, so it is a new tool, {name}: "
                          f"{job.parent.name} itself is unchanged")
            manifest.name = name
            files["tool.json"] = manifest_json(manifest)
        result.superseded, result.mended, result.tool = applied, [*reply.mended, *fitted, *mended], name
        return files, name

    def _with_compiler_fixes(self, name: str, record: BuildRecord, files: dict[str, bytes],
                             mended: list[str]) -> tuple[BuildRecord, dict[str, bytes]]:
        """The build after making the changes rustc itself suggests for its errors in src/main.rs (a missing
        `.to_string()`, `&`, cast or import: what a small model gets wrong most and fixes worst), up to
        COMPILER_FIX_PASSES times, each only kept if the compiler got further; each change is noted in `mended`.
        A build costs seconds, a model round a minute or more."""
        for _ in range(COMPILER_FIX_PASSES):
            errors = [d for d in record.diagnostics if d.level == "error"]
            # the real Value method first: for `as_integer` rustc's "similar name" is `as_str` (seen live)
            fixes = mend.value_api_fixes(errors, files["src/main.rs"]) + [
                f for d in errors for f in d.fixes if f.file == "src/main.rs"]
            if not fixes:
                break
            source, notes = mend.apply_fixes(files["src/main.rs"], fixes)
            if not notes or source == files["src/main.rs"]:
                break
            self.progress(f"building {name} again with rustc's suggestions: {'; '.join(notes)}")
            candidate = {**files, "src/main.rs": source}
            again, _ = self.rt.builder.try_files(candidate)
            after = [d for d in again.diagnostics if d.level == "error"]
            if again.stage == "compile" and (len(after) > len(errors) or {(d.code, d.message) for d in after} == {
                    (d.code, d.message) for d in errors}):
                break  # no further: keep the model's own code, and its errors, as the evidence
            # further: fewer errors, or others (rustc checks borrows only once types are right: prime-factors,
            # live, had `.to_string()` missing, then an immutable `n` assigned to)
            mended.append("rustc's suggestions were applied: " + "; ".join(notes))
            record, files = again, candidate
            if record.stage != "compile":
                break
        return record, files

    def _without_own_mistakes(self, job: _Job, record: BuildRecord, files: dict[str, bytes],
                              result: AuthorResult) -> dict[str, bytes] | None:
        """The package without what only the model's own word says is wrong, when its code passes every case that
        does not come from the reply — the user's examples and a parent's inherited cases, at least one of them:
        a small model's own cases and unit tests are often the wrong part (it copied the prompt's example's
        numbers, seen on the real model), and they must not hold a tool that does what it was asked to red.
        None when there is nothing such to leave out."""
        given = {c.name for c in job.examples} | ({c.name for c in job.parent_cases} - {s.case for s in result.superseded})
        verdicts = {v.name: v for v in record.cases}
        if not given or record.stage not in ("cases", "unit_tests") or not all(
                n in verdicts and verdicts[n].ok for n in given):
            return None
        wrong = [v.name for v in record.cases if not v.ok and v.name not in given]
        out = dict(files)
        if wrong:
            kept = [c for c in parse_cases(files["tests/cases.jsonl"]) if c.name not in wrong]
            out["tests/cases.jsonl"] = "".join(msgspec.json.encode(c).decode() + "\n" for c in kept).encode()
            result.mended.append(f"the reply's own cases {', '.join(wrong)} were left out: its code passes every "
                                 "given case and contradicts only these")
        if record.stage == "unit_tests":
            main_rs, found = mend.remove_tests(files["src/main.rs"].decode("utf-8", "replace"))
            if not found:
                return None
            out["src/main.rs"] = main_rs.encode()
            result.mended.append("the reply's own unit tests were left out: its code passes every given case")
        return out if out != files else None

    def _free_name(self, wanted: str) -> str:
        """The model's name if it is free, else `<name>-2`, `-3`, …: a new tool never lands on an existing one."""
        check_name(wanted)
        refs = self.rt.repo.git.references
        if branch_ref(wanted) not in refs:
            return wanted
        for i in range(2, MAX_SUFFIX + 1):
            candidate = f"{wanted[:60]}-{i}"
            if branch_ref(candidate) not in refs:
                return candidate
        raise ToolExists(f"a tool named {wanted!r} and its suffixed names up to -{MAX_SUFFIX} already exist")

    def _commit(self, job: _Job, result: AuthorResult, attempt: Attempt, files: dict[str, bytes], name: str,
                notes: str) -> AuthorResult:
        trailers = [f"Evogit-Model: {result.model or 'unknown'}", f"Evogit-Attempts: {len(result.attempts)}"]
        if job.parent is not None:
            trailers.insert(0, f"Evogit-Parent: {job.parent.name}@{job.parent.fingerprint}")
        # one line each: a reason with a line break must not make a trailer of its own
        trailers += [f"Evogit-Supersedes: {' '.join(s.case.split())}: {' '.join(s.reason.split())}"
                     for s in result.superseded]
        message = job.task + "\n\n" + "\n".join(trailers) + "\n"
        repo = self.rt.repo
        try:
            if job.kind == "create" and job.name is None:  # the model's name: another create may take it meanwhile
                for _ in range(MAX_SUFFIX):
                    try:
                        commit = repo.commit_version(name, files, message, new=True)
                        break
                    except ToolExists:
                        name = self._free_name(name)
                        manifest = parse_manifest(files["tool.json"], check_schemas=False)
                        manifest.name = name
                        files = {**files, "tool.json": manifest_json(manifest)}
                        result.tool = name
                else:
                    raise ToolExists(f"{name} and its suffixed names were all taken meanwhile")
            elif job.kind == "create":
                commit = repo.commit_version(name, files, message, new=True)
            elif job.parent is not None and name != job.parent.name:
                repo.create_branch(name, job.parent.source_commit)
                commit = repo.commit_version(name, files, message)
            else:
                commit = repo.commit_version(name, files, message)
        except ToolExists:
            attempt.stage, attempt.error, attempt.evidence = "commit", "name_taken", f"{name} was created meanwhile"
            self._record(job, result, attempt)
            result.message = f"a tool named {name!r} appeared while this one was written; nothing was committed"
            return result
        outcome = self.rt.committed_and_built(name, commit, message)
        result.commit = commit
        if not outcome.ok or outcome.version is None:  # green a moment ago: only a broken cache gets here
            attempt.stage, attempt.error, attempt.evidence = "commit", "build_failed", outcome.error or ""
            self._record(job, result, attempt)
            result.message = f"committed {commit[:10]} but its build failed: {outcome.error}"
            return result
        result.ok, result.version, result.tool, result.notes = True, outcome.version, name, notes
        self._record(job, result, attempt, outcome.version.fingerprint)
        return result

    def _record(self, job: _Job, result: AuthorResult, attempt: Attempt, fingerprint: str = "") -> None:
        self.rt.log.append([ev.AuthorAttempt(
            kind=job.kind, tool=result.tool, round=attempt.round, stage=attempt.stage, error=attempt.error,
            model=result.model, prompt_tokens=attempt.prompt_tokens, completion_tokens=attempt.completion_tokens,
            seconds=round(attempt.seconds, 3), model_seconds=round(attempt.model_seconds, 3),
            parent=result.parent or "", fingerprint=fingerprint, task=job.task)])


def parent_records(rt: Runtime, name: str, task: str) -> list[tuple[Version, int, float, bool]]:
    """Each green version of a tool, oldest first: (version, net successes on similar tasks, success rate of its
    runs, whether it is the newest green one) — what `Author.parent_for` chooses by (`mutate --explain`)."""
    versions = rt.repo.versions(check_name(name))
    newest = rt.repo.resolve(name, versions)
    state = rt.projections().state
    words = _words(task)
    out = []
    for v in versions:
        key = v.key
        similar = sum(n for t, n in state.served.get(key, {}).items() if len(_words(t) & words) * 2 >= len(words))
        m = state.versions.get(key)
        out.append((v, similar, (m.success_rate or 0.0) if m else 0.0, v == newest))
    return out


def _from_examples(job: _Job) -> dict[str, bytes]:
    """What a create with a person's examples can build on when a reply leaves out its header and no attempt had
    one: tool.json with the task as its description and schemas read off the examples, the examples as cases."""
    if job.kind != "create" or not job.examples:
        return {}
    words = [w for w in "".join(c.lower() if c.isalnum() else " " for c in job.task).split() if w.isascii()][:4]
    name = job.name or "-".join(words)[:40].strip("-")
    if not name or not name[0].isalpha():
        name = "tool"
    ok = [c for c in job.examples if not c.exit]
    header = {"name": name, "description": job.task, "input_schema": _schema_of([c.input for c in job.examples]),
              "output_schema": _schema_of([c.expect for c in ok]), "tags": [], "examples": [job.task]}
    return {"tool.json": jsonio.encode(header).encode(), "Cargo.toml": wire.cargo_toml(),
            "tests/cases.jsonl": "".join(msgspec.json.encode(c).decode() + "\n" for c in job.examples).encode()}


def _valid_schemas(manifest: ToolManifest, examples: Sequence[Case]) -> list[str]:
    """A reply's schema that is no JSON Schema at all replaced by one read off the user's examples, where they
    show objects (seen live, merge-intervals run 4: `"items": [{"type": "number"}, {"type": "number"}]`, the
    tuple form of an old draft, twice running). Without examples it stays, for the package check to refuse."""
    notes = []
    for which, values in (("input_schema", [c.input for c in examples]),
                          ("output_schema", [c.expect for c in examples if not c.exit])):
        objects = [v for v in values if isinstance(v, dict)]
        if objects and checker(getattr(manifest, which)) is None:
            setattr(manifest, which, {**_schema_of(objects), "additionalProperties": False})
            notes.append(f"{which} was not a valid JSON Schema; read off the user's examples instead")
    return notes


def _fit_schemas(manifest: ToolManifest, examples: Sequence[Case]) -> list[str]:
    """The reply's schemas made to accept the user's examples where they reject them (a small model's
    `"items": {"type": "string"}` for a list the examples show, seen live), property by property: a rejected
    property takes the type the examples show, a property the examples leave out is no longer required, one they
    add is listed. The examples are the user's word; the schemas are the model's guess. A note per schema."""
    notes = []
    for which, values in (("input_schema", [c.input for c in examples]),
                          ("output_schema", [c.expect for c in examples if not c.exit])):
        schema = getattr(manifest, which)
        objects = [v for v in values if isinstance(v, dict)]
        if not objects or not isinstance(schema, dict) or not isinstance(schema.get("properties", {}), dict):
            continue
        check = checker(schema)
        if check is None or all(check(v) is None for v in objects):
            continue  # a schema that is no schema is the package check's to refuse
        inferred = _schema_of(objects)["properties"]
        props = dict(schema.get("properties") or {})
        changed = []
        for key, shown in inferred.items():
            old = props.get(key)
            one = checker(old) if isinstance(old, dict) else None
            if one is None or any(one(o[key]) is not None for o in objects if key in o):
                described = {"description": old["description"]} if isinstance(old, dict) and "description" in old else {}
                props[key] = {**described, **shown}
                changed.append(key)
        fitted = {**schema, "type": "object", "properties": props}
        if isinstance(schema.get("required"), list):
            fitted["required"] = [k for k in schema["required"] if all(k in o for o in objects)]
        check = checker(fitted)
        if check is not None and all(check(v) is None for v in objects):
            setattr(manifest, which, fitted)
        else:  # what the examples show, and nothing more
            setattr(manifest, which, {**_schema_of(objects), "additionalProperties": False})
            changed = ["the whole schema"]
        notes.append(f"{which} did not accept the user's examples; fitted to them ({', '.join(changed) or 'required'})")
    return notes


_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"),
               (dict, "object"), (type(None), "null"))


def _schema_of(values: Sequence[Any]) -> dict[str, Any]:
    """A JSON Schema for objects like `values`: each property typed where every value agrees, required where
    every object has it."""
    objects = [v for v in values if isinstance(v, dict)]
    props: dict[str, Any] = {}
    for key in dict.fromkeys(k for o in objects for k in o):
        kinds = {next(t for cls, t in _JSON_TYPES if isinstance(o[key], cls)) for o in objects if key in o}
        props[key] = {"type": kinds.pop()} if len(kinds) == 1 else {}
    return {"type": "object", "properties": props, "required": [k for k in props if all(k in o for o in objects)]}


def _model_evidence(e: ModelError, cut: ChatResult | None) -> str:
    """What a failed call says to the model in the next round."""
    if e.kind == "timeout":
        said = f" after {cut.completion_tokens} tokens" if cut is not None and cut.completion_tokens else ""
        return (f"Your reply was cut off by the time limit{said} (git config evogit.modelTimeout): reply at once "
                "with the three blocks, shorter — only your part of src/main.rs, short tests, 4-6 cases.")
    return f"The last reply could not be used ({e.kind}): {e}"


COMPILER_FIX_PASSES = 3  # rounds of rustc's own suggestions tried before the model sees its errors
MAX_ERRORS_SHOWN = 3  # compiler errors shown whole; the rest by their headline


def progress(record: BuildRecord) -> float:
    """How far a build got, for telling whether a repair got further than what it repaired: an unreadable reply
    0, package rules 1, compile errors 2 (more with fewer errors), unit tests 3, cases 4 + the share that pass,
    green 5."""
    if record.ok:
        return 5.0
    if record.stage == "compile":
        return 2.0 + 1.0 / (2 + sum(d.level == "error" for d in record.diagnostics))
    if record.stage == "cases" and record.cases:
        return 4.0 + sum(v.ok for v in record.cases) / len(record.cases)
    return {"package": 1.0, "unit_tests": 3.0, "cases": 4.0}.get(record.stage or "package", 1.0)


def evidence_of(record: BuildRecord, limit: int = 4000) -> str:
    """What a red build says to the model: the compiler's errors as rustc renders them (the first ones whole,
    the rest by headline, warnings only when there is no error), or the first failing case whole (input, expected and actual output and exit
    code, the tool's stderr), or the stage's message."""
    parts = [f"stage {record.stage}: {record.message or ''}".strip()]
    if record.stage == "unit_tests" and record.cases and all(v.ok for v in record.cases):
        parts.append(f"All {len(record.cases)} cases pass, so the unit test is probably what is wrong: fix it "
                     "or leave the tests module out.")
    errors = [d for d in record.diagnostics if d.level == "error"] or record.diagnostics
    parts += [_focused(d.rendered) or d.headline() for d in errors[:MAX_ERRORS_SHOWN]]
    parts += [d.headline() for d in errors[MAX_ERRORS_SHOWN:]]
    if (f := record.first_failure) is not None:
        if f.error is None and f.actual_exit is not None:
            parts.append(f"First failing case {f.name!r}: for the input {jsonio.encode(f.input)} the tool printed "
                         f"{jsonio.encode(f.actual)} (exit {f.actual_exit}) but must print "
                         f"{jsonio.encode(f.expected)} (exit {f.expected_exit or 0})."
                         + (f" It wrote on stderr: {f.stderr}" if f.stderr else ""))
        else:
            parts.append("First failing case: " + jsonio.encode(msgspec.to_builtins(f)))
    text = "\n".join(parts)
    return text if len(text) <= limit else text[:limit] + "\n…(cut)"


def _focused(rendered: str, lines: int = 14) -> str:
    """rustc's rendering of one error without what a small model cannot use: the long lists of "other types
    that implement" a trait, and anything past `lines` lines."""
    kept: list[str] = []
    for line in rendered.rstrip().splitlines():
        if "the following other types implement trait" in line or "and that's" in line:
            break
        kept.append(line)
    return "\n".join(kept[:lines])


def _task(task: str) -> str:
    if not task or not task.strip():
        raise InvalidPackage("the task is empty: say in words what the tool should do")
    check_task(task)
    return task.strip()


def _words(text: str) -> set[str]:
    return {w for w in "".join(c.lower() if c.isalnum() else " " for c in text).split() if len(w) > 2}
