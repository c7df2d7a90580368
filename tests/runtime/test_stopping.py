"""Effects in doubt go to a person: a write tool that times out, and a run cancelled or
interrupted while such a tool runs. Nothing that is not safe to repeat runs twice, and
nothing pretends to know whether it happened."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from keel import Agent, KeelSettings, RunContext, Runtime, UsageError, tool
from keel.events import CancelRequested, RunFinished, ToolCallInDoubt
from keel.testing import MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


async def test_a_write_tool_that_times_out_is_not_retried_and_a_person_is_asked(
    store: MemoryStore,
) -> None:
    charges: list[str] = []
    release = threading.Event()

    @tool(timeout_s=0.05)
    def charge(ctx: RunContext[None], amount_usd: float) -> str:
        """Charge a card (slow, not safe to repeat)."""
        charges.append(ctx.idempotency_key)
        release.wait(5)  # the thread goes on after the timeout: the effect may happen
        return "charged"

    model = ScriptedModel([call("charge", amount_usd=10), call("charge", amount_usd=10), "x"])
    agent = Agent(name="shop", model=model, tools=[charge])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])
    try:
        result = await runtime.run(agent, "Charge me")
    finally:
        release.set()

    assert result.status == "awaiting_approval"
    [pending] = result.pending
    assert pending.kind == "interrupted"
    assert pending.reason is not None
    assert "did not finish within 0.05s" in pending.reason
    assert len(charges) == 1  # the model was not told to try again, so it did not
    doubts = [e for e in await store.load(result.run_id) if isinstance(e, ToolCallInDoubt)]
    assert [d.reason.code for d in doubts] == ["tool_timeout"]

    # The bank says it happened: the run goes on without charging again; the model's next
    # ask for a charge is a call of its own (a new key), which runs (quickly, now).
    done = await runtime.confirm(result.run_id, by="ops", result="charged (bank ref 1)")
    assert done.status == "completed"
    assert len(charges) == 2
    assert charges[0] != charges[1]


async def test_a_write_tool_timing_out_on_a_retried_attempt_goes_back_to_a_person(
    store: MemoryStore,
) -> None:
    attempts: list[int] = []

    @tool(timeout_s=0.05)
    async def charge(ctx: RunContext[None]) -> str:
        """Charge (hangs on its second attempt)."""
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.sleep(5)
        await asyncio.sleep(5)
        return "charged"

    agent = Agent(name="shop", model=ScriptedModel([call("charge"), "Done."]), tools=[charge])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])
    first = await runtime.run(agent, "Charge")
    assert first.status == "awaiting_approval"

    # A person lets it run again; the new attempt times out too: they are asked again.
    again = await runtime.approve(first.run_id, by="ops")

    assert again.status == "awaiting_approval"
    assert attempts == [1, 2]
    assert again.pending[0].kind == "interrupted"


async def test_cancelling_a_run_while_a_write_tool_runs_asks_a_person(store: MemoryStore) -> None:
    charges: list[str] = []
    entered = asyncio.Event()
    gate = asyncio.Event()

    @tool
    async def charge(ctx: RunContext[None]) -> str:
        """Charge (not safe to repeat)."""
        charges.append(ctx.idempotency_key)
        entered.set()
        await gate.wait()
        return "charged"

    agent = Agent(name="shop", model=ScriptedModel([call("charge"), "Done."]), tools=[charge])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])
    running = asyncio.create_task(runtime.run(agent, "Charge", thread="t"))
    await entered.wait()

    cancelled = await runtime.cancel((await store.list_runs())[0].run_id, reason="user left")

    assert cancelled.status == "awaiting_approval"  # not "cancelled": the charge is in doubt
    [pending] = cancelled.pending
    assert pending.kind == "interrupted"
    events = await store.load(cancelled.run_id)
    assert any(isinstance(e, CancelRequested) for e in events)
    assert (await store.active_run("t")) is None  # the thread is free at once
    seen = await running  # the local driver stopped and says where the run stands
    assert seen.status == "awaiting_approval"

    with pytest.raises(UsageError, match="it will not run again"):
        await runtime.approve(cancelled.run_id, by="ops")
    ended = await runtime.confirm(cancelled.run_id, by="ops", result="charged")
    assert ended.status == "cancelled"
    assert charges == [charges[0]]
    finished = [e for e in await store.load(ended.run_id) if isinstance(e, RunFinished)]
    assert [f.status for f in finished] == ["cancelled"]


async def test_interrupting_a_run_with_an_effect_in_doubt_starts_the_new_one_at_once(
    store: MemoryStore,
) -> None:
    entered = asyncio.Event()

    @tool
    async def charge(ctx: RunContext[None]) -> str:
        """Charge (hangs)."""
        entered.set()
        await asyncio.Event().wait()
        return "charged"

    slow = Agent(name="shop", model=ScriptedModel([call("charge")]), tools=[charge])
    runtime = Runtime(store=store, settings=NO_MODELS)
    first = asyncio.create_task(runtime.run(slow, "Charge", thread="t"))
    await entered.wait()

    newer = Agent(name="shop", model=ScriptedModel(["Hello again."]), tools=[charge])
    second = await runtime.run(newer, "Never mind", thread="t", if_busy="interrupt")

    assert second.status == "completed"
    old = await first
    assert old.status == "awaiting_approval"
    assert old.pending[0].kind == "interrupted"


async def test_cancelling_a_run_without_effects_in_doubt_ends_it_at_once(
    store: MemoryStore,
) -> None:
    entered = asyncio.Event()

    @tool(side_effects="read")
    async def look(ctx: RunContext[None]) -> str:
        """Look (safe to repeat; hangs)."""
        entered.set()
        await asyncio.Event().wait()
        return "seen"

    agent = Agent(name="reader", model=ScriptedModel([call("look")]), tools=[look])
    runtime = Runtime(store=store, settings=NO_MODELS)
    running = asyncio.create_task(runtime.run(agent, "Look"))
    await entered.wait()
    run_id = (await store.list_runs())[0].run_id

    cancelled = await runtime.cancel(run_id)

    assert cancelled.status == "cancelled"
    assert (await running).status == "cancelled"
