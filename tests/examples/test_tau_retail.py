"""tau-bench's retail domain through Keel: every test task's expected actions, made by a
scripted model through a real runtime, leave the database that applying them directly does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from examples.tau_retail import (
    RETAIL_TOOLS,
    CorpusMissingError,
    RetailDB,
    RetailTask,
    apply_actions,
    build_agent,
    grouped_turns,
    load_tasks,
    read_policy,
    replay,
)
from examples.tau_retail.ordering import in_reverse, order_sensitive_turns

from keel import Agent, RunContext, Runtime, ToolError, Usage
from keel.messages import ToolResultMessage
from keel.testing import MemoryStore
from tests.examples.corpus import retail_corpus

TEST_TASKS = 115
WRITE_TOOLS = {
    "cancel_pending_order",
    "exchange_delivered_order_items",
    "modify_pending_order_address",
    "modify_pending_order_items",
    "modify_pending_order_payment",
    "modify_user_address",
    "return_delivered_order_items",
    "transfer_to_human_agents",
}


@pytest.fixture(scope="module")
def pristine() -> RetailDB:
    retail_corpus()
    return RetailDB.load()


@pytest.fixture(scope="module")
def tasks() -> list[RetailTask]:
    retail_corpus()
    return load_tasks()


@pytest.fixture(params=["memory", "sqlite"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    store: Any = MemoryStore() if request.param == "memory" else tmp_path / "keel.db"
    async with Runtime(store=store) as made:
        yield made


def _direct(db: RetailDB, name: str, **kwargs: Any) -> Any:
    """Call one retail tool as the runtime would, without one."""
    tool = next(t for t in RETAIL_TOOLS if t.name == name)
    context: RunContext[RetailDB] = RunContext(
        deps=db,
        run_id="r",
        thread_id="t",
        agent="a",
        step=0,
        tool_name=name,
        tool_call_id="c",
        idempotency_key="k",
        usage=Usage(),
    )
    return tool.bind(context, tool.spec.validate(json.dumps(kwargs)))()


async def test_every_test_task_leaves_the_expected_database(
    runtime: Runtime, pristine: RetailDB, tasks: list[RetailTask]
) -> None:
    agent = build_agent()
    replays = [await replay(runtime, agent, task, pristine) for task in tasks]
    assert len(replays) == TEST_TASKS
    failed = [
        (r.task.id, r.result.status, r.db.differences(r.expected)) for r in replays if not r.passed
    ]
    assert failed == []
    for r in replays:  # every call went through the runtime, and the answer says what it must
        assert r.result.tool_calls == len(r.task.actions)
        assert all(output in r.result.output for output in r.task.outputs)
    changed = sum(not r.db.same_state(pristine) for r in replays)
    assert changed == 104  # most tasks change something: the comparison is not vacuous


async def test_the_suite_leaves_the_published_database_as_it_was(
    pristine: RetailDB, tasks: list[RetailTask]
) -> None:
    before = pristine.digest()
    async with Runtime(store=MemoryStore()) as runtime:
        for task in tasks:
            await replay(runtime, build_agent(), task, pristine)
    assert pristine.digest() == before


def test_a_change_is_compared_deeply(pristine: RetailDB) -> None:
    db = pristine.fresh()
    assert db.same_state(pristine)
    _direct(db, "modify_user_address", user_id="noah_brown_6181", address1="1 A St",
            address2="", city="X", state="CA", country="USA", zip="00000")  # fmt: skip
    assert not db.same_state(pristine)
    assert db.differences(pristine) == ["users/noah_brown_6181"]
    assert db.digest() != pristine.digest()


def test_the_tools_have_the_published_names_parameters_and_types() -> None:
    published = {
        t["function"]["name"]: t["function"]["parameters"]
        for t in json.loads((retail_corpus() / "tools.json").read_text())
    }
    assert sorted(published) == [t.name for t in RETAIL_TOOLS]

    def shape(schema: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {k: v for k, v in prop.items() if k != "description"}
            for name, prop in schema["properties"].items()
        }

    for tool in RETAIL_TOOLS:
        mine, theirs = dict(tool.spec.parameters), published[tool.name]
        assert shape(mine) == shape(theirs), tool.name
        assert sorted(mine.get("required", [])) == sorted(theirs["required"]), tool.name


def test_reads_are_declared_reads_and_changes_writes() -> None:
    for tool in RETAIL_TOOLS:
        writes = tool.spec.side_effects == "write"
        assert writes == (tool.name in WRITE_TOOLS), tool.name
        assert tool.spec.safe_to_repeat or writes


def test_the_agent_follows_the_published_policy() -> None:
    retail_corpus()
    agent = build_agent(model="rules")
    assert agent.instructions == read_policy()
    assert agent.instructions.startswith("# Retail agent policy")
    assert len(agent.tools) == 16


def test_a_missing_corpus_is_named_with_how_to_point_at_it(tmp_path: Path) -> None:
    with pytest.raises(CorpusMissingError, match=r"missing users\.json.*KEEL_CORPORA"):
        RetailDB.load(tmp_path)
    with pytest.raises(CorpusMissingError, match="tau-bench"):
        build_agent(tmp_path)


def test_the_corpus_path_comes_from_keel_corpora(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KEEL_CORPORA", str(tmp_path))
    with pytest.raises(CorpusMissingError, match=str(tmp_path)):
        load_tasks()


def test_cancelling_refunds_a_gift_card_at_once(pristine: RetailDB) -> None:
    db = pristine.fresh()
    order_id, order = next(
        (k, o)
        for k, o in db.orders.items()
        if o["status"] == "pending"
        and o["payment_history"][0]["payment_method_id"].startswith("gift_card")
    )
    card = order["payment_history"][0]["payment_method_id"]
    before = db.users[order["user_id"]]["payment_methods"][card]["balance"]
    paid = order["payment_history"][0]["amount"]
    done = _direct(db, "cancel_pending_order", order_id=order_id, reason="no longer needed")
    assert done["status"] == "cancelled"
    assert done["payment_history"][-1] == {
        "transaction_type": "refund", "amount": paid, "payment_method_id": card,
    }  # fmt: skip
    assert db.users[order["user_id"]]["payment_methods"][card]["balance"] == round(before + paid, 2)
    assert pristine.orders[order_id]["status"] == "pending"


def test_a_refused_change_leaves_the_database_as_it_was(pristine: RetailDB) -> None:
    db = pristine.fresh()
    delivered = next(k for k, o in db.orders.items() if o["status"] == "delivered")
    pending = next(k for k, o in db.orders.items() if o["status"] == "pending")
    with pytest.raises(ToolError, match="non-pending order cannot be cancelled"):
        _direct(db, "cancel_pending_order", order_id=delivered, reason="ordered by mistake")
    item = db.orders[pending]["items"][0]["item_id"]
    with pytest.raises(ToolError, match="number of items to be exchanged should match"):
        _direct(db, "modify_pending_order_items", order_id=pending, item_ids=[item],
                new_item_ids=[], payment_method_id="x")  # fmt: skip
    with pytest.raises(ToolError, match="order not found"):
        _direct(db, "get_order_details", order_id="W0000000")
    assert db.same_state(pristine)
    assert db.digest() == pristine.digest()


def test_modifying_items_records_the_price_difference(
    pristine: RetailDB, tasks: list[RetailTask]
) -> None:
    db = pristine.fresh()
    task = next(t for t in tasks if any(a.name == "modify_pending_order_items" for a in t.actions))
    action = next(a for a in task.actions if a.name == "modify_pending_order_items")
    order_id = action.kwargs["order_id"]
    apply_actions(db, [action])
    order = db.orders[order_id]
    assert order["status"] == "pending (item modified)"
    assert {i["item_id"] for i in order["items"]} >= set(action.kwargs["new_item_ids"])
    old = sum(i["price"] for i in pristine.orders[order_id]["items"])
    new = sum(i["price"] for i in order["items"])
    entry = order["payment_history"][-1]
    assert round(abs(new - old), 2) == entry["amount"]
    assert entry["transaction_type"] == ("payment" if new > old else "refund")


def test_calculate_does_arithmetic_only() -> None:
    tool = next(t for t in RETAIL_TOOLS if t.name == "calculate")
    assert tool("(1 + 2) * 3 / 4") == "2.25"
    with pytest.raises(ToolError, match="invalid characters"):
        tool("__import__('os')")
    with pytest.raises(ToolError, match="division by zero"):
        tool("1 / 0")


def test_the_published_expected_actions_that_are_refused(
    pristine: RetailDB, tasks: list[RetailTask]
) -> None:
    """A few ground-truth sequences try a change the policy refuses, then recover (e.g. a
    refund to PayPal for a card order, then a transfer to a person): the same refusals."""
    refused = []
    lookups_refused = 0
    for task in tasks:
        errors = apply_actions(pristine.fresh(), task.actions)
        for action, error in zip(task.actions, errors, strict=True):
            if error and action.writes:
                refused.append((task.number, action.name, error))
            lookups_refused += bool(error) and not action.writes
    assert [(number, name) for number, name, _ in refused] == [
        (12, "return_delivered_order_items"),
        (13, "return_delivered_order_items"),
        (64, "exchange_delivered_order_items"),
        (106, "exchange_delivered_order_items"),
    ]
    reasons = [error for _, _, error in refused]
    assert reasons[0].startswith("payment method should be either the original payment method")
    assert reasons[2].startswith("non-delivered order cannot be exchanged")
    assert reasons[3].startswith("insufficient gift card balance to pay for the price difference")
    assert lookups_refused == 20
    assert sum(not t.actions for t in tasks) == 2


async def test_a_refusal_reaches_the_model_as_an_error(
    pristine: RetailDB, tasks: list[RetailTask]
) -> None:
    async with Runtime(store=MemoryStore()) as runtime:
        done = await replay(runtime, build_agent(), tasks[64], pristine)
    results = [m.content for m in done.result.messages if isinstance(m, ToolResultMessage)]
    assert any(r.startswith("Error: non-delivered order cannot be exchanged") for r in results)
    assert done.passed


async def test_a_turn_whose_calls_finish_out_of_order_can_leave_another_state(
    pristine: RetailDB, tasks: list[RetailTask]
) -> None:
    """Grouped turns run concurrently: where one turn changes the same order twice (its
    address, then its items), finishing in the other order refuses the address change."""
    sensitive = {t.id for t in tasks if order_sensitive_turns(pristine, t, reversed_only=True)}
    assert len(sensitive) == 12
    grouped = [t for t in tasks if any(len(turn) > 1 for turn in grouped_turns(t))]
    agent = build_agent(tools=in_reverse(RETAIL_TOOLS))
    async with Runtime(store=MemoryStore()) as runtime:
        replays = await asyncio.gather(
            *(replay(runtime, agent, t, pristine, turns=grouped_turns) for t in grouped)
        )
    assert {r.task.id for r in replays if not r.passed} == sensitive
    assert all(r.result.status == "completed" for r in replays)


def _sequential_agent(tools: Any) -> Agent[str]:
    """The retail agent with the option that runs a turn's calls one at a time, in order."""
    return build_agent(tools=tools, sequential_tool_calls=True)


async def test_a_turn_run_in_order_leaves_the_expected_state(
    pristine: RetailDB, tasks: list[RetailTask]
) -> None:
    agent = _sequential_agent(in_reverse(RETAIL_TOOLS))
    grouped = [t for t in tasks if order_sensitive_turns(pristine, t, reversed_only=True)]
    async with Runtime(store=MemoryStore()) as runtime:
        replays = [await replay(runtime, agent, t, pristine, turns=grouped_turns) for t in grouped]
    assert [r.task.id for r in replays if not r.passed] == []
