"""Lineage of tool versions, derived only from git ancestry, and its renderings (text, mermaid, dot, json).

A version's parent is the nearest tagged version among its source commit's ancestors, whatever tool it
belongs to, so a fork links to the version it was forked from.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from .repo import SkillsRepo, Version


@dataclass
class Node:
    version: Version
    subject: str
    parents: list[str] = field(default_factory=list)  # keys of parent nodes
    children: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.version.short


@dataclass
class Lineage:
    nodes: dict[str, Node]

    def roots(self) -> list[Node]:
        return [n for n in self.nodes.values() if not any(p in self.nodes for p in n.parents)]


def graph(repo: SkillsRepo) -> Lineage:
    """The whole version graph of a repository."""
    versions = repo.versions()
    by_source: dict[str, list[Version]] = {}
    for v in versions:
        by_source.setdefault(v.source_commit, []).append(v)
    nodes = {v.short: Node(v, _subject(repo, v.source_commit)) for v in versions}
    for v in versions:
        node = nodes[v.short]
        start = repo.commit(v.source_commit)
        # Versions of the same tool at the same source commit are siblings, not parents.
        seen = {start.id}
        queue = deque(start.parents)
        while queue:
            c = queue.popleft()
            if c.id in seen:
                continue
            seen.add(c.id)
            found = by_source.get(str(c.id))
            if found:
                # Prefer the version of the same tool when one source commit carries several names.
                same = [f for f in found if f.name == v.name]
                for parent in same or found:
                    node.parents.append(parent.short)
                continue
            queue.extend(c.parents)
    for node in nodes.values():
        for p in node.parents:
            nodes[p].children.append(node.key)
    return Lineage(nodes)


def for_tool(repo: SkillsRepo, name: str) -> Lineage:
    """The versions of `name`, all their ancestors and all their descendants, across tools."""
    repo.head(name)
    full = graph(repo)
    mine = [k for k, n in full.nodes.items() if n.version.name == name]
    keep: set[str] = set(mine)
    for direction in ("parents", "children"):
        stack = list(mine)
        while stack:
            for nxt in getattr(full.nodes[stack.pop()], direction):
                if nxt not in keep:
                    keep.add(nxt)
                    stack.append(nxt)
    return Lineage({k: n for k, n in full.nodes.items() if k in keep})


def render_text(lin: Lineage) -> str:
    lines: list[str] = []
    printed: set[str] = set()

    def visit(key: str, prefix: str, last: bool, top: bool) -> None:
        node = lin.nodes[key]
        branch = "" if top else ("└── " if last else "├── ")
        again = " (see above)" if key in printed else ""
        lines.append(f"{prefix}{branch}{key}  {node.subject}{again}")
        if again:
            return
        printed.add(key)
        kids = [c for c in node.children if c in lin.nodes]
        for i, child in enumerate(kids):
            visit(child, prefix + ("" if top else ("    " if last else "│   ")), i == len(kids) - 1, False)

    for root in lin.roots():
        visit(root.key, "", True, True)
    return "\n".join(lines)


def _edges(lin: Lineage) -> list[tuple[str, str]]:
    return [(p, n.key) for n in lin.nodes.values() for p in n.parents if p in lin.nodes]


def render_mermaid(lin: Lineage) -> str:
    ids = {k: f"v{i}" for i, k in enumerate(lin.nodes)}
    out = ["graph TD"]
    for k, n in lin.nodes.items():
        label = f"{k}<br/>{n.subject}".replace('"', "'")
        out.append(f'  {ids[k]}["{label}"]')
    out += [f"  {ids[a]} --> {ids[b]}" for a, b in _edges(lin)]
    return "\n".join(out)


def render_dot(lin: Lineage) -> str:
    out = ["digraph lineage {", "  rankdir=TB;", "  node [shape=box];"]
    for k, n in lin.nodes.items():
        out.append(f"  {json.dumps(k)} [label={json.dumps(k + chr(10) + n.subject)}];")
    out += [f"  {json.dumps(a)} -> {json.dumps(b)};" for a, b in _edges(lin)]
    out.append("}")
    return "\n".join(out)


def to_json(lin: Lineage) -> dict:
    return {
        "nodes": [
            {"id": k, "tool": n.version.name, "fingerprint": n.version.fingerprint,
             "source_commit": n.version.source_commit, "build_commit": n.version.build_commit,
             "subject": n.subject, "parents": [p for p in n.parents if p in lin.nodes]}
            for k, n in lin.nodes.items()
        ],
        "edges": [{"from": a, "to": b} for a, b in _edges(lin)],
    }


def _subject(repo: SkillsRepo, commit: str) -> str:
    lines = repo.commit(commit).message.strip().splitlines()
    return lines[0] if lines else ""
