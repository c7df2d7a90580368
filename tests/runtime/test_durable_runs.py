"""Durable runs in one process: recovery from an interrupted journal, leases and fencing,
thread policies, cancellation, limits that catch loops, and retention.

A crash is simulated by cancelling a run while its tool hangs: the journal then holds a call
that started and never finished, exactly as after SIGKILL (tests/durability kills real
processes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keel import Agent, Limits, RunContext, Runtime, tool
from keel._core.events import RunResumed, ToolCallFinished, ToolCallStarted
from keel.errors import RunLeasedError, ThreadBusyError, UsageError
from keel.testing import MemoryStore, ScriptedModel, call


class Ledger(dict[str, int]):
    """Counts effects per idempotency key; ``entered`` is set when a tool starts its effect."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()


def tools(ledger: Ledger, gate: asyncio.Event | None = None) -> list[Any]:
    """A payment tool (not safe to repeat) and a lookup (idempotent); both can be held."""

    @tool
    async def pay(ctx: RunContext[None], amount_usd: float) -> str:
        """Pay someone."""
        ledger[ctx.idempotency_key] = ledger.get(ctx.idempotency_key, 0) + 1
        ledger.entered.set()
        if gate is not None:
            await gate.wait()
        return f"paid {amount_usd}"

    @tool(idempotent=True)
    async def lookup(ctx: RunContext[None], order_id: str) -> str:
        """Look an order up."""
        ledger[ctx.idempotency_key] = ledger.get(ctx.idempotency_key, 0) + 1
        ledger.entered.set()
        if gate is not None:
            await gate.wait()
        return f"order {order_id}: shipped"

    return [pay, lookup]


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


async def crash_during_first_tool(store: MemoryStore, first: Any) -> str:
    """Start a run whose first tool call hangs, then 'crash' it; return the run id."""
    gate = asyncio.Event()  # never set: the tool hangs until the crash
    ledger = Ledger()
    agent = Agent(name="payer", model=ScriptedModel([first]), tools=tools(ledger, gate))
    runtime = Runtime(store=store)
    task = asyncio.create_task(runtime.run(agent, "Go"))
    await ledger.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = await store.list_runs()
    return record.run_id


async def test_an_interrupted_idempotent_call_is_run_again_with_its_key(store: MemoryStore) -> None:
    run_id = await crash_during_first_tool(store, call("lookup", order_id="7"))
    assert (await store.get_run(run_id)).status == "running"
    ledger = Ledger()
    model = ScriptedModel(["It shipped."])  # only what is left: step 1 is not asked again
    agent = Agent(name="payer", model=model, tools=tools(ledger))

    async with Runtime(store=store, agents=[agent]) as runtime:  # recovers on entry
        result = await runtime.resume(run_id)

    assert (result.status, result.output) == ("completed", "It shipped.")
    assert ledger == {f"{run_id}:1:0": 1}  # same key as before the crash
    model.assert_complete()
    # The journal says the run was taken over from a driver that died.
    [resumed] = [e for e in await store.load(run_id) if isinstance(e, RunResumed)]
    assert resumed.taken_over


async def test_an_interrupted_payment_waits_for_a_person(store: MemoryStore) -> None:
    run_id = await crash_during_first_tool(store, call("pay", amount_usd=30))
    ledger = Ledger()
    agent = Agent(name="payer", model=ScriptedModel(["Paid."]), tools=tools(ledger))
    runtime = Runtime(store=store, agents=[agent])

    recovery = await runtime.recover()

    [waiting] = recovery.results
    assert waiting.status == "awaiting_approval"
    [pending] = waiting.pending
    assert (pending.kind, pending.call.name, pending.idempotency_key) == (
        "interrupted",
        "pay",
        f"{run_id}:1:0",
    )
    assert ledger == {}  # never paid twice
    with pytest.raises(UsageError, match="waiting for a person to decide on"):
        await runtime.resume(run_id)

    done = await runtime.confirm(run_id, by="ops@example.com", result="paid 30 (bank ref 881)")

    assert (done.status, done.output) == ("completed", "Paid.")
    assert ledger == {}
    tool_result = next(m for m in done.messages if m.role == "tool")
    assert tool_result.content == "paid 30 (bank ref 881)"


async def test_a_person_can_let_an_interrupted_payment_run_again(store: MemoryStore) -> None:
    run_id = await crash_during_first_tool(store, call("pay", amount_usd=30))
    ledger = Ledger()
    agent = Agent(name="payer", model=ScriptedModel(["Paid."]), tools=tools(ledger))
    runtime = Runtime(store=store, agents=[agent])
    await runtime.recover()

    done = await runtime.approve(run_id, by="ops@example.com")

    assert done.status == "completed"
    assert ledger == {f"{run_id}:1:0": 1}


async def test_recovery_skips_agents_it_does_not_know(store: MemoryStore) -> None:
    run_id = await crash_during_first_tool(store, call("lookup", order_id="7"))
    other = Agent(name="someone-else", model=ScriptedModel([]))

    recovery = await Runtime(store=store, agents=[other]).recover()

    assert recovery.results == []
    assert [(s.run_id, s.reason) for s in recovery.skipped] == [
        (run_id, "agent 'payer' is not registered")
    ]


async def test_a_run_in_progress_cannot_be_resumed_by_another_runtime(store: MemoryStore) -> None:
    gate = asyncio.Event()
    ledger = Ledger()
    agent = Agent(
        name="payer",
        model=ScriptedModel([call("lookup", order_id="1"), "ok"]),
        tools=tools(ledger, gate),
    )
    first = Runtime(store=store, agents=[agent])
    task = asyncio.create_task(first.run(agent, "Go"))
    await ledger.entered.wait()
    [record] = await store.list_runs()

    with pytest.raises(RunLeasedError, match="is being advanced by"):
        await Runtime(store=store, agents=[agent]).resume(record.run_id)

    gate.set()
    assert (await task).status == "completed"
    assert ledger == {f"{record.run_id}:1:0": 1}


async def test_interrupting_a_run_fences_it_out(store: MemoryStore) -> None:
    gate = asyncio.Event()
    ledger = Ledger()
    slow = Agent(
        name="payer",
        model=ScriptedModel([call("lookup", order_id="1"), "first answer"]),
        tools=tools(ledger, gate),
    )
    first = asyncio.create_task(Runtime(store=store).run(slow, "First", thread="t"))
    await ledger.entered.wait()

    quick = Agent(name="payer", model=ScriptedModel(["second answer"]))
    second = await Runtime(store=store).run(quick, "Second", thread="t", if_busy="interrupt")
    gate.set()
    interrupted = await first

    assert second.output == "second answer"
    assert interrupted.status == "cancelled"
    assert interrupted.reason is not None
    assert f"interrupted by a new message on thread t (run {second.run_id})" in (
        interrupted.reason.message
    )
    events = await store.load(interrupted.run_id)
    # The fenced-out process could not journal its tool result after the cancellation.
    assert not any(isinstance(e, ToolCallFinished) for e in events)


async def test_a_busy_thread_rejects_or_queues_new_messages(store: MemoryStore) -> None:
    gate = asyncio.Event()
    ledger = Ledger()
    slow = Agent(
        name="a",
        model=ScriptedModel([call("lookup", order_id="1"), "first"]),
        tools=tools(ledger, gate),
    )
    runtime = Runtime(store=store)
    first = asyncio.create_task(runtime.run(slow, "First", thread="t"))
    await ledger.entered.wait()

    with pytest.raises(ThreadBusyError, match="thread 't' is busy"):
        await runtime.run(
            Agent(name="a", model=ScriptedModel([])), "Hi", thread="t", if_busy="reject"
        )

    model = ScriptedModel(["second"])
    queued = asyncio.create_task(runtime.run(Agent(name="a", model=model), "Second", thread="t"))
    await asyncio.sleep(0.05)
    assert not queued.done()  # waiting for the first run
    gate.set()
    assert (await first).output == "first"
    assert (await queued).output == "second"
    # The queued run's history is the conversation as the first run left it.
    assert [m.role for m in model.requests[0].messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]


async def test_queueing_gives_up_after_its_timeout(store: MemoryStore) -> None:
    gate = asyncio.Event()
    ledger = Ledger()
    slow = Agent(
        name="a",
        model=ScriptedModel([call("lookup", order_id="1"), "x"]),
        tools=tools(ledger, gate),
    )
    runtime = Runtime(store=store)
    first = asyncio.create_task(runtime.run(slow, "First", thread="t"))
    await ledger.entered.wait()

    with pytest.raises(ThreadBusyError):
        await runtime.run(
            Agent(name="a", model=ScriptedModel([])), "Hi", thread="t", queue_timeout_s=0.1
        )
    gate.set()
    await first


async def test_cancel_ends_a_paused_run(store: MemoryStore) -> None:
    agent = Agent(
        name="a",
        model=ScriptedModel([call("lookup", order_id="1")] * 2),
        tools=tools(Ledger()),
        limits=Limits(max_steps=1),
    )
    runtime = Runtime(store=store, agents=[agent])
    paused = await runtime.run(agent, "Go")

    cancelled = await runtime.cancel(paused.run_id, reason="customer left")

    assert cancelled.status == "cancelled"
    assert cancelled.reason is not None
    assert cancelled.reason.message == "customer left"
    assert (await runtime.resume(paused.run_id)).status == "cancelled"  # stays ended


async def test_a_run_repeating_the_same_call_pauses_and_resumes_with_a_higher_limit(
    store: MemoryStore,
) -> None:
    model = ScriptedModel([call("lookup", order_id="1")] * 4 + ["done"])
    agent = Agent(name="a", model=model, tools=tools(Ledger()), limits=Limits(max_repeated_calls=2))
    runtime = Runtime(store=store, agents=[agent])

    paused = await runtime.run(agent, "Go")
    assert paused.status == "paused"
    assert paused.reason is not None
    assert paused.reason.code == "limit.max_repeated_calls"

    resumed = await runtime.resume(paused.run_id, limits=Limits(max_repeated_calls=10))
    assert resumed.status == "completed"
    model.assert_complete()
    [resumed_event] = [e for e in await store.load(paused.run_id) if isinstance(e, RunResumed)]
    assert not resumed_event.taken_over  # a paused run is continued, not taken over


async def test_leases_are_released_when_a_run_stops(store: MemoryStore) -> None:
    agent = Agent(name="a", model=ScriptedModel(["hi"]))
    runtime = Runtime(store=store)
    result = await runtime.run(agent, "Go")

    lease = await store.acquire_lease(result.run_id, owner="someone-else", ttl_s=5)

    assert lease.token == 2  # the first holder's lease was given up, not left to expire


async def test_retention_deletes_runs_threads_and_their_history(store: MemoryStore) -> None:
    runtime = Runtime(store=store)
    old = await runtime.run(Agent(name="a", model=ScriptedModel(["one"])), "1", thread="t")
    keep = await runtime.run(Agent(name="a", model=ScriptedModel(["two"])), "2", thread="u")

    assert await runtime.delete_runs([old.run_id, "run_unknown"]) == 1
    assert (await store.thread_history("t")).messages == []
    assert [r.run_id for r in await store.list_runs()] == [keep.run_id]
    assert await runtime.delete_thread("u") == 1
    assert await store.list_runs() == []
    with pytest.raises(UsageError, match="0 or more"):
        await runtime.delete_runs_older_than(-1)


async def test_journal_records_the_started_call_before_any_crash(store: MemoryStore) -> None:
    run_id = await crash_during_first_tool(store, call("pay", amount_usd=5))
    events = await store.load(run_id)
    assert [type(e).__name__ for e in events][-1] == "ToolCallStarted"
    started = events[-1]
    assert isinstance(started, ToolCallStarted)
    assert started.idempotency_key == f"{run_id}:1:0"


async def test_a_run_started_inline_and_queued_again_by_a_decision_is_not_dequeued_anew(
    store: MemoryStore,
) -> None:
    from keel.events import RunDequeued
    from keel.policies import RequireApproval

    ledger = Ledger()
    agent = Agent(
        name="payer",
        model=ScriptedModel([call("pay", amount_usd=30), "Paid."]),
        tools=tools(ledger),
        checks=[RequireApproval("pay")],
    )
    runtime = Runtime(store=store, agents=[agent])
    paused = await runtime.run(agent, "Pay 30", thread="t1")
    assert paused.status == "awaiting_approval"
    queued = await runtime.approve(paused.run_id, by="ana", agent=agent, resume=False)
    assert queued.status == "queued"

    done = await runtime.resume(paused.run_id, agent)

    assert done.status == "completed"
    events = await store.load(paused.run_id)
    assert not any(isinstance(e, RunDequeued) for e in events)
