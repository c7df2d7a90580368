"""The tree of runs ``keel runs show`` prints: the parent a run was delegated from, and its
children, theirs below them; as text and as data."""

from __future__ import annotations

from keel import ParentLink
from keel._cli.run_tree import RunTree, render_tree, tree_data
from keel.ports import RunRecord


def record(
    run_id: str, agent: str, status: str = "completed", code: str | None = None
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        thread_id=run_id,
        agent=agent,
        model="m",
        status=status,  # type: ignore[arg-type]
        created_at=0.0,
        updated_at=0.0,
        steps=2,
        cost_usd=1.5,
        reason_code=code,
    )


def test_children_are_indented_under_their_parents() -> None:
    grandchild = RunTree(record("run_3", "helper", "awaiting_approval"))
    child = RunTree(record("run_2", "researcher", "paused", "child_waiting"), [grandchild])
    tree = RunTree(record("run_1", "boss"), [child])
    link = ParentLink(run_id="run_0", step=3, call_id="call_3_0")

    lines = render_tree(link, tree)

    assert lines == [
        "parent   run_0 (step 3, call call_3_0)",
        "children",
        "  run_2  researcher  paused  2 steps  cost $1.500000  [child_waiting]",
        "    run_3  helper  awaiting_approval  2 steps  cost $1.500000",
    ]
    data = tree_data(link, tree)
    assert data["parent"] == {"run_id": "run_0", "step": 3, "call_id": "call_3_0"}
    assert data["children"][0]["children"][0]["run_id"] == "run_3"


def test_a_run_with_no_parent_or_children_adds_nothing() -> None:
    assert render_tree(None, RunTree(record("run_1", "boss"))) == []
