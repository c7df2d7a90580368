"""Handoffs: triage hands the run to billing, which goes on in the same run with its own
instructions, tools and model; the thread stays with billing; replay reproduces the handoff
exactly, and a run resumed after a crash (in another process) goes on with billing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel import Agent, CheckRequest, CheckResult, KeelSettings, Runtime, check, tool
from keel.events import HandedOff, RunStarted, ToolCallFinished
from keel.messages import ModelRequest
from keel.ports import Store
from keel.stores import SQLiteStore
from keel.testing import FunctionModel, MemoryStore, ScriptedModel, call
from tests.runtime.handoff_agents import build, invoice
from tests.stores._backends import postgres_store, sqlite_store

NO_MODELS = KeelSettings.from_environ({})
WORKER = Path(__file__).with_name("handoff_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


async def test_a_handoff_continues_the_run_with_the_other_agent(store: MemoryStore) -> None:
    billing_model = ScriptedModel([call("invoice", number="9"), "Invoice 9 is paid."])
    triage, _ = build(billing_model=billing_model)
    triage_model = triage.model
    assert isinstance(triage_model, ScriptedModel)
    runtime = Runtime(store=store, settings=NO_MODELS)

    result = await runtime.run(triage, "Is invoice 9 paid?", thread="t-1", user="ana")

    assert (result.status, result.output, result.agent) == (
        "completed",
        "Invoice 9 is paid.",
        "billing",
    )
    # Billing's own tool ran (the loop uses billing's tools after the handoff).
    assert [m.content for m in result.messages if m.role == "tool"] == [
        "Transferred to billing: it answers from here on.",
        "invoice 9: paid",
    ]
    # Triage saw its own tools and the handoff; billing its instructions and tools only.
    [asked] = triage_model.requests
    assert [t.name for t in asked.tools] == ["lookup_order", "transfer_to_billing"]
    first = billing_model.requests[0]
    assert first.messages[0].content == (
        f"You handle billing for ana (made by process {os.getpid()})."
    )
    assert [t.name for t in first.tools] == ["invoice"]
    # Billing sees the conversation so far, the transfer included.
    assert [m.role for m in first.messages] == ["system", "user", "assistant", "tool"]
    assert first.messages[-1].content == "Transferred to billing: it answers from here on."
    events = await store.load(result.run_id)
    [handed] = [e for e in events if isinstance(e, HandedOff)]
    assert (handed.from_agent, handed.to_agent, handed.tools) == ("triage", "billing", ("invoice",))
    assert handed.instructions == first.messages[0].content
    assert handed.models == ("scripted",)
    assert (await store.get_run(result.run_id)).agent == "billing"


async def test_the_next_message_of_the_thread_is_run_by_the_agent_it_was_handed_to(
    store: MemoryStore,
) -> None:
    billing_model = ScriptedModel(["Paid.", "Your refund is on its way."])
    triage, _ = build(billing_model=billing_model)
    runtime = Runtime(store=store, settings=NO_MODELS)
    await runtime.run(triage, "Is my invoice paid?", thread="t-1")

    # Sent to triage again: the thread is billing's now (triage's script is used up).
    second = await runtime.run(triage, "And my refund?", thread="t-1")

    assert (second.agent, second.output) == ("billing", "Your refund is on its way.")
    started = (await store.load(second.run_id))[0]
    assert isinstance(started, RunStarted)
    assert (started.agent, started.tools) == ("billing", ("invoice",))
    # Another thread starts with triage.
    fresh_triage, _ = build(
        billing_model=ScriptedModel([]), triage_model=ScriptedModel(["Hello."], name="t")
    )
    other = await runtime.run(fresh_triage, "Hi", thread="t-2")
    assert other.agent == "triage"


async def test_a_thread_stays_with_its_agent_for_an_agent_that_cannot_reach_it(
    store: MemoryStore,
) -> None:
    triage, _ = build(billing_model=ScriptedModel(["Paid."]))
    runtime = Runtime(store=store, settings=NO_MODELS)
    await runtime.run(triage, "Invoice?", thread="t-1")
    support = Agent(name="support", model=ScriptedModel(["Support here."]))

    result = await runtime.run(support, "Hello?", thread="t-1")

    assert result.agent == "support"


async def test_a_handoff_is_replayed_exactly(store: MemoryStore) -> None:
    billing_model = ScriptedModel([call("invoice", number="9"), "Invoice 9 is paid."])
    triage, _ = build(billing_model=billing_model)
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[triage])
    result = await runtime.run(triage, "Is invoice 9 paid?", user="ana")
    asked = len(billing_model.requests)

    by_registry = await runtime.replay(result.run_id)
    by_agent = await runtime.replay(result.run_id, triage)

    for replayed in (by_registry, by_agent):
        assert replayed.identical, replayed.differences
        assert replayed.state.agent == "billing"
        assert str(replayed.state.messages[0].content).startswith("You handle billing for ana")
    assert len(billing_model.requests) == asked  # nothing was called


async def test_two_handoffs_in_one_turn_take_the_first(store: MemoryStore) -> None:
    refunds = Agent(name="refunds", model=ScriptedModel(["Refunds here."], name="r"))
    billing = Agent(name="billing", model=ScriptedModel(["Billing here."], name="b"))
    triage = Agent(
        name="triage",
        model=ScriptedModel([[call("transfer_to_billing"), call("transfer_to_refunds")]]),
        handoffs=[billing, refunds],
    )

    result = await Runtime(store=store, settings=NO_MODELS).run(triage, "Help")

    assert (result.agent, result.output) == ("billing", "Billing here.")
    results = [e for e in await store.load(result.run_id) if isinstance(e, ToolCallFinished)]
    codes = {r.call.name: r.error.code if r.error else None for r in results}
    assert codes == {"transfer_to_billing": None, "transfer_to_refunds": "handoff_refused"}


async def test_a_handoff_whose_instructions_fail_fails_the_run(store: MemoryStore) -> None:
    def broken(ctx: object) -> str:
        raise ValueError("no billing profile")

    billing = Agent(name="billing", instructions=broken, model=ScriptedModel([], name="b"))
    triage = Agent(
        name="triage", model=ScriptedModel([call("transfer_to_billing")]), handoffs=[billing]
    )

    result = await Runtime(store=store, settings=NO_MODELS).run(triage, "Help")

    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.code == "instructions_failed"
    assert "could not be handed to agent 'billing'" in result.reason.message
    assert "ValueError: no billing profile" in result.reason.message


def test_agents_that_hand_off_must_share_an_output_type_and_tool_names() -> None:
    from keel.errors import ConfigurationError, ToolDefinitionError

    typed = Agent(name="typed", model="rules", output_type=int)
    with pytest.raises(ConfigurationError, match="must give the same output type"):
        Agent(name="triage", model="rules", handoffs=[typed])

    def transfer_to_billing() -> str:
        """Clashes with the handoff tool."""
        return ""

    billing = Agent(name="billing", model="rules")
    with pytest.raises(ToolDefinitionError, match="two tools named 'transfer_to_billing'"):
        Agent(name="triage", model="rules", tools=[transfer_to_billing], handoffs=[billing])
    other = Agent(name="billing", model="rules")
    hub = Agent(name="hub", model="rules", handoffs=[other])
    with pytest.raises(ConfigurationError, match="two different agents named 'billing'"):
        Agent(name="triage", model="rules", handoffs=[billing, hub])


def _crash_after_handoff(db: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, str(WORKER), "--journal", str(db)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 77, done.stderr


async def test_a_run_that_died_after_a_handoff_resumes_with_the_new_agent_in_another_process(
    tmp_path: Path,
) -> None:
    db = tmp_path / "keel.db"
    await asyncio.to_thread(_crash_after_handoff, db)

    billing_model = ScriptedModel(["Invoice 9 is paid.", "Refund sent."], name="billing-model")
    triage, _ = build(billing_model=billing_model, triage_model=ScriptedModel([], name="t"))
    async with SQLiteStore(db) as store:
        [record] = await store.list_runs()
        assert (record.status, record.agent) == ("running", "billing")
        runtime = Runtime(store=store, settings=NO_MODELS, agents=[triage])
        while True:  # the dead process's lease (0.5 s) must run out first
            current = await store.get_run(record.run_id)
            if current.lease_expires_at is None or current.lease_expires_at < time.time():
                break
            await asyncio.sleep(0.1)

        result = await runtime.resume(record.run_id)
        # The thread stays billing's, in this process too.
        after = await runtime.run(triage, "And my refund?", thread="customer-1")

    assert (result.status, result.agent, result.output) == (
        "completed",
        "billing",
        "Invoice 9 is paid.",
    )
    # The instructions made by the dead process are journaled, not made again here.
    made = str(billing_model.requests[0].messages[0].content)
    assert made.startswith("You handle billing for ana (made by process ")
    assert f"process {os.getpid()})" not in made
    assert (after.agent, after.output) == ("billing", "Refund sent.")


async def test_a_queued_run_hands_off_in_a_worker(store: MemoryStore) -> None:
    triage, _ = build(billing_model=ScriptedModel(["Paid."]))
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[triage])
    assert set(runtime.agents) == {"triage", "billing"}  # the graph is registered

    run_id = await runtime.submit(triage, "Invoice?", thread="t-1")
    await runtime.worker().run(until_idle=True)

    result = await runtime.result(run_id)
    assert (result.status, result.agent, result.output) == ("completed", "billing", "Paid.")


async def test_a_fork_after_the_handoff_goes_on_with_the_agent_handed_to(
    store: MemoryStore,
) -> None:
    billing_model = ScriptedModel(["Paid.", "Paid, says the fork."])
    triage, _ = build(billing_model=billing_model)
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[triage])
    source = await runtime.run(triage, "Invoice?", thread="t-1")

    fork = await runtime.fork(source.run_id, at_step=1)

    assert (fork.agent, fork.output) == ("billing", "Paid, says the fork.")
    assert str(billing_model.requests[-1].messages[0].content).startswith("You handle billing")


async def test_the_handoff_is_durable_before_the_new_agents_model_is_asked(
    store: MemoryStore,
) -> None:
    """Even when a read-only call of the same turn could let its result wait for the next
    append: the new agent must never act on a handoff the journal does not hold."""
    journaled: list[list[str]] = []

    async def billing_answers(request: ModelRequest) -> str:
        [record] = await store.list_runs()
        journaled.append([e.type for e in await store.load(record.run_id)])
        return "Paid."

    triage_model = ScriptedModel(
        [[call("lookup_order", order_id="1"), call("transfer_to_billing")]]
    )
    triage, _ = build(billing_model=FunctionModel(billing_answers), triage_model=triage_model)

    result = await Runtime(store=store, settings=NO_MODELS).run(triage, "Invoice?")

    assert result.output == "Paid."
    [seen] = journaled
    assert seen[-2:] == ["tool_call_finished", "handed_off"]


async def test_a_request_repeated_with_its_key_after_a_handoff_gets_the_same_run(
    store: MemoryStore,
) -> None:
    triage, _ = build(billing_model=ScriptedModel(["Paid."]))
    runtime = Runtime(store=store, settings=NO_MODELS)
    # No thread: nothing routes the repeat to billing, the key alone finds the run.
    first = await runtime.run(triage, "Invoice?", idempotency_key="req-1")

    again = await runtime.run(triage, "Invoice?", idempotency_key="req-1")
    submitted = await runtime.submit(triage, "Invoice?", idempotency_key="req-1")

    assert again.run_id == submitted == first.run_id
    assert (again.agent, again.output) == ("billing", "Paid.")


@pytest.fixture(params=["sqlite", "postgres"])
async def durable_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened = sqlite_store(tmp_path)
    else:
        opened = postgres_store(request.getfixturevalue("postgres_url"))
    async with opened as store:
        yield store


async def test_a_run_interrupted_after_a_handoff_resumes_with_the_new_agent_in_another_runtime(
    durable_store: Store,
) -> None:
    entered = asyncio.Event()
    gate = asyncio.Event()

    @tool(idempotent=True)
    async def slow_invoice(number: str) -> str:
        """Look an invoice up, slowly."""
        entered.set()
        await gate.wait()
        return f"invoice {number}: paid"

    def agents(billing_model: ScriptedModel) -> Agent[str]:
        billing = Agent(name="billing", model=billing_model, tools=[slow_invoice])
        return Agent(
            name="triage",
            model=ScriptedModel([call("transfer_to_billing")], name="triage-model"),
            handoffs=[billing],
        )

    first = agents(ScriptedModel([call("slow_invoice", number="9")], name="billing-model"))
    task = asyncio.create_task(
        Runtime(store=durable_store, settings=NO_MODELS).run(first, "Invoice 9?", thread="c-1")
    )
    await entered.wait()
    task.cancel()  # the process 'dies' while billing's tool runs
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = await durable_store.list_runs()
    assert (record.status, record.agent) == ("running", "billing")

    gate.set()
    model = ScriptedModel(["Invoice 9 is paid.", "Refund sent."], name="billing-model")
    again = agents(model)
    runtime = Runtime(store=durable_store, settings=NO_MODELS, agents=[again])
    result = await runtime.resume(record.run_id)
    after = await runtime.run(again, "And my refund?", thread="c-1")

    assert (result.status, result.agent, result.output) == (
        "completed",
        "billing",
        "Invoice 9 is paid.",
    )
    assert [t.name for t in model.requests[0].tools] == ["slow_invoice"]
    assert (after.agent, after.output) == ("billing", "Refund sent.")


async def test_after_a_handoff_the_new_agents_checks_are_consulted(store: MemoryStore) -> None:
    @check(points=["tool_call"])
    def no_invoices(request: CheckRequest) -> CheckResult:
        return CheckResult.deny("invoices are off today")

    billing = Agent(
        name="billing",
        model=ScriptedModel([call("invoice", number="9"), "Sorry."], name="b"),
        tools=[invoice],
        checks=[no_invoices],
    )
    triage = Agent(
        name="triage", model=ScriptedModel([call("transfer_to_billing")]), handoffs=[billing]
    )

    result = await Runtime(store=store, settings=NO_MODELS).run(triage, "Invoice 9?")

    refused = [m.content for m in result.messages if m.role == "tool"][-1]
    assert "invoices are off today" in str(refused)
    assert result.output == "Sorry."
