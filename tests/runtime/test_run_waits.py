"""Waiting for a run: a run this process drives is answered with its driver's result, read as
the waiter's agent reads it; a run driven elsewhere, from the journal."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel

from keel import Agent, KeelSettings, Runtime
from keel.stores import SQLiteStore
from keel.testing import FunctionModel, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


class Order(BaseModel):
    number: int


def _order(request: object) -> str:
    return '{"number": 42}'


async def test_waiting_on_a_run_driven_here_gives_what_the_journal_says(tmp_path: Path) -> None:
    agent = Agent(name="desk", model=ScriptedModel([call("lookup"), "Shipped."] * 3))
    async with Runtime(store=SQLiteStore(tmp_path / "k.db"), settings=NO_MODELS) as runtime:
        runtime.register(agent)
        worker = runtime.worker(poll_interval_s=0.01)
        working = asyncio.create_task(worker.run())
        try:
            run_ids = [await runtime.submit(agent, f"order {n}") for n in range(3)]
            waited = [await runtime.wait(run_id, timeout_s=30) for run_id in run_ids]
        finally:
            worker.stop()
            await working
        read = [await runtime.result(run_id) for run_id in run_ids]
    assert [r.status for r in waited] == ["completed"] * 3
    for got, journaled in zip(waited, read, strict=True):
        assert got.output == journaled.output == "Shipped."
        assert (got.steps, got.tool_calls, got.usage) == (
            journaled.steps,
            journaled.tool_calls,
            journaled.usage,
        )
        assert got.messages == journaled.messages


async def test_a_waiter_with_another_agent_reads_the_output_as_its_own(tmp_path: Path) -> None:
    typed = Agent(name="desk", model=FunctionModel(_order), output_type=Order)
    same_name_plain = Agent(name="desk", model=FunctionModel(_order), output_type=dict)
    async with Runtime(store=SQLiteStore(tmp_path / "k.db"), settings=NO_MODELS) as runtime:
        runtime.register(typed)
        worker = runtime.worker(poll_interval_s=0.01)
        working = asyncio.create_task(worker.run())
        try:
            first = await runtime.submit(typed, "which order?")
            second = await runtime.submit(typed, "which order?")
            as_registered = await runtime.wait(first, timeout_s=30)
            as_plain = await runtime.wait(second, same_name_plain, timeout_s=30)
        finally:
            worker.stop()
            await working
    assert as_registered.output == Order(number=42)
    assert as_plain.output == {"number": 42}
