"""``submit(if_busy=...)``: queue behind the thread's open run, refuse while it is open
(atomically: of two racing submits exactly one is accepted), or cancel it first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel import Agent, Runtime, ThreadBusyError
from keel.errors import UsageError
from keel.testing import ScriptedModel
from tests.stores._backends import memory_store, postgres_store, sqlite_store

agent = Agent(name="desk", model=ScriptedModel(["ok"] * 10))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    kind: str = request.param
    if kind == "memory":
        opened = memory_store()
    elif kind == "sqlite":
        opened = sqlite_store(tmp_path)
    else:
        opened = postgres_store(request.getfixturevalue("postgres_url"))
    async with opened as store, Runtime(store=store, agents=[agent]) as runtime:
        yield runtime


async def test_queue_accepts_behind_the_open_run(runtime: Runtime) -> None:
    first = await runtime.submit(agent, "one", thread="t")
    second = await runtime.submit(agent, "two", thread="t", if_busy="queue")

    assert [(await runtime.result(r)).status for r in (first, second)] == ["queued", "queued"]


async def test_reject_refuses_while_the_thread_is_open_and_journals_nothing(
    runtime: Runtime,
) -> None:
    first = await runtime.submit(agent, "one", thread="t")

    with pytest.raises(ThreadBusyError) as busy:
        await runtime.submit(agent, "two", thread="t", if_busy="reject")

    assert busy.value.active_run_id == first
    assert [r.run_id for r in await runtime.store.list_runs(thread_id="t")] == [first]


async def test_of_two_racing_rejecting_submits_exactly_one_is_accepted(runtime: Runtime) -> None:
    outcomes = await asyncio.gather(
        *(runtime.submit(agent, f"n{i}", thread="t", if_busy="reject") for i in range(2)),
        return_exceptions=True,
    )

    accepted = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, ThreadBusyError)]
    assert (len(accepted), len(refused)) == (1, 1)
    assert refused[0].active_run_id == accepted[0]


async def test_interrupt_cancels_the_open_runs_then_accepts(runtime: Runtime) -> None:
    first = await runtime.submit(agent, "one", thread="t")
    behind = await runtime.submit(agent, "two", thread="t")

    third = await runtime.submit(agent, "three", thread="t", if_busy="interrupt")

    statuses = [(await runtime.result(r)).status for r in (first, behind, third)]
    assert statuses == ["cancelled", "cancelled", "queued"]
    await runtime.worker().run(until_idle=True)
    assert (await runtime.result(third)).output == "ok"


async def test_an_unknown_policy_is_refused(runtime: Runtime) -> None:
    with pytest.raises(UsageError, match="if_busy"):
        await runtime.submit(agent, "one", thread="t", if_busy="later")  # type: ignore[arg-type]
