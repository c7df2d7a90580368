"""The tree of runs under a run that delegated (``keel runs show``): its child runs, theirs,
and so on, and the parent it was delegated from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from keel._cli.timeline import format_cost
from keel._core.events import Event
from keel._runtime.runtime import Runtime
from keel._runtime.runtime_delegation import ParentLink, children_in, parent_in
from keel.ports import RunRecord

__all__ = ["RunTree", "load_tree", "render_tree", "tree_data"]

#: How deep the tree is read, and how many runs at most: a listing, not an export.
_MAX_DEPTH = 8
_MAX_RUNS = 500


@dataclass(slots=True)
class RunTree:
    """A run's summary and the trees of its children."""

    record: RunRecord
    children: list[RunTree] = field(default_factory=list)


async def load_tree(
    runtime: Runtime, record: RunRecord, events: Sequence[Event]
) -> tuple[ParentLink | None, RunTree]:
    """The parent of ``record``'s run (whose journal is ``events``), and the tree of runs
    under it."""
    root = RunTree(record)
    budget = [_MAX_RUNS]

    async def grow(node: RunTree, depth: int) -> None:
        if depth >= _MAX_DEPTH:
            return
        run_id = node.record.run_id
        found = (
            await children_in(runtime.store, run_id, events)
            if node is root
            else await runtime.children(run_id)
        )
        for child in found:
            if budget[0] <= 0:
                return
            budget[0] -= 1
            branch = RunTree(child)
            node.children.append(branch)
            await grow(branch, depth + 1)

    await grow(root, 0)
    return parent_in(events), root


def render_tree(parent: ParentLink | None, tree: RunTree) -> list[str]:
    """Lines for the parent and the children (none when the run has neither)."""
    lines: list[str] = []
    if parent is not None:
        lines.append(f"parent   {parent.run_id} (step {parent.step}, call {parent.call_id})")
    if tree.children:
        lines.append("children")

        def walk(node: RunTree, indent: str) -> None:
            for child in node.children:
                r = child.record
                lines.append(
                    f"{indent}{r.run_id}  {r.agent}  {r.status}  {r.steps} steps  "
                    f"cost {format_cost(r.cost_usd)}"
                    + (f"  [{r.reason_code}]" if r.reason_code else "")
                )
                walk(child, indent + "  ")

        walk(tree, "  ")
    return lines


def tree_data(parent: ParentLink | None, tree: RunTree) -> dict[str, Any]:
    """The parent and the children as JSON-compatible data."""

    def node(branch: RunTree) -> dict[str, Any]:
        r = branch.record
        return {
            "run_id": r.run_id,
            "agent": r.agent,
            "status": r.status,
            "cost_usd": r.cost_usd,
            "children": [node(c) for c in branch.children],
        }

    return {
        "parent": None if parent is None else asdict(parent),
        "children": [node(c) for c in tree.children],
    }
