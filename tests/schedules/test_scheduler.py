"""The scheduler submits one run per due time: not before it is due, once however many ticks
or schedulers see it, the latest only after an outage, and again after a crash mid-fire
without running twice."""

from __future__ import annotations

import asyncio

from keel import Runtime
from keel._runtime.planned_ids import submit_as
from keel.schedules import Fire, Schedule, Scheduler, ScheduleStore, planned_run_id
from keel.schedules._memory import MemoryScheduleStore
from keel.testing import FakeClock
from tests.schedules.conftest import START

# START is 22:13:20 UTC: an every-5-minutes schedule is first due at 22:15:00.
FIRST_DUE = 1_700_000_100.0


def every5(**changes: object) -> Schedule:
    fields: dict[str, object] = {"agent": "reporter", "input": "Sum up", **changes}
    return Schedule("every5", "*/5 * * * *", **fields)  # type: ignore[arg-type]


async def runs_of(runtime: Runtime) -> list[str]:
    return sorted(r.run_id for r in await runtime.store.list_runs(limit=None))


async def test_a_due_schedule_is_submitted_once_with_its_settings(
    runtime: Runtime, schedule_store: ScheduleStore
) -> None:
    scheduler = Scheduler(runtime, store=schedule_store)
    await schedule_store.add(every5(tenant="acme", user="ops"), now=START)

    assert await scheduler.tick(FIRST_DUE - 1) == []
    [fired] = await scheduler.tick(FIRST_DUE + 2)
    assert await scheduler.tick(FIRST_DUE + 3) == []

    assert (fired.due_at, fired.skipped) == (FIRST_DUE, 0)
    assert fired.run_id == planned_run_id("every5", FIRST_DUE)
    assert await runs_of(runtime) == [fired.run_id]
    record = await runtime.store.get_run(fired.run_id)
    assert (record.status, record.input, record.tenant, record.user) == (
        "queued",
        "Sum up",
        "acme",
        "ops",
    )
    assert record.thread_id == fired.run_id  # no thread: each fire has its own
    state = await schedule_store.get("every5")
    assert state is not None
    assert (state.next_due, state.last_run_id) == (FIRST_DUE + 300, fired.run_id)
    [fire] = await schedule_store.fires("every5")
    assert fire.status == "submitted"


async def test_after_an_outage_only_the_latest_missed_time_fires(
    runtime: Runtime, schedule_store: ScheduleStore
) -> None:
    scheduler = Scheduler(runtime, store=schedule_store)
    await schedule_store.add(every5(), now=START)

    # Nothing ran from 22:15 to 23:17: twelve due times (22:15 ... 23:10) were missed.
    [fired] = await scheduler.tick(FIRST_DUE + 3600 + 120)

    assert fired.due_at == FIRST_DUE + 3600  # 23:15, the latest at or before now
    assert fired.skipped == 12
    assert len(await runs_of(runtime)) == 1
    state = await schedule_store.get("every5")
    assert state is not None
    assert state.next_due == FIRST_DUE + 3900


async def test_two_schedulers_on_one_store_fire_each_due_time_once(
    runtime: Runtime, schedule_store: ScheduleStore
) -> None:
    first = Scheduler(runtime, store=schedule_store)
    second = Scheduler(runtime, store=schedule_store)
    await schedule_store.add(every5(), now=START)

    for step in range(6):
        now = FIRST_DUE + step * 300 + 1
        results = await asyncio.gather(first.tick(now), second.tick(now))
        assert sum(len(r) for r in results) == 1

    assert len(await runs_of(runtime)) == 6


async def test_a_fire_taken_by_a_scheduler_that_died_is_submitted_once_after_the_grace(
    runtime: Runtime, schedule_store: ScheduleStore
) -> None:
    await schedule_store.add(every5(), now=START)
    [state] = await schedule_store.due(FIRST_DUE)
    # A scheduler takes the 22:15 fire and dies before submitting it.
    dead = fire_for(state.schedule, FIRST_DUE, claimed_at=FIRST_DUE)
    assert await schedule_store.claim(state, dead, FIRST_DUE + 300)
    survivor = Scheduler(runtime, store=schedule_store, grace_s=60)

    assert await survivor.tick(FIRST_DUE + 30) == []  # within the grace: maybe still submitting
    [recovered] = await survivor.tick(FIRST_DUE + 61)
    assert await survivor.tick(FIRST_DUE + 200) == []

    assert recovered.recovered
    assert recovered.run_id == dead.run_id
    assert await runs_of(runtime) == [dead.run_id]


async def test_a_fire_submitted_by_a_scheduler_that_died_before_marking_it_runs_once(
    runtime: Runtime, schedule_store: ScheduleStore
) -> None:
    await schedule_store.add(every5(), now=START)
    [state] = await schedule_store.due(FIRST_DUE)
    dead = fire_for(state.schedule, FIRST_DUE, claimed_at=FIRST_DUE)
    assert await schedule_store.claim(state, dead, FIRST_DUE + 300)
    # Its run reached the store; the scheduler died before marking the fire submitted.
    await submit_as(runtime, dead.run_id, runtime.agents["reporter"], "Sum up")

    # Another scheduler finds the fire unmarked and submits it again: the store refuses.
    assert await Scheduler(runtime, store=schedule_store, grace_s=60).tick(FIRST_DUE + 61) == []

    assert await runs_of(runtime) == [dead.run_id]
    assert [f.status for f in await schedule_store.fires("every5")] == ["submitted"]


async def test_a_schedule_of_an_agent_this_runtime_does_not_know_is_left_alone(
    runtime: Runtime, schedule_store: ScheduleStore
) -> None:
    await schedule_store.add(every5(agent="stranger"), now=START)

    assert await Scheduler(runtime, store=schedule_store).tick(FIRST_DUE + 1) == []

    state = await schedule_store.get("every5")
    assert state is not None
    assert state.next_due == FIRST_DUE


async def test_a_paused_schedule_does_not_fire(
    runtime: Runtime, schedule_store: ScheduleStore
) -> None:
    await schedule_store.add(every5(), now=START)
    await schedule_store.set_enabled("every5", False, now=START)

    assert await Scheduler(runtime, store=schedule_store).tick(FIRST_DUE + 1) == []
    assert await runs_of(runtime) == []


async def test_in_the_background_it_fires_schedules_defined_in_code(clock: FakeClock) -> None:
    from tests.schedules.conftest import reporter

    store = MemoryScheduleStore()
    async with Runtime(store="memory", agents=[reporter()], clock=clock) as runtime:
        async with Scheduler(runtime, store=store, schedules=[every5()], poll_interval_s=60):
            # The fake clock's sleeps pass at once: wait (for real) until the first fire.
            for _ in range(1000):
                if await runtime.store.list_runs():
                    break
                await asyncio.sleep(0.001)
        fired = {r.run_id for r in await runtime.store.list_runs()}
    assert planned_run_id("every5", FIRST_DUE) in fired


def fire_for(schedule: Schedule, due_at: float, *, claimed_at: float) -> Fire:
    return Fire(
        name=schedule.name,
        due_at=due_at,
        run_id=planned_run_id(schedule.name, due_at),
        agent=schedule.agent,
        input=schedule.input,
        thread=schedule.thread,
        tenant=schedule.tenant,
        user=schedule.user,
        status="claimed",
        claimed_by="dead-scheduler",
        claimed_at=claimed_at,
    )
