"""Queries on the library: what tools and versions there are, everything about one, lineage, metrics and
what writing tools cost. Reads only: git for sources and versions, the projections for what happened."""

from __future__ import annotations

from typing import Any

import msgspec

from .. import jsonio, lineage
from ..build import Builder
from ..errors import EvogitError, ToolNotFound
from ..events import split_key
from ..manifest import check_name, parse_cases, parse_manifest
from ..projections import VersionMetrics
from ..repo import SkillsRepo, Version
from ..verify import supersedes
from .results import (
    BestDescendant,
    CostReport,
    Description,
    ModelTokens,
    Reused,
    SolveCosts,
    Supersession,
    ToolSummary,
    ToolTokens,
    VersionStats,
)
from .state import LocalState


class Library:
    """Read-side queries over one repository."""

    def __init__(self, repo: SkillsRepo, builder: Builder, state: LocalState):
        self.repo, self.builder, self.state = repo, builder, state

    def list_tools(self) -> list[ToolSummary]:
        versions = self.repo.versions()
        by_tool: dict[str, list[Version]] = {}
        for v in versions:
            by_tool.setdefault(v.name, []).append(v)
        out = []
        for name in self.repo.tools():
            head = self.repo.head(name)
            mine = by_tool.get(name, [])
            try:
                latest: Version | None = self.repo.resolve(name, mine)
            except ToolNotFound:
                latest = None
            if any(v.source_commit == str(head.id) for v in mine):
                status = "green"
            else:
                record = self.builder.last_record(head)
                # a head that built to a binary already tagged (same code, new cases) is green as that version
                status = "unbuilt" if record is None else "green" if record.ok else "failed"
            try:
                description = parse_manifest(self.repo.read(head, "tool.json"), check_schemas=False).description
            except EvogitError:
                description = "(tool.json is invalid)"
            # versions whose source is not on the branch: a sibling from a machine that advanced it too
            diverged = [v.key for v in mine if v.source_commit != str(head.id)
                        and not self.repo.git.descendant_of(head.id, v.source_commit)]
            out.append(ToolSummary(name, description, latest, len(mine), str(head.id), status, diverged))
        return out

    def describe(self, spec: str) -> Description:
        """Everything about one version: manifest, schemas, cases, build record, lineage."""
        v = self.repo.resolve(spec)
        build = self.repo.commit(v.build_commit)
        manifest = parse_manifest(self.repo.read(build, "tool.json"), check_schemas=False)
        cases = parse_cases(self.repo.read(build, "tests/cases.jsonl"))
        lin = lineage.for_tool(self.repo, v.name)
        node = lin.nodes.get(v.short)
        head = self.repo.head(v.name)
        source = self.repo.commit(v.source_commit)
        return Description(
            tool=v.name, version=v.short, fingerprint=v.fingerprint,
            description=manifest.description, tags=manifest.tags,
            input_schema=manifest.input_schema, output_schema=manifest.output_schema,
            cases=[msgspec.to_builtins(c) for c in cases],
            build=jsonio.decode(self.repo.read(build, "build/build.json"), what="build/build.json"),
            source_commit=v.source_commit, build_commit=v.build_commit,
            message=source.message.strip(),
            superseded=[Supersession(case, reason) for case, reason in supersedes(source.message)],
            author=f"{source.author.name} <{source.author.email}>",
            parents=node.parents if node else [], children=node.children if node else [],
            versions=[x.short for x in self.repo.versions(v.name)],
            head=str(head.id), head_is_this_version=str(head.id) == v.source_commit,
            metrics=self.stats(v.key)[v.key],
        )

    def lineage(self, name: str) -> lineage.Lineage:
        return lineage.for_tool(self.repo, check_name(name))

    def stats(self, spec: str | None = None) -> dict[str, VersionStats]:
        """Metrics per version ("tool@fingerprint"), of one version, of one tool's versions, or of all."""
        versions = self.state.projections().state.versions
        if spec is None:
            keys = sorted(versions)
        elif "@" in spec:
            v = self.repo.resolve(spec)
            keys = [v.key]
        else:
            self.repo.head(check_name(spec))
            keys = sorted(k for k in versions if split_key(k)[0] == spec)
        out = {k: VersionStats(**(versions[k] if k in versions else VersionMetrics()).summary()) for k in keys}
        self._add_lineage(out, versions)
        return out

    def cost(self) -> CostReport:
        """Tokens spent writing tools (every attempt of creates, mutations and teaching, rejected ones too), per
        tool and per model, from the log."""
        state = self.state.projections().state
        tools = {name or "(unnamed)": ToolTokens(c.tokens, c.prompt_tokens, c.completion_tokens, c.attempts, c.green,
                                                 dict(sorted(c.by_kind.items())), c.ms / 1000)
                 for name, c in sorted(state.costs.items())}
        models = {name: ModelTokens(m.calls, m.failed, m.prompt_tokens + m.completion_tokens, m.prompt_tokens,
                                    m.completion_tokens, m.latency_ms, dict(sorted(m.by_purpose.items())))
                  for name, m in sorted(state.models.items())}
        return CostReport(tools, models, sum(m.tokens for m in models.values()), self._solves(state))

    def _solves(self, state: Any) -> SolveCosts:
        """How tasks were served and what reuse saved. Tokens saved are an estimate: each solve served by reusing
        a version (the fast path, or a run the model chose of a tool already in the library) instead of a new
        create saves what writing that tool cost — its authoring tokens (every attempt, red ones too) per green
        version; for a tool no model wrote here (the starter library, pulled tools), the mean of the tools a
        model did write. `net` subtracts what the model-run solves' own calls cost."""
        s = state.solving
        written = [c for c in state.costs.values() if c.green]
        mean = sum(c.tokens for c in written) / sum(c.green for c in written) if written else 0.0
        per_tool = {}
        for tool, n in sorted(s.reused.items()):
            c = state.costs.get(tool)
            each = c.tokens / c.green if c is not None and c.green else mean
            per_tool[tool] = Reused(n, round(each), round(n * each),
                                    "own" if c is not None and c.green else "library mean")
        saved = sum(t.saved for t in per_tool.values())
        return SolveCosts(s.solves, s.answered, s.fast_path, s.model_run, s.written, s.unserved,
                          dict(sorted(s.by_outcome.items())), s.tokens, s.prompt_tokens, s.completion_tokens,
                          s.author_tokens, s.fast_path, round(mean), saved, saved - s.reuse_tokens, per_tool)

    def _add_lineage(self, out: dict[str, VersionStats], versions: dict[str, VersionMetrics]) -> None:
        """Lineage-aware summaries: children, descendants, and the best descendant by success rate (runs
        break ties; at least one run). Lineage comes from git ancestry, metrics from the log."""
        graph = lineage.graph(self.repo)
        by_key = {n.version.key: n for n in graph.nodes.values()}
        for key, summary in out.items():
            node = by_key.get(key)
            seen: set[str] = set()
            stack = list(node.children) if node else []
            while stack:
                child = stack.pop()
                if child not in seen:
                    seen.add(child)
                    stack.extend(graph.nodes[child].children)
            best: tuple[float, int, str] | None = None
            for short in seen:
                v = graph.nodes[short].version
                m = versions.get(v.key)
                rate = m.success_rate if m is not None else None
                if m is not None and rate is not None and (best is None or (rate, m.runs) > best[:2]):
                    best = (rate, m.runs, v.key)
            summary.children = len(node.children) if node else 0
            summary.descendants = len(seen)
            summary.best_descendant = BestDescendant(best[2], round(best[0], 4), best[1]) if best else None

