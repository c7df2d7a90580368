"""Running: submit and the queue, one driver per run, a thread's order kept through pauses,
which models a run uses (and never a silent offline one), and results that cannot be mistaken
for answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keel import (
    Agent,
    ConfigurationError,
    KeelSettings,
    Limits,
    RunContext,
    RunNotCompletedError,
    Runtime,
    ThreadBusyError,
    UsageError,
    tool,
)
from keel.events import RunDequeued, RunResumed, RunStarted, ToolCallStarted
from keel.messages import ModelRequest, UserMessage
from keel.testing import FakeClock, FunctionModel, MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


def echo(name: str = "echo", **options: Any) -> Agent[str]:
    """An agent that answers with what the user said, after one lookup."""

    async def answer(request: ModelRequest) -> Any:
        said = [m.content for m in request.messages if isinstance(m, UserMessage)]
        return f"{name}: " + " | ".join(s for s in said if s)

    return Agent(name=name, model=FunctionModel(answer), **options)


# -- the lease -------------------------------------------------------------------------------


class CountingStore(MemoryStore):
    """Counts the writes that give a lease up."""

    def __init__(self) -> None:
        super().__init__(check_json=True)
        self.releasing_appends = 0
        self.releases = 0

    async def append(self, run_id: str, events: Any, **options: Any) -> int:
        self.releasing_appends += bool(options.get("release"))
        return await super().append(run_id, events, **options)

    async def release_lease(self, lease: Any) -> None:
        self.releases += 1
        await super().release_lease(lease)


async def test_a_runs_last_append_gives_its_lease_up() -> None:
    store = CountingStore()
    async with store:
        runtime = Runtime(store=store, settings=NO_MODELS)

        result = await runtime.run(echo(), "hello")

        assert result.status == "completed"
        assert (store.releasing_appends, store.releases) == (1, 0)
        record = await store.get_run(result.run_id)
        assert (record.lease_owner, record.lease_expires_at) == (None, None)


# -- submit, the queue and workers ---------------------------------------------------------


async def test_submit_makes_the_run_durable_as_queued_and_returns_at_once(
    store: MemoryStore,
) -> None:
    runtime = Runtime(store=store, settings=NO_MODELS)
    agent = echo()

    run_id = await runtime.submit(agent, "hello", thread="t1")

    record = await store.get_run(run_id)
    assert (record.status, record.thread_id, record.lease_owner) == ("queued", "t1", None)
    [started] = await store.load(run_id)
    assert isinstance(started, RunStarted)
    assert started.queued
    assert (await runtime.result(run_id)).status == "queued"


async def test_a_worker_claims_queued_runs_and_drives_them(store: MemoryStore) -> None:
    runtime = Runtime(store=store, settings=NO_MODELS)
    agent = echo()
    ids = [await runtime.submit(agent, f"message {i}", thread=f"t{i}") for i in range(5)]

    worker = runtime.worker(concurrency=2)
    await worker.run(until_idle=True)

    results = [await runtime.result(run_id) for run_id in ids]
    assert [r.status for r in results] == ["completed"] * 5
    assert results[3].output == "echo: message 3"
    assert worker.completed == 5
    events = await store.load(ids[0])
    assert [type(e) for e in events[:2]] == [RunStarted, RunDequeued]


async def test_a_submitted_run_fails_fast_when_its_model_cannot_be_used(
    store: MemoryStore,
) -> None:
    runtime = Runtime(store=store, settings=NO_MODELS)
    agent = Agent(name="needs-key", model="openai:gpt-4o-mini")

    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        await runtime.submit(agent, "hello")
    assert await store.list_runs() == []  # nothing was accepted, nothing is lost


async def test_runs_of_one_thread_run_in_order_through_the_queue(store: MemoryStore) -> None:
    runtime = Runtime(store=store, settings=NO_MODELS)
    agent = echo()
    first = await runtime.submit(agent, "first", thread="t")
    second = await runtime.submit(agent, "second", thread="t")

    await runtime.worker(concurrency=4).run(until_idle=True)

    later = await runtime.result(second)
    assert later.output == "echo: first | second"  # the first run's messages came first
    assert (await runtime.result(first)).output == "echo: first"


async def test_a_run_waits_in_the_queue_behind_a_busy_thread_then_runs(store: MemoryStore) -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    @tool(side_effects="read")
    async def slow(ctx: RunContext[None]) -> str:
        """Take a while."""
        entered.set()
        await gate.wait()
        return "done"

    busy = Agent(name="busy", model=ScriptedModel([call("slow"), "first done"]), tools=[slow])
    runtime = Runtime(store=store, settings=NO_MODELS)
    holder = asyncio.create_task(runtime.run(busy, "one", thread="t"))
    await entered.wait()

    waiting = asyncio.create_task(runtime.run(echo("busy"), "two", thread="t"))
    await asyncio.sleep(0.05)
    queued = [r for r in await store.list_runs(thread_id="t") if r.status == "queued"]
    assert len(queued) == 1  # durable in the queue, not only in the caller's memory
    gate.set()

    assert (await holder).output == "first done"
    second = await waiting
    assert second.output == "busy: one | two"


async def test_a_message_to_a_thread_whose_run_waits_for_a_person_is_refused_at_once(
    store: MemoryStore,
) -> None:
    agent = echo("echo", limits=Limits(max_steps=1))
    paused_agent = Agent(
        name="echo", model=ScriptedModel([call("nothing"), "x"]), limits=Limits(max_steps=1)
    )
    runtime = Runtime(store=store, settings=NO_MODELS)
    paused = await runtime.run(paused_agent, "first", thread="t")
    assert paused.status == "paused"

    with pytest.raises(ThreadBusyError, match="waits for a person or for a resume") as caught:
        await runtime.run(agent, "second", thread="t", queue_timeout_s=60)

    assert caught.value.active_run_id == paused.run_id
    statuses = sorted(r.status for r in await store.list_runs(thread_id="t"))
    assert statuses == ["cancelled", "paused"]  # the refused message was withdrawn


async def test_a_paused_run_keeps_its_place_and_the_history_stays_ordered(
    store: MemoryStore,
) -> None:
    runtime = Runtime(store=store, settings=NO_MODELS)
    first_agent = echo("echo", limits=Limits(max_steps=1))
    stuck = Agent(
        name="echo",
        model=ScriptedModel([call("nothing"), "first answer"]),
        limits=Limits(max_steps=1),
    )
    paused = await runtime.run(stuck, "first", thread="t")
    later = await runtime.submit(first_agent, "second", thread="t")

    await runtime.worker().run(until_idle=True)
    assert (await runtime.result(later)).status == "queued"  # behind the paused run

    resumed = await runtime.resume(paused.run_id, stuck, limits=Limits(max_steps=5))
    assert resumed.output == "first answer"
    runtime.register(first_agent)
    await runtime.worker().run(until_idle=True)

    done = await runtime.result(later)
    assert done.output == "echo: first | second"
    history = await store.thread_history("t")
    assert [m.content for m in history.messages if isinstance(m, UserMessage)] == [
        "first",
        "second",
    ]


async def test_a_queued_run_that_waits_too_long_is_withdrawn(store: MemoryStore) -> None:
    clock = FakeClock()
    gate = asyncio.Event()
    entered = asyncio.Event()

    @tool(side_effects="read")
    async def slow(ctx: RunContext[None]) -> str:
        """Take a while."""
        entered.set()
        await gate.wait()
        return "done"

    busy = Agent(name="busy", model=ScriptedModel([call("slow"), "ok"]), tools=[slow])
    runtime = Runtime(store=store, settings=NO_MODELS, clock=clock)
    holder = asyncio.create_task(runtime.run(busy, "one", thread="t"))
    await entered.wait()

    with pytest.raises(ThreadBusyError, match="queue_timeout_s"):
        await runtime.run(echo("busy"), "two", thread="t", queue_timeout_s=30)

    assert clock.slept >= 30  # the wait went through the runtime's clock
    gate.set()
    await holder
    statuses = sorted(r.status for r in await store.list_runs(thread_id="t"))
    assert statuses == ["cancelled", "completed"]


# -- one driver per run ----------------------------------------------------------------------


async def test_two_resumes_of_one_run_in_one_process_drive_it_once(store: MemoryStore) -> None:
    effects: list[str] = []
    gate = asyncio.Event()

    @tool
    async def pay(ctx: RunContext[None]) -> str:
        """Pay (not safe to repeat)."""
        effects.append(ctx.idempotency_key)
        await gate.wait()
        return "paid"

    agent = Agent(name="payer", model=ScriptedModel([call("pay"), "Paid."]), tools=[pay])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])
    run_id = await runtime.submit(agent, "Pay")
    # Two resumes and a recovery race for the run in one process.
    one = asyncio.create_task(runtime.resume(run_id, agent))
    two = asyncio.create_task(runtime.resume(run_id, agent))
    three = asyncio.create_task(runtime.recover())
    await asyncio.sleep(0.05)
    gate.set()
    first, second = await one, await two
    await three

    assert first.run_id == second.run_id == run_id
    assert first.status == second.status == "completed"
    keys = [k for k in effects if k.startswith(run_id)]
    assert len(keys) == 1  # one driver: the payment happened once
    starts = [e for e in await store.load(run_id) if isinstance(e, ToolCallStarted)]
    assert len(starts) == 1


async def test_recover_says_which_runs_it_left_and_until_when(store: MemoryStore) -> None:
    clock = FakeClock(1_000.0)
    entered = asyncio.Event()

    @tool(side_effects="read")
    async def hang(ctx: RunContext[None]) -> str:
        """Hang."""
        entered.set()
        await asyncio.Event().wait()
        return "never"

    agent = Agent(name="hanger", model=ScriptedModel([call("hang")]), tools=[hang])
    driving = Runtime(store=store, settings=NO_MODELS, lease_ttl_s=30)
    task = asyncio.create_task(driving.run(agent, "Go"))
    await entered.wait()

    other = Runtime(store=store, settings=NO_MODELS, agents=[agent], clock=clock)
    recovery = await other.recover()

    assert recovery.results == []
    [skipped] = recovery.skipped
    assert "holds its lease" in skipped.reason
    assert skipped.until is not None
    assert skipped.until > 0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -- models ----------------------------------------------------------------------------------


async def test_an_agent_without_a_model_is_refused_before_anything_is_journaled(
    store: MemoryStore,
) -> None:
    runtime = Runtime(store=store, settings=NO_MODELS)
    unnamed = Agent(name="unnamed")

    with pytest.raises(ConfigurationError, match="names no model and no default is configured"):
        await runtime.run(unnamed, "hello")

    assert await store.list_runs() == []
    configured = Runtime(store=store, settings=KeelSettings.from_environ({"KEEL_MODEL": "rules"}))
    assert (await configured.run(unnamed, "hello")).status == "completed"


async def test_a_missing_key_is_a_clear_error_before_anything_runs(store: MemoryStore) -> None:
    runtime = Runtime(store=store, settings=NO_MODELS)
    agent = Agent(name="claude", model="anthropic:claude-sonnet-4-5")

    with pytest.raises(ConfigurationError, match="needs an API key: set ANTHROPIC_API_KEY"):
        await runtime.run(agent, "hello")
    assert await store.list_runs() == []


async def test_a_resumed_run_uses_the_model_recorded_at_its_start(store: MemoryStore) -> None:
    runtime = Runtime(store=store, settings=NO_MODELS)
    agent = Agent(name="echo", model="rules", limits=Limits(max_steps=1))
    started = await runtime.submit(agent, "Where is order 123?")
    [first] = await store.load(started)
    assert isinstance(first, RunStarted)
    assert first.models == ("rules",)

    # The agent now names a model this process cannot use; the run keeps its own.
    changed = Agent(name="echo", model="openai:gpt-4o")
    done = await runtime.resume(started, changed)
    assert done.status in ("completed", "paused")
    assert done.model == "rules"


async def test_a_resume_that_cannot_use_the_recorded_model_refuses_and_says_why(
    store: MemoryStore,
) -> None:
    keyed = KeelSettings.from_environ({"OPENAI_API_KEY": "sk-test"})
    first = Runtime(store=store, settings=keyed)
    agent = Agent(name="gpt", model="openai:gpt-4o-mini")
    run_id = await first.submit(agent, "hello")

    keyless = Runtime(store=store, settings=NO_MODELS)
    with pytest.raises(UsageError, match="started on model 'openai:gpt-4o-mini'") as caught:
        await keyless.resume(run_id, agent)
    assert "model=..." in caught.value.message
    assert (await store.get_run(run_id)).status == "queued"  # nothing changed

    other = await keyless.resume(run_id, agent, model="rules")  # an explicit choice is journaled
    assert other.model == "rules"  # the run now says which model goes on with it
    assert (await store.get_run(run_id)).model == "rules"
    resumed = [e for e in await store.load(run_id) if isinstance(e, RunResumed)]
    assert resumed
    assert resumed[-1].models == ("rules",)


# -- results ---------------------------------------------------------------------------------


async def test_reading_the_output_of_a_run_that_did_not_complete_raises_with_the_fix(
    store: MemoryStore,
) -> None:
    runtime = Runtime(store=store, settings=NO_MODELS)
    agent = Agent(name="loop", model=ScriptedModel([call("nothing")]), limits=Limits(max_steps=1))
    paused = await runtime.run(agent, "Go")

    with pytest.raises(RunNotCompletedError) as caught:
        _ = paused.output
    message = caught.value.message
    assert paused.run_id in message
    assert "paused" in message
    assert "limit.max_steps" in message
    assert "resume" in message
    assert paused.output_or_none is None
    assert not paused.ok


async def test_a_raised_limit_puts_the_run_back_in_the_queue_for_a_worker(
    store: MemoryStore,
) -> None:
    agent = Agent(
        name="echo", model=ScriptedModel([call("nothing"), "done"]), limits=Limits(max_steps=1)
    )
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])
    paused = await runtime.run(agent, "Go")
    assert paused.status == "paused"

    queued = await Runtime(store=store, settings=NO_MODELS).requeue(
        paused.run_id, limits=Limits(max_steps=5)
    )  # another process, without the agent: it only queues

    assert queued.status == "queued"
    await runtime.worker().run(until_idle=True)
    done = await runtime.result(paused.run_id)
    assert (done.status, done.output) == ("completed", "done")


async def test_a_worker_picks_up_a_run_when_its_dead_owners_lease_runs_out() -> None:
    clock = FakeClock(1_000.0)
    store = MemoryStore(clock=clock)
    agent = echo()
    runtime = Runtime(store=store, settings=NO_MODELS, clock=clock, agents=[agent])
    run_id = await runtime.submit(agent, "left behind")
    # A process claimed it and died: the run is leased to nobody alive.
    [lease] = await store.claim_runs(owner="dead-host:1", ttl_s=30, limit=1)
    assert lease.run_id == run_id

    worker = runtime.worker(poll_interval_s=0.01)
    await worker.run(until_idle=True)
    assert (await runtime.result(run_id)).status == "queued"  # the lease is still live
    recovery = await runtime.recover()
    assert [(s.run_id, s.until) for s in recovery.skipped] == [(run_id, 1_030.0)]

    clock.advance(31)
    await worker.run(until_idle=True)
    assert (await runtime.result(run_id)).output == "echo: left behind"
