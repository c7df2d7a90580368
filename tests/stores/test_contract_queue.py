"""The ``Store`` contract's queue: queued runs, claims, reading from a position, listing by
several statuses, lease fields in records, and watching. Runs over every backend."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from keel._core.events import RunStatus
from keel.errors import JournalConflictError, LeaseLostError
from keel.ports import Lease, Store, Watchable

from ._backends import EXPIRY_WAIT, LONG_TTL, SHORT_TTL
from ._data import T0, conversation, finishing_step, record, started, tool_step

QUICK = 0.05  # long enough for a wake-up that is due, short enough to wait for one that is not


async def submit(
    store: Store,
    run_id: str,
    *,
    thread_id: str = "thread-1",
    created_at: float = T0,
    holds_thread: bool = True,
    **changes: Any,
) -> None:
    """A queued run, as ``submit`` makes it: unleased, holding its thread unless a fork."""
    assert (
        await store.start_run(
            run_id,
            [started(run_id, thread_id=thread_id)],
            record=record(
                run_id,
                thread_id=thread_id,
                status="queued",
                created_at=created_at,
                holds_thread=holds_thread,
                **changes,
            ),
            owner=None,
            ttl_s=LONG_TTL,
        )
        is None
    )


async def claimed(store: Store, *, limit: int = 100, **filters: Any) -> list[str]:
    leases = await store.claim_runs(owner="claimer", ttl_s=LONG_TTL, limit=limit, **filters)
    return [lease.run_id for lease in leases]


async def finish(store: Store, lease: Lease, *, thread_id: str = "thread-1") -> None:
    """End a claimed run: it no longer holds its thread."""
    run = await store.get_run(lease.run_id)
    await store.append(
        lease.run_id,
        finishing_step(1),
        expected_seq=run.last_seq,
        record=dataclasses.replace(run, status="completed", holds_thread=False),
        thread_messages=conversation(),
        lease=lease,
    )
    await store.release_lease(lease)


# --- queued runs and claims -----------------------------------------------------------------


async def test_a_run_started_without_an_owner_is_queued_and_unleased(store: Store) -> None:
    await submit(store, "q1")
    run = await store.get_run("q1")
    assert (run.status, run.holds_thread, run.lease_owner, run.lease_expires_at) == (
        "queued",
        True,
        None,
        None,
    )
    assert run == record("q1", status="queued", holds_thread=True, last_seq=1)
    # Nobody holds it: a writer without a lease may append, and a claim leases it with token 1.
    (lease,) = await store.claim_runs(owner="w", ttl_s=LONG_TTL, limit=5)
    assert (lease.run_id, lease.owner, lease.token) == ("q1", "w", 1)
    assert await store.append("q1", tool_step(1), expected_seq=1, record=record("q1"), lease=lease)


async def test_starting_a_queued_run_that_exists_conflicts(store: Store) -> None:
    await submit(store, "q1")
    with pytest.raises(JournalConflictError):
        await submit(store, "q1")


async def test_claims_take_queued_runs_in_arrival_order_one_per_thread(store: Store) -> None:
    # A thread's runs go in the order they were created in the store, not by their clocks:
    # "t1-second" came from a host whose clock is behind.
    await submit(store, "t1-first", created_at=T0 + 1)
    await submit(store, "t1-second", created_at=T0)
    await submit(store, "t2-only", thread_id="thread-2", created_at=T0 + 2)
    await submit(store, "t1-third", created_at=T0 + 3)
    leases = await store.claim_runs(owner="w", ttl_s=LONG_TTL, limit=10)
    assert sorted(lease.run_id for lease in leases) == ["t1-first", "t2-only"]
    assert all(lease.token == 1 for lease in leases)
    # The thread's next run waits until the first one ends, then goes, still in order.
    assert await claimed(store) == []
    await finish(store, leases[0])
    second = await store.claim_runs(owner="w", ttl_s=LONG_TTL, limit=10)
    assert [lease.run_id for lease in second] == ["t1-second"]
    await finish(store, second[0])
    assert await claimed(store) == ["t1-third"]


async def test_runs_that_do_not_hold_their_thread_do_not_block_it(store: Store) -> None:
    await submit(store, "fork", created_at=T0, holds_thread=False)
    await submit(store, "next", created_at=T0 + 1)
    await submit(store, "fork-2", created_at=T0 + 2, holds_thread=False)
    # A fork makes no later run wait; like any queued run, it goes after older holders.
    assert await claimed(store) == ["fork", "next"]
    assert await claimed(store) == []


async def test_a_paused_run_holding_its_thread_blocks_later_queued_runs(store: Store) -> None:
    paused = record("paused", status="paused", created_at=T0, holds_thread=True)
    await store.append("paused", [started("paused")], expected_seq=0, record=paused)
    await submit(store, "later", created_at=T0 + 1)
    await submit(store, "elsewhere", thread_id="thread-2", created_at=T0 + 2)
    assert await claimed(store) == ["elsewhere"]
    # Once the paused run ends (it gives the thread up), the later one goes.
    ended = dataclasses.replace(paused, status="cancelled", holds_thread=False)
    await store.append("paused", finishing_step(1), expected_seq=1, record=ended)
    assert await claimed(store) == ["later"]


async def test_only_holders_created_before_a_queued_run_make_it_wait(store: Store) -> None:
    # "first" arrived first (its host's clock is ahead): the queued run waits for it.
    running = record("first", status="running", created_at=T0 + 5, holds_thread=True)
    await store.start_run("first", [started("first")], record=running, owner="w", ttl_s=LONG_TTL)
    await submit(store, "second", created_at=T0)
    assert await claimed(store) == []
    # A holder that arrived after a queued run does not make it wait.
    await submit(store, "queued", thread_id="thread-2", created_at=T0)
    later = record("later", thread_id="thread-2", status="running", holds_thread=True)
    await store.start_run("later", [started("later")], record=later, owner="w", ttl_s=LONG_TTL)
    assert await claimed(store) == ["queued"]


async def test_claims_recover_running_runs_whose_lease_is_missing_or_expired(
    store: Store,
) -> None:
    # Running, never leased (created by append).
    await store.append(
        "unleased",
        [started("unleased")],
        expected_seq=0,
        record=record("unleased", created_at=T0 + 3),
    )
    expired = await store.start_run(
        "expired",
        [started("expired")],
        record=record("expired", created_at=T0 + 1),
        owner="dead",
        ttl_s=SHORT_TTL,
    )
    released = await store.start_run(
        "released",
        [started("released")],
        record=record("released", created_at=T0 + 2),
        owner="w",
        ttl_s=LONG_TTL,
    )
    assert released is not None
    await store.release_lease(released)
    # Not claimable: a live lease, or an ended or paused run.
    await store.start_run(
        "live", [started("live")], record=record("live", created_at=T0), owner="w", ttl_s=LONG_TTL
    )
    ended: list[tuple[str, RunStatus]] = [("done", "completed"), ("paused", "paused")]
    for run_id, status in ended:
        await store.append(
            run_id, [started(run_id)], expected_seq=0, record=record(run_id, status=status)
        )
    await asyncio.sleep(EXPIRY_WAIT)
    leases = await store.claim_runs(owner="new", ttl_s=LONG_TTL, limit=2)
    assert [(lease.run_id, lease.token) for lease in leases] == [("expired", 2), ("released", 2)]
    assert await claimed(store) == ["unleased"]
    assert await claimed(store) == []
    # The dead holder is fenced out.
    assert expired is not None
    with pytest.raises(LeaseLostError):
        await store.append(
            "expired", tool_step(1), expected_seq=1, record=record("expired"), lease=expired
        )


async def test_claims_break_ties_by_run_id_and_respect_the_limit(store: Store) -> None:
    for run_id in ["b", "c", "a"]:
        await submit(store, run_id, thread_id=f"thread-{run_id}")
    assert await claimed(store, limit=2) == ["a", "b"]
    assert await claimed(store, limit=2) == ["c"]


async def test_claims_keep_to_the_agents_and_runs_asked_for(store: Store) -> None:
    for n, agent in enumerate(["weather", "search", "weather", "mail"]):
        await submit(store, f"r{n}", thread_id=f"t{n}", created_at=T0 + n, agent=agent)
    assert await claimed(store, agents=["search", "mail"]) == ["r1", "r3"]
    assert await claimed(store, agents=[]) == []
    assert await claimed(store, run_ids=["r2", "nope"]) == ["r2"]
    assert await claimed(store, agents=["weather"], run_ids=["r0", "r1"]) == ["r0"]
    assert await claimed(store) == []


async def test_a_claimed_run_is_fenced_from_its_previous_holder(store: Store) -> None:
    old = await store.start_run("run-1", [started()], record=record(), owner="old", ttl_s=SHORT_TTL)
    assert old is not None
    await asyncio.sleep(EXPIRY_WAIT)
    (new,) = await store.claim_runs(owner="new", ttl_s=LONG_TTL, limit=1)
    assert (new.token, new.owner) == (2, "new")
    with pytest.raises(LeaseLostError):
        await store.renew_lease(old, ttl_s=LONG_TTL)
    run = await store.get_run("run-1")
    assert run.lease_owner == "new"
    assert run.lease_expires_at == pytest.approx(new.expires_at)


async def test_concurrent_claimers_never_share_a_run(store: Store) -> None:
    runs = 60
    for n in range(runs):
        await submit(store, f"r{n:02d}", thread_id=f"t{n % 20}", created_at=T0 + n)

    async def claimer(name: str) -> list[str]:
        got: list[str] = []
        for _ in range(40):
            leases = await store.claim_runs(owner=name, ttl_s=LONG_TTL, limit=3)
            for lease in leases:
                got.append(lease.run_id)
                await finish(store, lease, thread_id=f"t{int(lease.run_id[1:]) % 20}")
            if not leases:
                await asyncio.sleep(0.005)
        return got

    results = await asyncio.gather(*(claimer(f"c{n}") for n in range(4)))
    everything = [run_id for got in results for run_id in got]
    assert sorted(everything) == [f"r{n:02d}" for n in range(runs)]  # each exactly once


# --- reading from a position, listing, lease fields -----------------------------------------


async def test_load_after_a_sequence_number(store: Store) -> None:
    events = [started(), *tool_step(1), *tool_step(2)]
    await store.append("run-1", events, expected_seq=0, record=record())
    assert await store.load("run-1", after_seq=0) == events
    assert await store.load("run-1", after_seq=4) == events[4:]
    assert await store.load("run-1", after_seq=6) == events[6:]
    assert await store.load("run-1", after_seq=7) == []
    assert await store.load("run-1", after_seq=100) == []
    assert await store.load("run-1", after_seq=-3) == events
    with pytest.raises(Exception, match="no run with id 'nope'"):
        await store.load("nope", after_seq=2)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (["completed", "failed"], ["r5", "r3", "r2", "r1"]),
        ({"running", "paused", "queued"}, ["r6", "r4", "r0"]),
        (("failed",), ["r2"]),
        ([], []),
        (None, ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]),
    ],
)
async def test_list_runs_by_several_statuses(
    store: Store, status: Any, expected: list[str]
) -> None:
    statuses: list[tuple[str, RunStatus, float]] = [
        ("r0", "paused", T0 - 100),
        ("r1", "completed", T0 + 1),
        ("r2", "failed", T0 + 2),
        ("r3", "completed", T0 + 3),
        ("r4", "running", T0 + 3),
        ("r5", "completed", T0 + 3),
        ("r6", "queued", T0 + 4),
    ]
    for run_id, run_status, created_at in statuses:
        await store.append(
            run_id,
            [started(run_id)],
            expected_seq=0,
            record=record(run_id, status=run_status, created_at=created_at),
        )
    assert [r.run_id for r in await store.list_runs(status=status, limit=None)] == expected


async def test_list_runs_without_a_limit_lists_them_all(store: Store) -> None:
    for i in range(75):
        run_id = f"run-{i:02d}"
        await store.append(run_id, [started(run_id)], expected_seq=0, record=record(run_id))
    runs = await store.list_runs(limit=None)
    assert [r.run_id for r in runs] == [f"run-{i:02d}" for i in reversed(range(75))]
    assert len(await store.list_runs(thread_id="thread-1", status="running", limit=None)) == 75


async def test_records_carry_the_lease_as_stored_and_writes_ignore_it(store: Store) -> None:
    ignored = record(lease_owner="someone", lease_expires_at=1.0, holds_thread=True)
    lease = await store.start_run("run-1", [started()], record=ignored, owner="w", ttl_s=30.0)
    assert lease is not None
    expected = record(
        holds_thread=True, last_seq=1, lease_owner="w", lease_expires_at=lease.expires_at
    )
    assert await store.get_run("run-1") == expected
    assert await store.list_runs() == [expected]
    assert await store.active_run("thread-1") == expected
    renewed = await store.renew_lease(lease, ttl_s=LONG_TTL)
    assert (await store.get_run("run-1")).lease_expires_at == renewed.expires_at
    await store.append("run-1", tool_step(1), expected_seq=1, record=ignored, lease=lease)
    await store.release_lease(lease)
    run = await store.get_run("run-1")
    assert (run.lease_owner, run.lease_expires_at, run.last_seq) == (None, None, 4)


async def test_retention_keeps_queued_runs(store: Store) -> None:
    await submit(store, "queued", created_at=T0)
    await store.append(
        "done", [started("done")], expected_seq=0, record=record("done", status="completed")
    )
    assert await store.delete_runs_before(T0 + 10) == 1
    assert [r.run_id for r in await store.list_runs()] == ["queued"]


# --- watching -------------------------------------------------------------------------------


def watchable(store: Store) -> Watchable:
    assert isinstance(store, Watchable)
    return store


async def test_watching_a_run_wakes_on_its_appends(store: Store) -> None:
    async with watchable(store).watch("run-1") as change:
        assert not await change.wait(QUICK)
        await store.append("run-1", [started()], expected_seq=0, record=record())
        assert await change.wait(5)
        await store.append("run-1", tool_step(1), expected_seq=1, record=record())
        await store.append("run-1", tool_step(2), expected_seq=4, record=record())
        assert await change.wait(5)  # changes since the last wait are not lost


async def test_watching_the_queue_wakes_when_a_run_becomes_claimable(store: Store) -> None:
    running = await store.start_run(
        "first",
        [started("first")],
        record=record("first", holds_thread=True),
        owner="w",
        ttl_s=LONG_TTL,
    )
    assert running is not None
    async with watchable(store).watch(None) as queue:
        await submit(store, "queued", created_at=T0 + 1)
        assert await queue.wait(5)
        # The first run of the thread ends: the queued one may go now.
        await finish(store, running)
        assert await queue.wait(5)
        assert await claimed(store) == ["queued"]


async def test_watching_the_queue_wakes_when_an_append_gives_the_lease_up(store: Store) -> None:
    holding = record(holds_thread=True)
    lease = await store.start_run("run-1", [started()], record=holding, owner="w", ttl_s=60)
    assert lease is not None
    async with watchable(store).watch(None) as queue:
        assert not await queue.wait(QUICK)
        # Still running, but unleased: claimable (a driver stopped without finishing it).
        await store.append(
            "run-1", tool_step(1), expected_seq=1, record=holding, lease=lease, release=True
        )
        assert await queue.wait(5)
        assert await claimed(store) == ["run-1"]


async def test_waits_time_out_without_a_change(store: Store) -> None:
    await store.append("other", [started("other")], expected_seq=0, record=record("other"))
    async with watchable(store).watch("run-1") as change:
        loop = asyncio.get_running_loop()
        began = loop.time()
        woken = await change.wait(0.1)
        # Other runs' writes may wake it (spurious wake-ups are allowed); a timeout returns.
        assert isinstance(woken, bool)
        assert loop.time() - began < 5


async def test_a_watcher_of_a_record_change_wakes(store: Store) -> None:
    lease = await store.start_run("run-1", [started()], record=record(), owner="w", ttl_s=60)
    assert lease is not None
    async with watchable(store).watch("run-1") as change:
        await store.append(
            "run-1",
            finishing_step(1),
            expected_seq=1,
            record=record(status="completed"),
            lease=lease,
        )
        assert await change.wait(5)
