"""``Agent(sequential_tool_calls=True)``: the calls of one model turn run one at a time, in the
model's order, each journaled as started just before it runs; by default they run at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keel import Agent, KeelSettings, RunContext, Runtime, tool
from keel.events import ToolCallStarted
from keel.messages import ToolCall
from keel.testing import MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


class Account:
    """A balance that tools read, then write after a pause: at once, they lose an update."""

    def __init__(self) -> None:
        self.balance = 100
        self.order: list[str] = []


def account_tools(account: Account) -> list[Any]:
    @tool(side_effects="read")
    async def deposit(amount: int) -> str:
        """Add to the balance."""
        account.order.append(f"start {amount}")
        seen = account.balance
        await asyncio.sleep(0)  # another call running at the same time gets in here
        account.balance = seen + amount
        account.order.append(f"end {amount}")
        return f"balance {account.balance}"

    return [deposit]


def two_deposits() -> list[ToolCall]:
    return [call("deposit", amount=10), call("deposit", amount=5)]  # ids call_1_0, call_1_1


async def run_deposits(store: MemoryStore, *, sequential: bool) -> tuple[Account, Any]:
    account = Account()
    agent = Agent(
        name="bank",
        model=ScriptedModel([two_deposits(), "Done."]),
        tools=account_tools(account),
        sequential_tool_calls=sequential,
    )
    result = await Runtime(store=store, settings=NO_MODELS).run(agent, "Deposit 10 then 5")
    return account, result


async def test_sequential_calls_run_one_after_the_other_in_order(store: MemoryStore) -> None:
    account, result = await run_deposits(store, sequential=True)

    assert account.order == ["start 10", "end 10", "start 5", "end 5"]
    assert account.balance == 115
    results = [m.content for m in result.messages if m.role == "tool"]
    assert results == ["balance 110", "balance 115"]


async def test_by_default_the_calls_of_a_turn_run_at_once(store: MemoryStore) -> None:
    account, _ = await run_deposits(store, sequential=False)

    assert account.order == ["start 10", "start 5", "end 10", "end 5"]
    assert account.balance == 105  # the lost update sequential calls avoid


async def test_each_sequential_call_is_journaled_as_started_just_before_it_runs(
    store: MemoryStore,
) -> None:
    _, result = await run_deposits(store, sequential=True)

    kinds = [
        f"{e.type}:{e.call.id}"  # type: ignore[attr-defined]
        for e in await store.load(result.run_id)
        if e.type in ("tool_call_started", "tool_call_finished")
    ]
    assert kinds == [
        "tool_call_started:call_1_0",
        "tool_call_finished:call_1_0",
        "tool_call_started:call_1_1",
        "tool_call_finished:call_1_1",
    ]


async def test_a_crash_during_a_sequential_call_asks_only_about_that_call(
    store: MemoryStore,
) -> None:
    """The first payment hangs and the process 'dies': the second was never started, so a
    person is asked about the first only, and the second runs once after the decision."""
    paid: list[str] = []
    entered = asyncio.Event()
    gate = asyncio.Event()

    @tool
    async def pay(ctx: RunContext[None], to: str) -> str:
        """Pay someone (not safe to repeat)."""
        paid.append(to)
        if to == "ana" and not gate.is_set():
            entered.set()
            await asyncio.Event().wait()  # hangs until the crash
        return f"paid {to}"

    turn = [call("pay", to="ana"), call("pay", to="bob")]
    agent = Agent(
        name="payer", model=ScriptedModel([turn]), tools=[pay], sequential_tool_calls=True
    )
    task = asyncio.create_task(Runtime(store=store, settings=NO_MODELS).run(agent, "Pay"))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = await store.list_runs()
    started = [e.call.id for e in await store.load(record.run_id) if isinstance(e, ToolCallStarted)]
    assert started == ["call_1_0"]  # bob's payment was never started

    gate.set()
    again = Agent(
        name="payer", model=ScriptedModel(["Paid both."]), tools=[pay], sequential_tool_calls=True
    )
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[again])
    [waiting] = (await runtime.recover()).results
    assert [(p.call.id, p.kind) for p in waiting.pending] == [("call_1_0", "interrupted")]

    done = await runtime.confirm(record.run_id, by="ops", result="paid ana (bank ref 7)")

    assert (done.status, done.output) == ("completed", "Paid both.")
    assert paid == ["ana", "bob"]  # nobody paid twice
