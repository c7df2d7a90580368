"""Every schedule store keeps schedules the same way: added once by name, listed with their
next due time, paused and resumed, replaced without moving their next due time."""

from __future__ import annotations

import dataclasses

import pytest

from keel.errors import ConfigurationError
from keel.schedules import Fire, Schedule, ScheduleStore, planned_run_id

NOW = 1_700_000_000.0  # 22:13:20 UTC


def every5(**changes: object) -> Schedule:
    fields: dict[str, object] = {"agent": "reporter", "input": "Sum up", **changes}
    return Schedule("every5", "*/5 * * * *", **fields)  # type: ignore[arg-type]


async def test_an_added_schedule_first_fires_at_its_next_due_time(
    schedule_store: ScheduleStore,
) -> None:
    added = await schedule_store.add(every5(tenant="acme", thread="t-1"), now=NOW)
    assert added.next_due == 1_700_000_100.0  # 22:15:00
    [listed] = await schedule_store.all()
    assert listed == added
    assert (listed.schedule.tenant, listed.schedule.thread) == ("acme", "t-1")
    assert await schedule_store.get("every5") == added
    assert await schedule_store.get("other") is None


async def test_a_name_is_added_once_unless_replaced(schedule_store: ScheduleStore) -> None:
    await schedule_store.add(every5(), now=NOW)
    with pytest.raises(ConfigurationError, match="'every5' exists; remove it first"):
        await schedule_store.add(every5(input="again"), now=NOW + 600)
    kept = await schedule_store.add(every5(input="again"), now=NOW + 600, replace=True)
    assert (kept.schedule.input, kept.next_due) == ("again", 1_700_000_100.0)
    moved = await schedule_store.add(
        Schedule("every5", "0 * * * *", agent="reporter", input="x"), now=NOW, replace=True
    )
    assert moved.next_due == 1_700_002_800.0  # the cron changed: 23:00


async def test_pausing_stops_it_being_due_and_resuming_skips_what_it_missed(
    schedule_store: ScheduleStore,
) -> None:
    await schedule_store.add(every5(), now=NOW)
    paused = await schedule_store.set_enabled("every5", False, now=NOW)
    assert not paused.schedule.enabled
    assert await schedule_store.due(NOW + 3600) == []
    assert await schedule_store.earliest() is None
    resumed = await schedule_store.set_enabled("every5", True, now=NOW + 3600)
    assert resumed.next_due == NOW + 3600 + 100  # the next one after now, not the missed ones
    assert [s.schedule.name for s in await schedule_store.due(NOW + 3700)] == ["every5"]


async def test_an_unknown_name_is_a_clear_error(schedule_store: ScheduleStore) -> None:
    with pytest.raises(ConfigurationError, match="no schedule named 'nope'"):
        await schedule_store.set_enabled("nope", False, now=NOW)
    assert await schedule_store.remove("nope") is False


async def test_removing_forgets_it(schedule_store: ScheduleStore) -> None:
    await schedule_store.add(every5(), now=NOW)
    assert await schedule_store.remove("every5") is True
    assert await schedule_store.all() == []


async def test_due_keeps_to_the_agents_given(schedule_store: ScheduleStore) -> None:
    await schedule_store.add(every5(), now=NOW)
    assert await schedule_store.due(NOW + 100, agents={"other"}) == []
    assert len(await schedule_store.due(NOW + 100, agents={"reporter"})) == 1
    assert await schedule_store.earliest(agents={"other"}) is None
    assert await schedule_store.earliest() == NOW + 100


async def test_a_due_time_is_claimed_once_and_not_with_a_stale_next_due(
    schedule_store: ScheduleStore,
) -> None:
    await schedule_store.add(every5(), now=NOW)
    [state] = await schedule_store.due(NOW + 100)
    fire = Fire(
        name="every5",
        due_at=state.next_due,
        run_id=planned_run_id("every5", state.next_due),
        agent="reporter",
        input="Sum up",
        thread=None,
        tenant=None,
        user=None,
        status="claimed",
        claimed_by="one",
        claimed_at=NOW + 100,
    )
    assert await schedule_store.claim(state, fire, state.next_due + 300) is True
    # A second scheduler read the same state: the next due time moved, it takes nothing, not
    # even a later due time (it would be one the first scheduler takes next).
    later = dataclasses.replace(fire, due_at=fire.due_at + 300, claimed_by="two")
    assert await schedule_store.claim(state, fire, state.next_due + 300) is False
    assert await schedule_store.claim(state, later, state.next_due + 600) is False
    # Even one that read the new state cannot take a due time taken before.
    [moved] = await schedule_store.all()
    assert await schedule_store.claim(moved, fire, moved.next_due + 300) is False
    [kept] = await schedule_store.fires()
    assert (kept.claimed_by, kept.status) == ("one", "claimed")
    assert [f.run_id for f in await schedule_store.unsubmitted(NOW + 101)] == [fire.run_id]
    await schedule_store.mark_submitted("every5", fire.due_at, now=NOW + 101)
    assert await schedule_store.unsubmitted(NOW + 1000) == []
