"""PostgreSQL's group commit: writes that wait together commit in one statement, and each
keeps every guarantee it has alone: a refused write fails alone with its own error, a write
the database rejects cannot fail the others, and a group whose connection dropped after its
commit is not written twice.

A group is made on purpose: a blocker holds the row lock of one run, so that an append to it
(the write in flight) waits; the writes made meanwhile queue behind it and go out together
once the blocker lets go.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from keel.errors import JournalConflictError, LeaseLostError, StoreError
from keel.ports import Lease, ThreadHistory
from keel.stores._postgres import PostgresStore
from keel.stores._sql.postgres_group import Alone
from keel.stores._sql.programs import Write

from ._data import conversation, finishing_step, record, started, tool_step

AdminConnection = psycopg.Connection[tuple[Any, ...]]
Work = Callable[[psycopg.AsyncConnection[tuple[Any, ...]]], Awaitable[Any]]


@pytest.fixture
async def app_store(
    postgres_url: str, postgres_schema: str
) -> AsyncIterator[tuple[PostgresStore, str]]:
    app = f"keel-test-{uuid.uuid4().hex[:8]}"
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}application_name={app}"
    async with PostgresStore(url, schema=postgres_schema) as store:
        yield store, app


def groups_of(store: PostgresStore) -> list[list[str]]:
    """Record the run ids of each group the store commits."""
    seen: list[list[str]] = []
    group = store._group
    original = group._commit

    async def commit(writes: list[Write]) -> list[Any] | Alone:
        seen.append([w.run_id for w in writes])
        return await original(writes)

    group._commit = commit
    return seen


@asynccontextmanager
async def in_flight(
    store: PostgresStore,
    app: str,
    postgres_url: str,
    admin_conn: AdminConnection,
    lease: Lease,
) -> AsyncIterator[asyncio.Task[int]]:
    """An append to ``lease``'s run, waiting for a row lock held by another connection until
    the block ends; writes started inside the block queue behind it."""
    with psycopg.connect(postgres_url) as blocker:
        blocker.execute(
            sql.SQL("SELECT 1 FROM {}.runs WHERE run_id = %s FOR UPDATE").format(
                sql.Identifier(store.schema)
            ),
            (lease.run_id,),
        )
        task = asyncio.create_task(
            store.append(
                lease.run_id,
                tool_step(1),
                expected_seq=1,
                record=record(lease.run_id),
                lease=lease,
            )
        )
        deadline = time.monotonic() + 10
        while not admin_conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
            "AND wait_event_type = 'Lock'",
            (app,),
        ).fetchall():
            assert time.monotonic() < deadline, "the append never waited for the lock"
            await asyncio.sleep(0.01)
        yield task
        await asyncio.sleep(0.05)  # the writes of the block are queued by now
        blocker.rollback()
    assert await task == 4


def queued(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.create_task(coroutine)


async def start(store: PostgresStore, run_id: str, *, thread_id: str = "thread-1") -> Lease:
    lease = await store.start_run(
        run_id,
        [started(run_id, thread_id=thread_id)],
        record=record(run_id, thread_id=thread_id),
        owner="w",
        ttl_s=60,
    )
    assert lease is not None
    return lease


async def test_writes_waiting_together_commit_in_one_group(
    app_store: tuple[PostgresStore, str], postgres_url: str, admin_conn: AdminConnection
) -> None:
    store, app = app_store
    first, second, third = [await start(store, f"run-{n}", thread_id="t") for n in (1, 2, 3)]
    await store.append("free", [started("free")], expected_seq=0, record=record("free"))
    groups = groups_of(store)
    async with in_flight(store, app, postgres_url, admin_conn, first):
        writes = [
            # Two runs of one thread complete: their messages are numbered in turn.
            queued(
                store.append(
                    "run-2",
                    finishing_step(1),
                    expected_seq=1,
                    record=record("run-2", thread_id="t", status="completed"),
                    thread_messages=conversation("second"),
                    lease=second,
                    release=True,
                )
            ),
            queued(
                store.append(
                    "run-3",
                    finishing_step(1),
                    expected_seq=1,
                    record=record("run-3", thread_id="t", status="completed"),
                    thread_messages=conversation("third"),
                    lease=third,
                )
            ),
            queued(store.append("free", tool_step(1), expected_seq=1, record=record("free"))),
            queued(store.append("new", [started("new")], expected_seq=0, record=record("new"))),
            queued(
                store.start_run(
                    "leased", [started("leased")], record=record("leased"), owner="w", ttl_s=60
                )
            ),
            queued(
                store.start_run(
                    "queued", [started("queued")], record=record("queued"), owner=None, ttl_s=60
                )
            ),
        ]
    results = await asyncio.gather(*writes)
    assert results[:4] == [3, 3, 4, 1]
    leased, unleased = results[4:]
    assert isinstance(leased, Lease)
    assert (leased.run_id, leased.owner, leased.token) == ("leased", "w", 1)
    assert leased.expires_at == pytest.approx(time.time() + 60, abs=5)
    assert unleased is None
    # One group, but the second completion of the thread waited for the next one.
    assert groups == [["run-2", "free", "new", "leased", "queued"]]
    assert await store.load("run-2") == [started("run-2", thread_id="t"), *finishing_step(1)]
    assert await store.load("new") == [started("new")]
    history = await store.thread_history("t")
    assert history == ThreadHistory(
        messages=[*conversation("second"), *conversation("third")], last_seq=8
    )
    released, kept = await store.get_run("run-2"), await store.get_run("run-3")
    assert (released.lease_owner, kept.lease_owner) == (None, "w")
    stored = await store.get_run("leased")
    assert (stored.lease_owner, stored.lease_expires_at) == ("w", leased.expires_at)
    assert (await store.get_run("queued")).lease_owner is None


async def test_a_refused_write_of_a_group_fails_alone_and_the_others_commit(
    app_store: tuple[PostgresStore, str], postgres_url: str, admin_conn: AdminConnection
) -> None:
    store, app = app_store
    first, second, third = [await start(store, f"run-{n}") for n in (1, 2, 3)]
    await store.acquire_lease("run-3", owner="other", ttl_s=60, force=True)
    groups = groups_of(store)
    async with in_flight(store, app, postgres_url, admin_conn, first):
        conflict = queued(
            store.append(
                "run-2", tool_step(1), expected_seq=7, record=record("run-2"), lease=second
            )
        )
        lost = queued(
            store.append("run-3", tool_step(1), expected_seq=1, record=record("run-3"), lease=third)
        )
        taken = queued(store.start_run("run-1", [started()], record=record(), owner=None, ttl_s=60))
        fine = queued(store.append("new", [started("new")], expected_seq=0, record=record("new")))
    with pytest.raises(JournalConflictError) as caught:
        await conflict
    assert (caught.value.expected, caught.value.actual) == (7, 1)
    with pytest.raises(LeaseLostError) as gone:
        await lost
    assert (gone.value.token, gone.value.current) == (1, 2)
    with pytest.raises(JournalConflictError):
        await taken
    assert await fine == 1
    assert groups == [["run-2", "run-3", "run-1", "new"]]
    assert await store.load("run-2") == [started("run-2")]
    assert await store.load("run-3") == [started("run-3")]


async def test_a_write_the_database_rejects_cannot_fail_the_others(
    app_store: tuple[PostgresStore, str], postgres_url: str, admin_conn: AdminConnection
) -> None:
    store, app = app_store
    first, second = [await start(store, f"run-{n}") for n in (1, 2)]
    groups = groups_of(store)
    async with in_flight(store, app, postgres_url, admin_conn, first):
        bad = queued(
            store.append(
                "run-2",
                tool_step(1),
                expected_seq=1,
                record=record("run-2", input="NUL \x00 is not text to PostgreSQL"),
                lease=second,
            )
        )
        good = queued(store.append("new", [started("new")], expected_seq=0, record=record("new")))
    with pytest.raises(StoreError, match=r"append to run 'run-2' failed.*0x00"):
        await bad
    assert await good == 1
    assert groups == [["run-2", "new"]]
    assert await store.load("run-2") == [started("run-2")]
    assert await store.load("new") == [started("new")]


async def test_a_group_whose_commit_was_lost_is_not_written_twice(
    app_store: tuple[PostgresStore, str], postgres_url: str, admin_conn: AdminConnection
) -> None:
    store, app = app_store
    first, second = [await start(store, f"run-{n}") for n in (1, 2)]
    original = store._attempt
    calls = [0]

    async def attempt(work: Work) -> Any:
        calls[0] += 1
        if calls[0] != 2:  # the first is the append in flight, the second the group
            return await original(work)

        async def work_then_die(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> Any:
            result = await work(conn)
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return result

        return await original(work_then_die)

    store._attempt = attempt  # type: ignore[method-assign]
    groups = groups_of(store)
    async with in_flight(store, app, postgres_url, admin_conn, first):
        released = queued(
            store.append(
                "run-2",
                finishing_step(1),
                expected_seq=1,
                record=record("run-2", status="completed"),
                thread_messages=conversation(),
                lease=second,
                release=True,
            )
        )
        new = queued(store.append("new", [started("new")], expected_seq=0, record=record("new")))
        leased = queued(
            store.start_run(
                "leased", [started("leased")], record=record("leased"), owner="w", ttl_s=60
            )
        )
    # Each ran alone, was refused (its own commit), and the check found its own events.
    assert await released == 3
    assert await new == 1
    lease = await leased
    assert lease is not None
    assert (lease.owner, lease.token) == ("w", 1)
    assert groups == [["run-2", "new", "leased"]]
    assert await store.load("run-2") == [started("run-2"), *finishing_step(1)]
    assert await store.thread_history("thread-1") == ThreadHistory(
        messages=conversation(), last_seq=4
    )
    assert (await store.get_run("run-2")).lease_owner is None
    assert await store.load("new") == [started("new")]
    assert await store.append(
        "leased", tool_step(1), expected_seq=1, record=record("leased"), lease=lease
    )


async def test_another_stores_watchers_hear_a_groups_writes(
    app_store: tuple[PostgresStore, str],
    postgres_url: str,
    postgres_schema: str,
    admin_conn: AdminConnection,
) -> None:
    store, app = app_store
    first = await start(store, "run-1")
    await store.append("free", [started("free")], expected_seq=0, record=record("free"))
    groups = groups_of(store)
    async with (
        PostgresStore(postgres_url, schema=postgres_schema) as other,
        other.watch("free") as free,
        other.watch(None) as queue,
    ):
        await store._notifier.flush()
        await asyncio.sleep(0.1)  # the notifications of the writes above have arrived
        await free.wait(0)
        await queue.wait(0)
        async with in_flight(store, app, postgres_url, admin_conn, first):
            writes = [
                queued(store.append("free", tool_step(1), expected_seq=1, record=record("free"))),
                queued(
                    store.start_run(
                        "queued",
                        [started("queued")],
                        record=record("queued", status="queued"),
                        owner=None,
                        ttl_s=60,
                    )
                ),
            ]
        assert await asyncio.gather(*writes) == [4, None]
        assert groups == [["free", "queued"]]
        # Sent after the group's commit, in one statement: both keys reach the listener.
        assert await free.wait(5)
        assert await queue.wait(5)
