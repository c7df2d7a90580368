"""The ``Store`` contract, run over every backend: memory, SQLite and PostgreSQL.

Each backend is a factory that opens a fresh, empty store. The memory store round-trips every
event through JSON (``check_json=True``), so data no durable store would keep fails here too.
PostgreSQL needs a server (see ``conftest.py``); each test gets its own schema.

Lease expiry is real time: a lease meant to expire gets ``SHORT_TTL`` and the test sleeps past
it; a lease meant to stay live gets ``LONG_TTL``. The same test then runs on every backend,
including PostgreSQL, whose lease clock is the database's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel._core.events import (
    ErrorInfo,
    Event,
    ModelResponded,
    RunFinished,
    RunStarted,
    RunStatus,
    ToolCallFinished,
    ToolCallStarted,
)
from keel._core.messages import AssistantMessage, Message, ToolCall, ToolResultMessage, UserMessage
from keel._core.usage import Usage
from keel.errors import (
    ConfigurationError,
    JournalConflictError,
    LeaseLostError,
    RunLeasedError,
    RunNotFoundError,
    StoreError,
    ThreadBusyError,
    ThreadChangedError,
)
from keel.ports import Lease, Store, ThreadHistory

from ._backends import (
    EXPIRY_WAIT,
    LONG_TTL,
    SHORT_TTL,
    THREAD_SAFE_BACKENDS,
    memory_store,
    sqlite_store,
)
from ._data import (
    T0,
    conversation,
    failed_tool_step,
    finishing_step,
    record,
    started,
    tool_step,
)


def full_run() -> list[list[Event]]:
    """The appends of a whole run, one per step."""
    return [
        [started(), *tool_step(1)],
        failed_tool_step(2),
        tool_step(3),
        finishing_step(4),
    ]


async def messages_of(store: Store, thread_id: str) -> list[Message]:
    return (await store.thread_history(thread_id)).messages


async def lease_run(
    store: Store, run_id: str = "run-1", *, owner: str = "w1", ttl_s: float = LONG_TTL, **kw: Any
) -> Lease:
    """Start a run with its first event, leased to ``owner``."""
    thread_id = kw.pop("thread_id", "thread-1")
    lease = await store.start_run(
        run_id,
        [started(run_id, thread_id=thread_id)],
        record=record(run_id, thread_id=thread_id, **kw),
        owner=owner,
        ttl_s=ttl_s,
    )
    assert lease is not None
    return lease


def near_now(expires_at: float, ttl_s: float) -> bool:
    """Whether a lease's expiry is ``ttl_s`` from about now (the store's clock is this
    machine's, or the database server's on this machine)."""
    return abs(expires_at - (time.time() + ttl_s)) < 5.0


# --- append and load ------------------------------------------------------------------------


async def test_it_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)


async def test_a_new_run_starts_at_zero_and_loads_back_equal(store: Store) -> None:
    events = [started(), *tool_step(1)]
    last = await store.append("run-1", events, expected_seq=0, record=record())
    assert last == 4
    assert await store.load("run-1") == events


async def test_appends_continue_the_sequence(store: Store) -> None:
    seq = 0
    appended: list[Event] = []
    for batch in full_run():
        new_seq = await store.append("run-1", batch, expected_seq=seq, record=record())
        assert new_seq == seq + len(batch)
        seq = new_seq
        appended += batch
    assert await store.load("run-1") == appended
    assert (await store.get_run("run-1")).last_seq == len(appended)


async def test_runs_have_independent_journals(store: Store) -> None:
    await store.append("a", [started("a")], expected_seq=0, record=record("a"))
    await store.append("b", [started("b"), *tool_step(1)], expected_seq=0, record=record("b"))
    assert await store.append("a", tool_step(1), expected_seq=1, record=record("a")) == 4
    assert await store.load("a") == [started("a"), *tool_step(1)]
    assert await store.load("b") == [started("b"), *tool_step(1)]


async def test_load_returns_a_copy(store: Store) -> None:
    events = [started(), *tool_step(1)]
    await store.append("run-1", events, expected_seq=0, record=record())
    loaded = await store.load("run-1")
    loaded.clear()
    events.clear()
    assert await store.load("run-1") == [started(), *tool_step(1)]


async def test_awkward_text_round_trips(store: Store) -> None:
    call = ToolCall(id="c\x00", name="naïve_tool", arguments='{"q": "\\u0000 \U0001f600"}')
    events: list[Event] = [
        ToolCallStarted(step=1, call=call, idempotency_key="k" * 300, at=-0.5),
        ToolCallFinished(step=1, call=call, result="x\n\t\"'\\😀" * 20_000, at=1e-300),
        ModelResponded(
            step=2,
            model="m",
            message=AssistantMessage(content=""),
            usage=Usage(),
            cost_usd=0.1 + 0.2,
            at=T0,
        ),
        RunFinished(
            status="failed",
            output=[{"deep": [[[]]], "": None}, -0.0, 2**53 + 1, "Ω"],
            error=ErrorInfo(code="tool.crashed", message="Traceback ... 'ünicode'"),
        ),
    ]
    await store.append("run-Ω", events, expected_seq=0, record=record("run-Ω"))
    assert await store.load("run-Ω") == events


async def test_an_empty_append_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="no events"):
        await store.append("run-1", [], expected_seq=0, record=record())
    with pytest.raises(RunNotFoundError):
        await store.get_run("run-1")


async def test_a_negative_expected_seq_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="expected_seq=-1"):
        await store.append("run-1", [started()], expected_seq=-1, record=record())


async def test_a_record_of_another_run_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="record of run 'run-2'"):
        await store.append("run-1", [started()], expected_seq=0, record=record("run-2"))
    assert await store.list_runs() == []


async def test_unknown_run(store: Store) -> None:
    with pytest.raises(RunNotFoundError) as load_error:
        await store.load("nope")
    assert load_error.value.run_id == "nope"
    with pytest.raises(RunNotFoundError):
        await store.get_run("nope")


# --- conflicts ------------------------------------------------------------------------------


async def test_a_stale_expected_seq_conflicts_and_writes_nothing(store: Store) -> None:
    first = [started(), *tool_step(1)]
    await store.append("run-1", first, expected_seq=0, record=record(steps=1))
    with pytest.raises(JournalConflictError) as caught:
        await store.append(
            "run-1",
            finishing_step(2),
            expected_seq=1,
            record=record(status="completed", steps=2),
            thread_messages=conversation(),
        )
    assert (caught.value.run_id, caught.value.expected, caught.value.actual) == ("run-1", 1, 4)
    assert caught.value.code == "journal_conflict"
    assert await store.load("run-1") == first
    assert await store.get_run("run-1") == record(steps=1, last_seq=4)
    assert await store.thread_history("thread-1") == ThreadHistory(messages=[], last_seq=0)


async def test_an_expected_seq_ahead_of_the_journal_conflicts(store: Store) -> None:
    with pytest.raises(JournalConflictError) as on_new:
        await store.append("run-1", tool_step(1), expected_seq=3, record=record())
    assert (on_new.value.expected, on_new.value.actual) == (3, 0)
    with pytest.raises(RunNotFoundError):
        await store.load("run-1")
    assert await store.list_runs() == []

    await store.append("run-1", [started()], expected_seq=0, record=record())
    with pytest.raises(JournalConflictError) as on_existing:
        await store.append("run-1", tool_step(1), expected_seq=2, record=record())
    assert (on_existing.value.expected, on_existing.value.actual) == (2, 1)
    assert await store.load("run-1") == [started()]


async def test_starting_an_existing_run_conflicts(store: Store) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record(agent="first"))
    with pytest.raises(JournalConflictError) as caught:
        await store.append("run-1", [started()], expected_seq=0, record=record(agent="second"))
    assert caught.value.actual == 1
    assert (await store.get_run("run-1")).agent == "first"


async def test_racing_tasks_one_wins(store: Store) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record())
    outcomes = await asyncio.gather(
        store.append("run-1", tool_step(1, call_id="a"), expected_seq=1, record=record()),
        store.append("run-1", tool_step(1, call_id="b"), expected_seq=1, record=record()),
        return_exceptions=True,
    )
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "JournalConflictError",
        "int",
    ]
    winner = "a" if outcomes[0] == 4 else "b"
    assert await store.load("run-1") == [started(), *tool_step(1, call_id=winner)]


@pytest.mark.parametrize("open_store", THREAD_SAFE_BACKENDS, indirect=True)
async def test_racing_threads_one_wins_every_time(store: Store) -> None:
    rounds = 30
    barrier = threading.Barrier(2)
    winners: list[list[str]] = [[], []]
    conflicts: list[list[int]] = [[], []]

    def writer(index: int) -> None:
        async def run() -> None:
            seq = 0
            for step in range(rounds):
                barrier.wait(timeout=10)
                call_id = f"w{index}-{step}"
                try:
                    await store.append(
                        "run-1",
                        tool_step(step, call_id=call_id),
                        expected_seq=seq,
                        record=record(steps=step),
                    )
                    winners[index].append(call_id)
                except JournalConflictError as exc:
                    conflicts[index].append(exc.actual)
                seq += 3
                barrier.wait(timeout=10)

        asyncio.run(run())

    await asyncio.gather(asyncio.to_thread(writer, 0), asyncio.to_thread(writer, 1))
    assert len(winners[0]) + len(winners[1]) == rounds
    # Each loser saw the winner's three events of that round.
    assert sorted(conflicts[0] + conflicts[1]) == [3 * (step + 1) for step in range(rounds)]
    expected: list[Event] = []
    for step in range(rounds):
        winner = f"w0-{step}" if f"w0-{step}" in winners[0] else f"w1-{step}"
        expected += tool_step(step, call_id=winner)
    assert await store.load("run-1") == expected
    assert (await store.get_run("run-1")).last_seq == 3 * rounds


async def test_racing_tasks_on_many_runs_lose_and_duplicate_nothing(store: Store) -> None:
    runs, steps = 4, 6

    async def writer(run_id: str, label: str) -> int:
        conflicts = 0
        seq = 1
        done = 0
        while done < steps:
            try:
                seq = await store.append(
                    run_id,
                    tool_step(done, call_id=f"{label}-{done}"),
                    expected_seq=seq,
                    record=record(run_id),
                )
                done += 1
            except JournalConflictError as exc:
                conflicts += 1
                seq = exc.actual
        return conflicts

    for n in range(runs):
        await store.append(f"r{n}", [started(f"r{n}")], expected_seq=0, record=record(f"r{n}"))
    await asyncio.gather(*(writer(f"r{n}", label) for n in range(runs) for label in "ab"))
    for n in range(runs):
        events = await store.load(f"r{n}")
        assert len(events) == 1 + 2 * 3 * steps
        ids = [e.call.id for e in events if isinstance(e, ToolCallFinished)]
        assert sorted(ids) == sorted(f"{label}-{i}" for label in "ab" for i in range(steps))


# --- run records ----------------------------------------------------------------------------


async def test_the_record_gets_the_real_last_seq(store: Store) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record(last_seq=999))
    assert (await store.get_run("run-1")).last_seq == 1
    await store.append("run-1", tool_step(1), expected_seq=1, record=record(last_seq=0))
    assert (await store.get_run("run-1")).last_seq == 4


async def test_every_record_field_round_trips(store: Store) -> None:
    first = record(cost_usd=None, output_preview=None, reason_code=None, reason=None)
    await store.append("run-1", [started()], expected_seq=0, record=first)
    assert await store.get_run("run-1") == dataclasses.replace(first, last_seq=1)
    paused = record(
        thread_id="thread-2",
        status="awaiting_approval",
        created_at=T0 + 0.125,
        agent="weather-v2",
        model="anthropic:claude-3-5-haiku",
        updated_at=T0 + 61.5,
        input="Und in Berlin?",
        steps=3,
        tool_calls=4,
        input_tokens=123_456,
        output_tokens=7_890,
        cost_usd=0.0123456789,
        output_preview="Berlin: 12 °C",
        reason_code="limit.max_steps",
        reason="the run reached its max_steps limit (3 of 3)",
    )
    await store.append("run-1", tool_step(1), expected_seq=1, record=paused)
    assert await store.get_run("run-1") == dataclasses.replace(paused, last_seq=4)


async def test_the_latest_record_is_used_for_listing(store: Store) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record())
    await store.append("run-2", [started("run-2")], expected_seq=0, record=record("run-2"))
    await store.append(
        "run-1",
        finishing_step(1),
        expected_seq=1,
        record=record(status="completed", created_at=T0 + 5),
    )
    assert [r.run_id for r in await store.list_runs(status="running")] == ["run-2"]
    assert [r.run_id for r in await store.list_runs(status="completed")] == ["run-1"]
    assert [r.run_id for r in await store.list_runs()] == ["run-1", "run-2"]


# --- listing --------------------------------------------------------------------------------


async def seed_runs(store: Store) -> None:
    runs = [
        record("r1", thread_id="t1", status="completed", created_at=T0 + 1),
        record("r2", thread_id="t1", status="failed", created_at=T0 + 2),
        record("r3", thread_id="t2", status="completed", created_at=T0 + 3),
        record("r4", thread_id="t2", status="running", created_at=T0 + 3),
        record("r5", thread_id="t1", status="completed", created_at=T0 + 3),
        record("r0", thread_id="t3", status="paused", created_at=T0 - 100),
    ]
    for run in runs:
        await store.append(run.run_id, [started(run.run_id)], expected_seq=0, record=run)


async def test_list_runs_is_newest_first_with_ties_by_run_id_descending(store: Store) -> None:
    await seed_runs(store)
    runs = await store.list_runs()
    assert [r.run_id for r in runs] == ["r5", "r4", "r3", "r2", "r1", "r0"]
    assert all(r.last_seq == 1 for r in runs)
    assert runs[0] == record(
        "r5", thread_id="t1", status="completed", created_at=T0 + 3, last_seq=1
    )


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"thread_id": "t1"}, ["r5", "r2", "r1"]),
        ({"status": "completed"}, ["r5", "r3", "r1"]),
        ({"thread_id": "t1", "status": "completed"}, ["r5", "r1"]),
        ({"thread_id": "t2", "status": "failed"}, []),
        ({"thread_id": "nope"}, []),
        ({"limit": 2}, ["r5", "r4"]),
        ({"limit": 1, "thread_id": "t2"}, ["r4"]),
        ({"limit": 1000}, ["r5", "r4", "r3", "r2", "r1", "r0"]),
    ],
)
async def test_list_runs_filters_combine(
    store: Store, filters: dict[str, Any], expected: list[str]
) -> None:
    await seed_runs(store)
    assert [r.run_id for r in await store.list_runs(**filters)] == expected


async def test_list_runs_breaks_ties_in_code_point_order(store: Store) -> None:
    # Upper case sorts before lower case, and "é" after "z", whatever the database's locale.
    for run_id in ["b", "B", "a", "é", "z", "A"]:
        await store.append(run_id, [started(run_id)], expected_seq=0, record=record(run_id))
    assert [r.run_id for r in await store.list_runs()] == ["é", "z", "b", "a", "B", "A"]


async def test_list_runs_default_limit_is_50(store: Store) -> None:
    for i in range(55):
        run_id = f"run-{i:02d}"
        await store.append(run_id, [started(run_id)], expected_seq=0, record=record(run_id))
    runs = await store.list_runs()
    assert len(runs) == 50
    assert runs[0].run_id == "run-54"
    assert runs[-1].run_id == "run-05"


@pytest.mark.parametrize("limit", [0, -1])
async def test_listings_and_claims_refuse_a_limit_below_one(store: Store, limit: int) -> None:
    with pytest.raises(ConfigurationError, match="list_runs limit must be at least 1"):
        await store.list_runs(limit=limit)
    with pytest.raises(ConfigurationError, match="claim_runs limit must be at least 1"):
        await store.claim_runs(owner="w", ttl_s=LONG_TTL, limit=limit)


async def test_an_empty_store_lists_nothing(store: Store) -> None:
    assert await store.list_runs() == []
    assert await store.list_runs(limit=None) == []
    assert await store.claim_runs(owner="w", ttl_s=LONG_TTL, limit=10) == []
    assert await store.active_run("thread-1") is None


# --- start_run ------------------------------------------------------------------------------


async def test_start_run_creates_a_run_leased_with_token_one(store: Store) -> None:
    events = [started(), *tool_step(1)]
    lease = await store.start_run(
        "run-1", events, record=record(last_seq=7), owner="worker-a", ttl_s=30.0
    )
    assert lease is not None
    assert (lease.run_id, lease.owner, lease.token) == ("run-1", "worker-a", 1)
    assert near_now(lease.expires_at, 30.0)
    assert await store.load("run-1") == events
    assert await store.get_run("run-1") == record(
        last_seq=4, lease_owner="worker-a", lease_expires_at=lease.expires_at
    )
    # The run is leased: nobody else may write or take it.
    with pytest.raises(RunLeasedError):
        await store.append("run-1", tool_step(2), expected_seq=4, record=record())
    with pytest.raises(RunLeasedError):
        await store.acquire_lease("run-1", owner="worker-b", ttl_s=30.0)
    assert await store.append("run-1", tool_step(2), expected_seq=4, record=record(), lease=lease)


async def test_start_run_of_an_existing_run_conflicts_and_writes_nothing(store: Store) -> None:
    lease = await lease_run(store, agent="first")
    with pytest.raises(JournalConflictError) as caught:
        await store.start_run(
            "run-1",
            [started(), *tool_step(1)],
            record=record(agent="second"),
            owner="w2",
            ttl_s=LONG_TTL,
        )
    assert (caught.value.expected, caught.value.actual) == (0, 1)
    assert await store.load("run-1") == [started()]
    assert (await store.get_run("run-1")).agent == "first"
    # The first lease is untouched.
    await store.renew_lease(lease, ttl_s=LONG_TTL)


@pytest.mark.parametrize("ttl_s", [0.0, -1.0, float("nan"), float("inf")])
async def test_a_lease_needs_a_positive_finite_ttl(store: Store, ttl_s: float) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        await store.start_run("run-1", [started()], record=record(), owner="w", ttl_s=ttl_s)
    with pytest.raises(RunNotFoundError):
        await store.load("run-1")
    lease = await lease_run(store)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.acquire_lease("run-1", owner="w1", ttl_s=ttl_s)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.renew_lease(lease, ttl_s=ttl_s)


async def test_an_exclusive_start_on_a_busy_thread_is_refused(store: Store) -> None:
    # The thread's first holder is the first created in the store, whatever the clocks say.
    await lease_run(store, "run-2", created_at=T0 + 1, holds_thread=True)
    await lease_run(store, "run-1", created_at=T0, holds_thread=True)
    with pytest.raises(ThreadBusyError) as caught:
        await store.start_run(
            "run-3",
            [started("run-3")],
            record=record("run-3", created_at=T0 + 2),
            owner="w",
            ttl_s=LONG_TTL,
            exclusive=True,
        )
    assert (caught.value.thread_id, caught.value.active_run_id) == ("thread-1", "run-2")
    assert caught.value.code == "thread_busy"
    with pytest.raises(RunNotFoundError):
        await store.load("run-3")
    assert [r.run_id for r in await store.list_runs()] == ["run-2", "run-1"]


async def test_an_exclusive_start_with_a_stale_history_is_refused(store: Store) -> None:
    """A run that read its thread's history before another run of the thread finished must
    not start with that stale history: the store checks the thread's last message atomically."""
    message = UserMessage(content="earlier")
    await store.append(
        "run-0",
        [started("run-0")],
        expected_seq=0,
        record=record("run-0", status="completed"),
        thread_messages=[message, message],
    )
    stale = dataclasses.replace(started("run-1"), history_seq=1)
    fresh = dataclasses.replace(started("run-2"), history_seq=2)

    with pytest.raises(ThreadChangedError) as caught:
        await store.start_run(
            "run-1", [stale], record=record("run-1"), owner="w", ttl_s=LONG_TTL, exclusive=True
        )
    assert (caught.value.expected, caught.value.actual, caught.value.code) == (
        1,
        2,
        "thread_changed",
    )
    with pytest.raises(RunNotFoundError):
        await store.load("run-1")
    lease = await store.start_run(
        "run-2", [fresh], record=record("run-2"), owner="w", ttl_s=LONG_TTL, exclusive=True
    )
    assert lease is not None
    assert lease.token == 1


async def test_an_exclusive_start_ignores_runs_that_do_not_hold_the_thread(store: Store) -> None:
    await store.append(
        "done", [started("done")], expected_seq=0, record=record("done", holds_thread=True)
    )
    await store.append(
        "done", finishing_step(1), expected_seq=1, record=record("done", status="completed")
    )
    await lease_run(store, "elsewhere", thread_id="thread-2", holds_thread=True)
    # A fork runs beside its thread without holding it.
    await lease_run(store, "fork", holds_thread=False)
    lease = await store.start_run(
        "run-1",
        [started()],
        record=record(holds_thread=True),
        owner="w",
        ttl_s=LONG_TTL,
        exclusive=True,
    )
    assert lease is not None
    assert lease.token == 1


async def test_a_paused_run_that_holds_its_thread_refuses_an_exclusive_start(
    store: Store,
) -> None:
    paused = record("paused", status="paused", holds_thread=True)
    await store.append("paused", [started("paused")], expected_seq=0, record=paused)
    with pytest.raises(ThreadBusyError) as caught:
        await store.start_run(
            "run-1", [started()], record=record(), owner="w", ttl_s=LONG_TTL, exclusive=True
        )
    assert caught.value.active_run_id == "paused"


async def test_a_non_exclusive_start_ignores_a_busy_thread(store: Store) -> None:
    await lease_run(store, "run-1")
    lease = await store.start_run(
        "run-2", [started("run-2")], record=record("run-2"), owner="w", ttl_s=LONG_TTL
    )
    assert lease is not None
    assert lease.token == 1


async def test_racing_exclusive_starts_on_an_idle_thread_one_wins(store: Store) -> None:
    for round_ in range(5):
        thread_id = f"thread-{round_}"

        async def start(run_id: str, thread_id: str = thread_id) -> Lease | None:
            return await store.start_run(
                run_id,
                [started(run_id, thread_id=thread_id)],
                record=record(run_id, thread_id=thread_id, holds_thread=True),
                owner=run_id,
                ttl_s=LONG_TTL,
                exclusive=True,
            )

        a, b = f"a{round_}", f"b{round_}"
        outcomes = await asyncio.gather(start(a), start(b), return_exceptions=True)
        leases = [o for o in outcomes if isinstance(o, Lease)]
        refusals = [o for o in outcomes if isinstance(o, ThreadBusyError)]
        assert (len(leases), len(refusals)) == (1, 1), outcomes
        winner, loser = leases[0].run_id, ({a, b} - {leases[0].run_id}).pop()
        assert refusals[0].active_run_id == winner
        with pytest.raises(RunNotFoundError):
            await store.get_run(loser)
        active = await store.active_run(thread_id)
        assert active is not None
        assert active.run_id == winner


# --- appends under a lease ------------------------------------------------------------------


async def test_the_lease_holder_appends(store: Store) -> None:
    lease = await lease_run(store)
    seq = 1
    for step in range(1, 4):
        seq = await store.append(
            "run-1", tool_step(step), expected_seq=seq, record=record(), lease=lease
        )
    assert seq == 10
    assert len(await store.load("run-1")) == 10


async def test_a_taken_over_lease_is_fenced_out(store: Store) -> None:
    old = await lease_run(store, owner="w1")
    new = await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL, force=True)
    assert (new.owner, new.token) == ("w2", 2)
    with pytest.raises(LeaseLostError) as caught:
        await store.append("run-1", tool_step(1), expected_seq=1, record=record(), lease=old)
    assert (caught.value.run_id, caught.value.token, caught.value.current) == ("run-1", 1, 2)
    assert caught.value.code == "lease_lost"
    assert await store.load("run-1") == [started()]
    assert await store.append("run-1", tool_step(1), expected_seq=1, record=record(), lease=new)


async def test_a_released_lease_cannot_write(store: Store) -> None:
    lease = await lease_run(store)
    await store.release_lease(lease)
    with pytest.raises(LeaseLostError) as caught:
        await store.append(
            "run-1",
            finishing_step(1),
            expected_seq=1,
            record=record(status="completed"),
            lease=lease,
            thread_messages=conversation(),
        )
    assert caught.value.current is None
    assert "nobody holds it now" in str(caught.value)
    assert await store.load("run-1") == [started()]
    assert await store.thread_history("thread-1") == ThreadHistory(messages=[], last_seq=0)


async def test_an_expired_lease_nobody_took_over_still_writes(store: Store) -> None:
    lease = await lease_run(store, ttl_s=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    assert await store.append("run-1", tool_step(1), expected_seq=1, record=record(), lease=lease)
    assert await store.renew_lease(lease, ttl_s=LONG_TTL)


async def test_a_writer_without_a_lease_is_refused_while_one_is_live(store: Store) -> None:
    lease = await lease_run(store, owner="worker-a")
    with pytest.raises(RunLeasedError) as caught:
        await store.append("run-1", tool_step(1), expected_seq=1, record=record())
    assert (caught.value.run_id, caught.value.owner) == ("run-1", "worker-a")
    assert caught.value.expires_at == pytest.approx(lease.expires_at, abs=1e-3)
    assert caught.value.code == "run_leased"
    assert "worker-a" in str(caught.value)
    assert await store.load("run-1") == [started()]


async def test_a_writer_without_a_lease_writes_once_it_expired(store: Store) -> None:
    await lease_run(store, ttl_s=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    assert await store.append("run-1", tool_step(1), expected_seq=1, record=record()) == 4


async def test_the_lease_is_checked_before_the_position(store: Store) -> None:
    old = await lease_run(store, owner="w1")
    await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL, force=True)
    # A stale lease and a stale position: the writer must learn that it has to stop.
    with pytest.raises(LeaseLostError):
        await store.append("run-1", tool_step(1), expected_seq=7, record=record(), lease=old)
    # No lease, a live one held, and a stale position (even "create the run").
    with pytest.raises(RunLeasedError):
        await store.append("run-1", tool_step(1), expected_seq=7, record=record())
    with pytest.raises(RunLeasedError):
        await store.append("run-1", [started()], expected_seq=0, record=record())


async def test_the_current_lease_still_gets_position_conflicts(store: Store) -> None:
    lease = await lease_run(store)
    with pytest.raises(JournalConflictError) as caught:
        await store.append("run-1", tool_step(1), expected_seq=0, record=record(), lease=lease)
    assert caught.value.actual == 1
    with pytest.raises(JournalConflictError):
        await store.append("run-1", tool_step(1), expected_seq=2, record=record(), lease=lease)


async def test_a_lease_for_a_run_that_does_not_exist_is_lost(store: Store) -> None:
    ghost = Lease(run_id="run-1", owner="w", token=1, expires_at=time.time() + 60)
    with pytest.raises(LeaseLostError) as caught:
        await store.append("run-1", [started()], expected_seq=0, record=record(), lease=ghost)
    assert caught.value.current is None
    with pytest.raises(RunNotFoundError):
        await store.load("run-1")


async def test_the_lease_of_another_run_is_refused(store: Store) -> None:
    lease = await lease_run(store, "run-2")
    with pytest.raises(ValueError, match="lease of run 'run-2'"):
        await store.append("run-1", tool_step(1), expected_seq=1, record=record(), lease=lease)


async def test_racing_lease_holders_only_the_current_one_writes(store: Store) -> None:
    old = await lease_run(store, owner="w1")
    new = await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL, force=True)
    outcomes = await asyncio.gather(
        store.append(
            "run-1", tool_step(1, call_id="old"), expected_seq=1, record=record(), lease=old
        ),
        store.append(
            "run-1", tool_step(1, call_id="new"), expected_seq=1, record=record(), lease=new
        ),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], LeaseLostError)
    assert outcomes[1] == 4
    assert await store.load("run-1") == [started(), *tool_step(1, call_id="new")]


async def test_the_last_append_gives_the_lease_up_with_release(store: Store) -> None:
    lease = await lease_run(store)
    seq = await store.append(
        "run-1",
        finishing_step(1),
        expected_seq=1,
        record=record(status="completed"),
        thread_messages=conversation(),
        lease=lease,
        release=True,
    )
    assert seq == 3
    stored = await store.get_run("run-1")
    assert (stored.lease_owner, stored.lease_expires_at, stored.last_seq) == (None, None, 3)
    assert await messages_of(store, "thread-1") == conversation()
    with pytest.raises(LeaseLostError) as caught:
        await store.append("run-1", tool_step(2), expected_seq=3, record=record(), lease=lease)
    assert caught.value.current is None
    # As after release_lease: the next holder gets the next token.
    again = await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL)
    assert again.token == 2


async def test_a_refused_append_gives_no_lease_up(store: Store) -> None:
    lease = await lease_run(store)
    with pytest.raises(JournalConflictError):
        await store.append(
            "run-1", tool_step(1), expected_seq=5, record=record(), lease=lease, release=True
        )
    assert (await store.get_run("run-1")).lease_owner == "w1"
    with pytest.raises(RunLeasedError):
        await store.append("run-1", tool_step(1), expected_seq=1, record=record())
    assert (
        await store.append("run-1", tool_step(1), expected_seq=1, record=record(), lease=lease) == 4
    )


async def test_release_needs_the_lease_it_gives_up(store: Store) -> None:
    await lease_run(store)
    with pytest.raises(ValueError, match="release=True without a lease"):
        await store.append("run-1", tool_step(1), expected_seq=1, record=record(), release=True)
    assert await store.load("run-1") == [started()]


# --- acquire, renew, release ----------------------------------------------------------------


async def test_acquiring_the_lease_of_an_unknown_run(store: Store) -> None:
    with pytest.raises(RunNotFoundError):
        await store.acquire_lease("nope", owner="w", ttl_s=LONG_TTL)


async def test_a_free_lease_is_acquired_and_each_new_holder_gets_a_higher_token(
    store: Store,
) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record())
    first = await store.acquire_lease("run-1", owner="w1", ttl_s=10.0)
    assert (first.run_id, first.owner, first.token) == ("run-1", "w1", 1)
    assert near_now(first.expires_at, 10.0)
    await store.release_lease(first)
    second = await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL)
    assert second.token == 2
    await store.release_lease(second)
    third = await store.acquire_lease("run-1", owner="w1", ttl_s=LONG_TTL)
    assert third.token == 3


async def test_another_owners_live_lease_is_refused_unless_forced(store: Store) -> None:
    held = await lease_run(store, owner="w1")
    with pytest.raises(RunLeasedError) as caught:
        await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL)
    assert caught.value.owner == "w1"
    assert caught.value.expires_at == pytest.approx(held.expires_at, abs=1e-3)
    taken = await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL, force=True)
    assert (taken.owner, taken.token) == ("w2", 2)
    with pytest.raises(LeaseLostError):
        await store.renew_lease(held, ttl_s=LONG_TTL)


async def test_re_acquiring_ones_own_live_lease_renews_it(store: Store) -> None:
    held = await lease_run(store, owner="w1", ttl_s=10.0)
    again = await store.acquire_lease("run-1", owner="w1", ttl_s=LONG_TTL)
    assert (again.owner, again.token) == ("w1", 1)
    assert again.expires_at > held.expires_at
    # Same token: the earlier lease object is still current.
    assert await store.append("run-1", tool_step(1), expected_seq=1, record=record(), lease=held)


async def test_forcing_ones_own_lease_fences_out_the_earlier_one(store: Store) -> None:
    held = await lease_run(store, owner="w1")
    again = await store.acquire_lease("run-1", owner="w1", ttl_s=LONG_TTL, force=True)
    assert again.token == 2
    with pytest.raises(LeaseLostError):
        await store.append("run-1", tool_step(1), expected_seq=1, record=record(), lease=held)


async def test_an_expired_lease_is_taken_without_force(store: Store) -> None:
    old = await lease_run(store, owner="w1", ttl_s=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    new = await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL)
    assert (new.owner, new.token) == ("w2", 2)
    with pytest.raises(LeaseLostError) as caught:
        await store.append("run-1", tool_step(1), expected_seq=1, record=record(), lease=old)
    assert caught.value.current == 2


async def test_the_same_owner_re_acquiring_an_expired_lease_gets_a_new_token(
    store: Store,
) -> None:
    await lease_run(store, owner="w1", ttl_s=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    again = await store.acquire_lease("run-1", owner="w1", ttl_s=LONG_TTL)
    assert again.token == 2


async def test_renewing_extends_the_lease(store: Store) -> None:
    held = await lease_run(store, ttl_s=SHORT_TTL)
    renewed = await store.renew_lease(held, ttl_s=LONG_TTL)
    assert (renewed.run_id, renewed.owner, renewed.token) == ("run-1", "w1", 1)
    assert near_now(renewed.expires_at, LONG_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    # Renewed past SHORT_TTL: still live.
    with pytest.raises(RunLeasedError):
        await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL)


async def test_renewing_a_lost_lease_fails(store: Store) -> None:
    held = await lease_run(store, owner="w1")
    await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL, force=True)
    with pytest.raises(LeaseLostError) as taken:
        await store.renew_lease(held, ttl_s=LONG_TTL)
    assert (taken.value.token, taken.value.current) == (1, 2)
    released = await lease_run(store, "run-2")
    await store.release_lease(released)
    with pytest.raises(LeaseLostError) as gone:
        await store.renew_lease(released, ttl_s=LONG_TTL)
    assert gone.value.current is None
    ghost = Lease(run_id="nope", owner="w", token=1, expires_at=0.0)
    with pytest.raises(LeaseLostError):
        await store.renew_lease(ghost, ttl_s=LONG_TTL)


async def test_releasing_a_stale_lease_does_nothing(store: Store) -> None:
    old = await lease_run(store, owner="w1")
    new = await store.acquire_lease("run-1", owner="w2", ttl_s=LONG_TTL, force=True)
    await store.release_lease(old)
    await store.release_lease(Lease(run_id="nope", owner="w", token=1, expires_at=0.0))
    with pytest.raises(RunLeasedError):
        await store.append("run-1", tool_step(1), expected_seq=1, record=record())
    await store.renew_lease(new, ttl_s=LONG_TTL)
    await store.release_lease(new)
    await store.release_lease(new)  # twice is fine
    assert await store.append("run-1", tool_step(1), expected_seq=1, record=record()) == 4


# --- active runs ----------------------------------------------------------------------------


async def test_the_active_run_is_the_first_created_run_holding_the_thread(store: Store) -> None:
    assert await store.active_run("thread-1") is None
    await lease_run(store, "fork", created_at=T0 - 5, holds_thread=False)
    await lease_run(store, "old", created_at=T0, holds_thread=True)
    # Created later, though its host's clock says earlier: it comes second.
    await lease_run(store, "new", created_at=T0 - 1, holds_thread=True)
    await lease_run(store, "other", thread_id="thread-2", created_at=T0 - 9, holds_thread=True)
    active = await store.active_run("thread-1")
    assert active is not None
    assert (active.run_id, active.holds_thread, active.lease_owner) == ("old", True, "w1")
    # Once it ends (it no longer holds the thread), the next one is active.
    await store.append(
        "old",
        finishing_step(1),
        expected_seq=1,
        record=record("old", created_at=T0, status="completed"),
        lease=await store.acquire_lease("old", owner="w1", ttl_s=LONG_TTL),
    )
    active = await store.active_run("thread-1")
    assert active is not None
    assert active.run_id == "new"
    assert await store.active_run("thread-3") is None


# --- thread history -------------------------------------------------------------------------


async def test_thread_messages_accumulate_across_runs_in_order(store: Store) -> None:
    first = conversation("Weather in Paris?")
    second = conversation("And in Berlin?")
    await store.append("run-1", [started()], expected_seq=0, record=record())
    await store.append(
        "run-1", finishing_step(1), expected_seq=1, record=record(), thread_messages=first
    )
    await store.append(
        "run-2",
        [started("run-2"), *finishing_step(1)],
        expected_seq=0,
        record=record("run-2"),
        thread_messages=second,
    )
    await store.append(
        "run-3",
        [started("run-3", thread_id="other")],
        expected_seq=0,
        record=record("run-3", thread_id="other"),
        thread_messages=[UserMessage(content="elsewhere")],
    )
    assert await store.thread_history("thread-1") == ThreadHistory(
        messages=first + second, last_seq=8
    )
    assert await store.thread_history("other") == ThreadHistory(
        messages=[UserMessage(content="elsewhere")], last_seq=1
    )


async def test_thread_messages_under_a_lease(store: Store) -> None:
    lease = await lease_run(store)
    await store.append(
        "run-1",
        finishing_step(1),
        expected_seq=1,
        record=record(status="completed"),
        thread_messages=conversation(),
        lease=lease,
    )
    assert await store.thread_history("thread-1") == ThreadHistory(
        messages=conversation(), last_seq=4
    )


async def test_thread_history_up_to_a_sequence_number(store: Store) -> None:
    first = conversation("one")
    second = conversation("two")
    await store.append("run-1", [started()], expected_seq=0, record=record(), thread_messages=first)
    await store.append(
        "run-2", [started("run-2")], expected_seq=0, record=record("run-2"), thread_messages=second
    )
    assert await store.thread_history("thread-1", upto_seq=4) == ThreadHistory(
        messages=first, last_seq=8
    )
    assert await store.thread_history("thread-1", upto_seq=5) == ThreadHistory(
        messages=[*first, second[0]], last_seq=8
    )
    assert await store.thread_history("thread-1", upto_seq=0) == ThreadHistory(
        messages=[], last_seq=8
    )
    assert (await store.thread_history("thread-1", upto_seq=100)).messages == first + second


async def test_thread_history_of_an_unknown_thread(store: Store) -> None:
    assert await store.thread_history("nope") == ThreadHistory(messages=[], last_seq=0)
    assert await store.thread_history("nope", upto_seq=3) == ThreadHistory(messages=[], last_seq=0)


async def test_thread_history_returns_a_copy(store: Store) -> None:
    messages: list[Message] = [
        UserMessage(content="hi"),
        ToolResultMessage(tool_call_id="c", name="t", content="boom", is_error=True),
    ]
    await store.append(
        "run-1", [started()], expected_seq=0, record=record(), thread_messages=messages
    )
    (await messages_of(store, "thread-1")).clear()
    assert await messages_of(store, "thread-1") == messages


async def test_thread_sequence_numbers_are_never_reused(store: Store) -> None:
    await store.append(
        "run-1", [started()], expected_seq=0, record=record(), thread_messages=conversation("1")
    )
    await store.append(
        "run-2",
        [started("run-2")],
        expected_seq=0,
        record=record("run-2"),
        thread_messages=conversation("2"),
    )
    assert await store.delete_runs(["run-2"]) == 1
    assert await store.thread_history("thread-1") == ThreadHistory(
        messages=conversation("1"), last_seq=8
    )
    # Run 3 recorded that its history ended at 8; its own messages come after, as 9 and 10.
    third: list[Message] = [UserMessage(content="3"), AssistantMessage(content="three")]
    await store.append(
        "run-3", [started("run-3")], expected_seq=0, record=record("run-3"), thread_messages=third
    )
    assert await store.thread_history("thread-1", upto_seq=8) == ThreadHistory(
        messages=conversation("1"), last_seq=10
    )
    assert (await store.thread_history("thread-1")).messages == conversation("1") + third


async def test_racing_runs_of_one_thread_number_their_messages_in_turn(store: Store) -> None:
    for n in range(6):
        await store.append(f"r{n}", [started(f"r{n}")], expected_seq=0, record=record(f"r{n}"))
    await asyncio.gather(
        *(
            store.append(
                f"r{n}",
                finishing_step(1),
                expected_seq=1,
                record=record(f"r{n}", status="completed"),
                thread_messages=[UserMessage(content=f"{n}-a"), UserMessage(content=f"{n}-b")],
            )
            for n in range(6)
        )
    )
    history = await store.thread_history("thread-1")
    assert history.last_seq == 12
    contents = [m.content for m in history.messages if isinstance(m, UserMessage)]
    assert sorted(contents) == sorted(f"{n}-{x}" for n in range(6) for x in "ab")
    # Each run's two messages are adjacent: numbers were reserved per append.
    for n in range(6):
        index = contents.index(f"{n}-a")
        assert contents[index + 1] == f"{n}-b"


# --- deletion -------------------------------------------------------------------------------


async def seed_thread(store: Store) -> None:
    """Two finished runs of thread-1 with messages, one of thread-2."""
    for run_id, thread_id, question in [
        ("run-1", "thread-1", "one"),
        ("run-2", "thread-1", "two"),
        ("run-3", "thread-2", "three"),
    ]:
        await store.append(
            run_id,
            [started(run_id, thread_id=thread_id), *tool_step(1)],
            expected_seq=0,
            record=record(run_id, thread_id=thread_id),
        )
        await store.append(
            run_id,
            finishing_step(2),
            expected_seq=4,
            record=record(run_id, thread_id=thread_id, status="completed"),
            thread_messages=conversation(question),
        )


async def test_deleting_runs_removes_their_events_records_and_messages(store: Store) -> None:
    await seed_thread(store)
    assert await store.delete_runs(["run-1", "nope", "run-1"]) == 1
    with pytest.raises(RunNotFoundError):
        await store.load("run-1")
    with pytest.raises(RunNotFoundError):
        await store.get_run("run-1")
    assert [r.run_id for r in await store.list_runs()] == ["run-3", "run-2"]
    assert await store.thread_history("thread-1") == ThreadHistory(
        messages=conversation("two"), last_seq=8
    )
    assert len(await store.load("run-2")) == 6
    assert await store.delete_runs([]) == 0
    assert await store.delete_runs(["nope"]) == 0
    # The run id is free again: a new run may take it.
    await store.append("run-1", [started()], expected_seq=0, record=record())


async def test_deleting_a_run_removes_its_lease(store: Store) -> None:
    lease = await lease_run(store, ttl_s=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    assert await store.delete_runs(["run-1"]) == 1
    with pytest.raises(LeaseLostError):
        await store.renew_lease(lease, ttl_s=LONG_TTL)
    await store.append("run-1", [started()], expected_seq=0, record=record())
    assert (await store.acquire_lease("run-1", owner="w", ttl_s=LONG_TTL)).token == 1


async def test_deleting_a_run_with_a_live_lease_is_refused_and_deletes_nothing(
    store: Store,
) -> None:
    await seed_thread(store)
    await lease_run(store, "leased", owner="worker-a")
    with pytest.raises(RunLeasedError) as caught:
        await store.delete_runs(["run-1", "leased", "run-2"])
    assert (caught.value.run_id, caught.value.owner) == ("leased", "worker-a")
    assert len(await store.list_runs()) == 4
    assert len((await store.thread_history("thread-1")).messages) == 8


async def test_deleting_runs_created_before_a_time(store: Store) -> None:
    runs: list[tuple[str, float, RunStatus]] = [
        ("old-done", T0, "completed"),
        ("old-failed", T0 + 1, "failed"),
        ("old-running", T0 + 2, "running"),
        ("new-done", T0 + 10, "completed"),
    ]
    for run_id, created_at, status in runs:
        await store.append(
            run_id,
            [started(run_id)],
            expected_seq=0,
            record=record(run_id, created_at=created_at, status=status),
            thread_messages=[UserMessage(content=run_id)],
        )
    # Paused, but its lease is live: a worker is still on it.
    await lease_run(store, "old-leased", status="paused", created_at=T0 + 3)
    assert await store.delete_runs_before(T0 + 10) == 2
    assert sorted(r.run_id for r in await store.list_runs()) == [
        "new-done",
        "old-leased",
        "old-running",
    ]
    assert await store.thread_history("thread-1") == ThreadHistory(
        messages=[UserMessage(content="old-running"), UserMessage(content="new-done")],
        last_seq=4,
    )
    assert await store.delete_runs_before(T0 - 1) == 0


async def test_deleting_a_thread_removes_its_runs_and_messages(store: Store) -> None:
    await seed_thread(store)
    # A running run whose process died (expired lease) goes too.
    await lease_run(store, "crashed", ttl_s=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    assert await store.delete_thread("thread-1") == 3
    assert [r.run_id for r in await store.list_runs()] == ["run-3"]
    assert (await store.thread_history("thread-1")).messages == []
    assert await store.thread_history("thread-2") == ThreadHistory(
        messages=conversation("three"), last_seq=4
    )
    assert await store.delete_thread("thread-1") == 0
    assert await store.delete_thread("nope") == 0


async def test_a_deleted_threads_numbers_are_not_handed_out_again(store: Store) -> None:
    await seed_thread(store)
    await store.delete_thread("thread-1")
    await store.append(
        "again",
        [started("again")],
        expected_seq=0,
        record=record("again"),
        thread_messages=[UserMessage(content="hello again")],
    )
    assert await store.thread_history("thread-1") == ThreadHistory(
        messages=[UserMessage(content="hello again")], last_seq=9
    )
    assert await store.thread_history("thread-1", upto_seq=8) == ThreadHistory(
        messages=[], last_seq=9
    )


async def test_deleting_a_thread_with_a_live_lease_is_refused(store: Store) -> None:
    await seed_thread(store)
    await lease_run(store, "live", owner="worker-a")
    with pytest.raises(RunLeasedError) as caught:
        await store.delete_thread("thread-1")
    assert caught.value.run_id == "live"
    assert len(await store.list_runs(thread_id="thread-1")) == 3
    assert len((await store.thread_history("thread-1")).messages) == 8


# --- closing --------------------------------------------------------------------------------


async def test_close_twice_is_fine(store: Store) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record())
    await store.close()
    await store.close()


async def test_a_closed_store_refuses_use(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.load("run-1")
    with pytest.raises(StoreError, match="closed"):
        await store.append("run-1", [started()], expected_seq=0, record=record())
    with pytest.raises(StoreError, match="closed"):
        await store.acquire_lease("run-1", owner="w", ttl_s=LONG_TTL)


# --- property: any batches load back equal --------------------------------------------------

texts = st.text(max_size=12)
times = st.floats(allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=2**40)
tool_calls = st.builds(ToolCall, id=texts, name=texts, arguments=texts)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | times | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
errors = st.none() | st.builds(ErrorInfo, code=texts, message=texts)
events: st.SearchStrategy[Event] = st.one_of(
    st.builds(
        RunStarted,
        run_id=texts,
        thread_id=texts,
        agent=texts,
        model=texts,
        input=texts,
        tools=st.lists(texts, max_size=3).map(tuple),
        at=times,
    ),
    st.builds(
        ModelResponded,
        step=counts,
        model=texts,
        message=st.builds(
            AssistantMessage,
            content=st.none() | texts,
            tool_calls=st.lists(tool_calls, max_size=3).map(tuple),
        ),
        usage=st.builds(Usage, input_tokens=counts, output_tokens=counts),
        cost_usd=st.none() | times,
        at=times,
    ),
    st.builds(ToolCallStarted, step=counts, call=tool_calls, idempotency_key=texts, at=times),
    st.builds(ToolCallFinished, step=counts, call=tool_calls, result=texts, error=errors, at=times),
    st.builds(
        RunFinished,
        status=st.sampled_from(["completed", "failed", "cancelled"]),
        output=json_values,
        error=errors,
        at=times,
    ),
)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(UserMessage, content=texts),
    st.builds(AssistantMessage, content=st.none() | texts),
)
batches = st.lists(
    st.tuples(st.lists(events, min_size=1, max_size=4), st.lists(messages, max_size=2)),
    min_size=1,
    max_size=5,
)
EMBEDDED: dict[str, Callable[[Path], AbstractAsyncContextManager[Store]]] = {
    "memory": lambda _directory: memory_store(),
    "sqlite": sqlite_store,
}


@pytest.mark.parametrize("kind", sorted(EMBEDDED))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches)
def test_any_batches_load_back_equal(
    kind: str, batches: list[tuple[list[Event], list[Message]]]
) -> None:
    async def check(directory: Path) -> None:
        async with EMBEDDED[kind](directory) as store:
            seq = 0
            for batch, thread in batches:
                seq = await store.append(
                    "run", batch, expected_seq=seq, record=record("run"), thread_messages=thread
                )
            assert await store.load("run") == [event for batch, _ in batches for event in batch]
            assert (await store.get_run("run")).last_seq == seq
            thread_messages = [message for _, thread in batches for message in thread]
            assert await store.thread_history("thread-1") == ThreadHistory(
                messages=thread_messages, last_seq=len(thread_messages)
            )

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(check(Path(directory)))
