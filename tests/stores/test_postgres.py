"""What only the PostgreSQL store promises: migrations shared by many processes, schemas that
keep stores apart, clear connection errors, surviving dropped connections without losing or
duplicating an append, working behind pgbouncer in transaction mode, and the ``postgres``
extra's import error."""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from keel._core.events import ToolCallFinished
from keel.errors import (
    ConfigurationError,
    JournalConflictError,
    MissingExtraError,
    StoreError,
    ThreadBusyError,
)
from keel.ports import Lease, ThreadHistory
from keel.stores._postgres import PostgresStore
from keel.stores._sql.postgres_schema import LATEST_VERSION, MIGRATIONS
from tests.postgres import drop_schema, new_schema_name, postgres_where
from tests.services import port_open, require_service

from ._data import conversation, finishing_step, record, started, tool_step

AdminConnection = psycopg.Connection[tuple[Any, ...]]
Work = Callable[[psycopg.AsyncConnection[tuple[Any, ...]]], Awaitable[Any]]


def with_app_name(url: str, name: str) -> str:
    """The URL with an application_name, so a test can find the store's server processes."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def terminate(admin: AdminConnection, app_name: str) -> int:
    """Terminate every server process of ``app_name``, as a server restart would."""
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        (app_name,),
    ).fetchall()
    return len(rows)


def tables(admin: AdminConnection, schema: str) -> set[str]:
    rows = admin.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    ).fetchall()
    return {row[0] for row in rows}


@pytest.fixture
async def store(postgres_url: str, postgres_schema: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(postgres_url, schema=postgres_schema) as store:
        yield store


# --- migrations -----------------------------------------------------------------------------


async def test_a_fresh_schema_is_created_and_migrated(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    async with PostgresStore(postgres_url, schema=postgres_schema) as store:
        assert await store.upgrade() == [m.version for m in MIGRATIONS]
        assert await store.upgrade() == []
        assert await store.list_runs() == []
    assert tables(admin_conn, postgres_schema) == {
        "runs",
        "events",
        "threads",
        "thread_messages",
        "run_tools",
        "feedback",
        "run_keys",
        "schema_migrations",
    }
    versions = admin_conn.execute(
        sql.SQL("SELECT version, name FROM {}.schema_migrations ORDER BY version").format(
            sql.Identifier(postgres_schema)
        )
    ).fetchall()
    assert versions == [(m.version, m.name) for m in MIGRATIONS]


async def test_opening_again_applies_no_migration_twice(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    for _ in range(3):
        async with PostgresStore(postgres_url, schema=postgres_schema) as store:
            await store.list_runs()
    count = admin_conn.execute(
        sql.SQL("SELECT count(*) FROM {}.schema_migrations").format(sql.Identifier(postgres_schema))
    ).fetchone()
    assert count == (len(MIGRATIONS),)


async def test_stores_migrating_at_once_take_turns(postgres_url: str, postgres_schema: str) -> None:
    stores = [PostgresStore(postgres_url, schema=postgres_schema) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(store.upgrade() for store in stores))
        assert sorted(applied) == [[], [], [], [m.version for m in MIGRATIONS]]
        # And stores that migrate on first use, at once, on another fresh schema.
        other = new_schema_name()
        racers = [PostgresStore(postgres_url, schema=other) for _ in range(4)]
        try:
            await asyncio.gather(*(racer.list_runs() for racer in racers))
        finally:
            for racer in racers:
                await racer.close()
            await drop_schema(postgres_url, other)
    finally:
        for store in stores:
            await store.close()


async def test_a_schema_from_a_newer_keel_is_refused(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    async with PostgresStore(postgres_url, schema=postgres_schema) as store:
        await store.list_runs()
    newer = LATEST_VERSION + 1
    admin_conn.execute(
        sql.SQL("INSERT INTO {}.schema_migrations VALUES (%s, 'future', 0)").format(
            sql.Identifier(postgres_schema)
        ),
        (newer,),
    )
    for auto_migrate in (True, False):
        async with PostgresStore(
            postgres_url, schema=postgres_schema, auto_migrate=auto_migrate
        ) as store:
            with pytest.raises(StoreError, match=rf"newer Keel \(schema {newer}\b.*upgrade keel"):
                await store.list_runs()


async def test_without_auto_migrate_a_new_schema_needs_an_upgrade(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    async with PostgresStore(postgres_url, schema=postgres_schema, auto_migrate=False) as store:
        with pytest.raises(StoreError, match=r"version 0 .*run `keel db upgrade`"):
            await store.list_runs()
        assert tables(admin_conn, postgres_schema) == set()  # refused, and left alone
        assert await store.upgrade() == [1, 3, 4, 5]
        assert await store.list_runs() == []
    async with PostgresStore(postgres_url, schema=postgres_schema, auto_migrate=False) as store:
        assert await store.list_runs() == []


# --- schemas --------------------------------------------------------------------------------


async def test_stores_with_different_schemas_keep_their_data_apart(
    postgres_url: str, postgres_schema: str
) -> None:
    # Mixed case needs quoting: an unquoted name would be folded to lower case.
    other = "Keel_Mixed_" + uuid.uuid4().hex[:8]
    try:
        async with (
            PostgresStore(postgres_url, schema=postgres_schema) as first,
            PostgresStore(postgres_url, schema=other) as second,
        ):
            await first.append("run-1", [started()], expected_seq=0, record=record())
            await second.append(
                "run-1",
                [started(), *tool_step(1)],
                expected_seq=0,
                record=record(agent="other"),
                thread_messages=conversation(),
            )
            assert await first.load("run-1") == [started()]
            assert (await first.get_run("run-1")).agent == "weather"
            assert await second.load("run-1") == [started(), *tool_step(1)]
            assert (await second.get_run("run-1")).agent == "other"
            assert (await first.thread_history("thread-1")).last_seq == 0
            assert (await second.thread_history("thread-1")).last_seq == 4
            assert second.schema == other
    finally:
        await drop_schema(postgres_url, other)


def test_every_table_is_named_with_its_schema() -> None:
    store = PostgresStore("postgresql://u@127.0.0.1/db", schema="Some_Schema")
    qualified = '"Some_Schema".'
    cte_names = {"run", "thread", "notified", "released"}
    programs = store._programs
    statements: list[str] = []
    for value in vars(programs.sql).values():
        if isinstance(value, str):
            statements.append(value)
        elif isinstance(value, dict):
            statements += list(value.values())
    statements += list(programs.writes.values())
    statements += [store._render(s) for m in MIGRATIONS for s in m.statements]
    assert len(statements) > 40
    names = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|ON|SCHEMA)\s+([a-z\"][\w\".]*)")
    for statement in statements:
        assert "{" not in statement, statement  # every placeholder was filled in
        for target in names.findall(statement):
            if target in cte_names or target.startswith(("run,", "thread,", "(", "CONFLICT")):
                continue
            if target.startswith(
                ("t.", "m.", "r.", "e.", "o.", "clock_timestamp", "unnest", "json_array_elements")
            ):
                continue  # not tables
            assert target.startswith(qualified) or target == '"Some_Schema"', (target, statement)


@pytest.mark.parametrize(
    "schema", ["", "1keel", "keel;drop", 'ke"el', "keel.runs", "k" * 64, "kéel"]
)
def test_a_schema_that_is_not_a_plain_identifier_is_refused(schema: str) -> None:
    with pytest.raises(ValueError, match="schema must be a plain identifier"):
        PostgresStore("postgresql://u@127.0.0.1/db", schema=schema)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_size": 5, "max_size": 2}, "min_size"),
        ({"max_size": 0}, "max_size"),
        ({"connect_timeout_s": 0.0}, "connect_timeout_s"),
        ({"reconnect_timeout_s": -1.0}, "reconnect_timeout_s"),
        ({"poll_interval_s": 0.0}, "poll_interval_s"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PostgresStore("postgresql://u@127.0.0.1/db", **options)


def test_a_bad_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="not a valid PostgreSQL") as caught:
        PostgresStore("postgresql://u:s3cret@127.0.0.1:notaport/db?bogus_option=1")
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None


# --- connection errors ----------------------------------------------------------------------


async def test_an_unreachable_server_is_named_without_its_password() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://keel:s3cret@127.0.0.1:{port}/nowhere"
    store = PostgresStore(url, connect_timeout_s=2)
    assert "s3cret" not in repr(store)
    with pytest.raises(StoreError) as caught:
        await store.append("run-1", [started()], expected_seq=0, record=record())
    message = str(caught.value)
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}/nowhere as user 'keel'" in message
    assert "check that the server is running" in message
    assert "s3cret" not in message
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    await store.close()


async def test_a_missing_database_is_reported(postgres_url: str) -> None:
    url = psycopg.conninfo.make_conninfo(postgres_url, dbname="keel_no_such_database")
    async with PostgresStore(url) as store:
        with pytest.raises(StoreError, match='database "keel_no_such_database" does not exist'):
            await store.list_runs()


# --- lost connections -----------------------------------------------------------------------


async def test_appends_survive_their_connections_being_killed(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    app = f"keel-test-{uuid.uuid4().hex[:8]}"
    url = with_app_name(postgres_url, app)
    async with PostgresStore(url, schema=postgres_schema, min_size=2, max_size=4) as store:
        lease = await store.start_run("run-1", [started()], record=record(), owner="w", ttl_s=60)
        seq = 1
        for step in range(1, 9):
            if step % 2:
                # Every pooled connection dies between two appends, as in a server restart.
                assert terminate(admin_conn, app) >= 1
            seq = await store.append(
                "run-1", tool_step(step), expected_seq=seq, record=record(), lease=lease
            )
        assert seq == 25
        terminate(admin_conn, app)
        events = await store.load("run-1")
    ids = [e.call.id for e in events if isinstance(e, ToolCallFinished)]
    assert ids == [f"call_{step}" for step in range(1, 9)]


def die_after(store: PostgresStore, *, calls: int = 1) -> list[int]:
    """Make the first ``calls`` store calls commit their work and then lose their connection,
    so that the caller cannot know whether the work committed. Returns a call counter."""
    original = store._attempt
    counter = [0]

    async def attempt(work: Work) -> Any:
        counter[0] += 1
        if counter[0] > calls:
            return await original(work)

        async def work_then_die(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> Any:
            result = await work(conn)
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return result

        return await original(work_then_die)

    store._attempt = attempt  # type: ignore[method-assign]
    return counter


@pytest.mark.parametrize(("leased", "release"), [(False, False), (True, False), (True, True)])
async def test_an_append_whose_commit_was_lost_is_not_written_twice(
    store: PostgresStore, leased: bool, release: bool
) -> None:
    lease: Lease | None = None
    if leased:
        lease = await store.start_run("run-1", [started()], record=record(), owner="w", ttl_s=60)
    else:
        await store.append("run-1", [started()], expected_seq=0, record=record())
    counter = die_after(store)
    last = await store.append(
        "run-1",
        finishing_step(1),
        expected_seq=1,
        record=record(status="completed"),
        thread_messages=conversation(),
        lease=lease,
        release=release,
    )
    # The first attempt committed, the retry was refused (a conflict, or with the lease given
    # up, a lost lease), and the check found our own events.
    assert counter[0] == 3
    assert last == 3
    assert await store.load("run-1") == [started(), *finishing_step(1)]
    assert await store.thread_history("thread-1") == ThreadHistory(
        messages=conversation(), last_seq=4
    )
    if release:
        assert (await store.get_run("run-1")).lease_owner is None
        lease = None
    assert await store.append("run-1", tool_step(2), expected_seq=3, record=record(), lease=lease)


async def test_a_start_whose_commit_was_lost_is_not_written_twice(store: PostgresStore) -> None:
    counter = die_after(store)
    lease = await store.start_run(
        "run-1", [started()], record=record(), owner="w", ttl_s=60, exclusive=True
    )
    assert counter[0] == 3
    assert lease is not None
    assert (lease.owner, lease.token) == ("w", 1)
    assert await store.load("run-1") == [started()]
    assert await store.append("run-1", tool_step(1), expected_seq=1, record=record(), lease=lease)


async def test_a_lost_append_that_another_writer_beat_still_conflicts(
    postgres_url: str, postgres_schema: str, store: PostgresStore
) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record())
    original = store._attempt
    counter = [0]

    async def attempt(work: Work) -> Any:
        counter[0] += 1
        if counter[0] > 1:
            return await original(work)

        async def other_writer_then_die(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> Any:
            # The first attempt never ran; meanwhile another writer took position 1.
            async with PostgresStore(postgres_url, schema=postgres_schema) as other:
                await other.append(
                    "run-1", tool_step(1, call_id="other"), expected_seq=1, record=record()
                )
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        return await original(other_writer_then_die)

    store._attempt = attempt  # type: ignore[method-assign]
    with pytest.raises(JournalConflictError) as caught:
        await store.append("run-1", tool_step(1, call_id="mine"), expected_seq=1, record=record())
    assert caught.value.actual == 4
    assert await store.load("run-1") == [started(), *tool_step(1, call_id="other")]


async def test_an_append_killed_while_waiting_is_retried_once(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    app = f"keel-test-{uuid.uuid4().hex[:8]}"
    async with PostgresStore(with_app_name(postgres_url, app), schema=postgres_schema) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        with psycopg.connect(postgres_url) as blocker:
            # Hold the run's row lock: the append waits inside its (uncommitted) statement.
            blocker.execute(
                sql.SQL("SELECT 1 FROM {}.runs WHERE run_id = 'run-1' FOR UPDATE").format(
                    sql.Identifier(postgres_schema)
                )
            )
            task = asyncio.create_task(
                store.append("run-1", tool_step(1), expected_seq=1, record=record())
            )
            deadline = time.monotonic() + 10
            while not admin_conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
                "AND wait_event_type = 'Lock'",
                (app,),
            ).fetchall():
                assert time.monotonic() < deadline, "the append never waited for the lock"
                await asyncio.sleep(0.02)
            assert terminate(admin_conn, app) >= 1
            blocker.rollback()
        assert await task == 4
        assert await store.load("run-1") == [started(), *tool_step(1)]


async def test_reads_survive_their_connections_being_killed(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    app = f"keel-test-{uuid.uuid4().hex[:8]}"
    async with PostgresStore(with_app_name(postgres_url, app), schema=postgres_schema) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        counter = die_after(store)
        assert await store.load("run-1") == [started()]
        assert counter[0] == 2
        terminate(admin_conn, app)
        assert await store.get_run("run-1") == record(last_seq=1)


def die_before(store: PostgresStore, *, calls: int) -> list[int]:
    """Make the first ``calls`` store calls lose their connection before doing anything."""
    original = store._attempt
    counter = [0]

    async def attempt(work: Work) -> Any:
        counter[0] += 1
        if counter[0] > calls:
            return await original(work)

        async def die(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> Any:
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        return await original(die)

    store._attempt = attempt  # type: ignore[method-assign]
    return counter


async def test_connections_that_keep_dying_fail_the_call_after_the_deadline_writing_nothing(
    postgres_url: str, postgres_schema: str
) -> None:
    async with PostgresStore(
        postgres_url, schema=postgres_schema, reconnect_timeout_s=0.3
    ) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        counter = die_before(store, calls=1_000)
        with pytest.raises(StoreError, match=r"append to run 'run-1' failed.*connection was lost"):
            await store.append("run-1", tool_step(1), expected_seq=1, record=record())
        assert counter[0] >= 3  # it kept trying on fresh connections until the deadline
        counter[0] = 0
        with pytest.raises(
            StoreError, match=r"load run 'run-1' failed.*connection was lost"
        ) as read:
            await store.load("run-1")
        assert isinstance(read.value.__cause__, psycopg.OperationalError)
        counter[0] = 1_000  # the connections work again
        assert await store.load("run-1") == [started()]


async def test_a_call_rides_through_several_lost_connections(store: PostgresStore) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record())
    counter = die_before(store, calls=4)

    assert await store.append("run-1", tool_step(1), expected_seq=1, record=record()) == 4

    assert counter[0] == 5
    assert len(await store.load("run-1")) == 4


async def test_a_lost_start_that_another_process_beat_still_conflicts(
    postgres_url: str, postgres_schema: str, store: PostgresStore
) -> None:
    await store.upgrade()
    original = store._attempt
    counter = [0]

    async def attempt(work: Work) -> Any:
        counter[0] += 1
        if counter[0] > 1:
            return await original(work)

        async def other_starts_then_die(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> Any:
            async with PostgresStore(postgres_url, schema=postgres_schema) as other:
                await other.start_run(
                    "run-1", [started()], record=record(), owner="other", ttl_s=60
                )
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        return await original(other_starts_then_die)

    store._attempt = attempt  # type: ignore[method-assign]
    with pytest.raises(JournalConflictError):
        await store.start_run("run-1", [started()], record=record(), owner="me", ttl_s=60)


async def test_a_cancelled_statement_is_an_error_not_a_lost_connection(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    app = f"keel-test-{uuid.uuid4().hex[:8]}"
    async with PostgresStore(with_app_name(postgres_url, app), schema=postgres_schema) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        with psycopg.connect(postgres_url) as blocker:
            blocker.execute(
                sql.SQL("SELECT 1 FROM {}.runs WHERE run_id = 'run-1' FOR UPDATE").format(
                    sql.Identifier(postgres_schema)
                )
            )
            task = asyncio.create_task(
                store.append("run-1", tool_step(1), expected_seq=1, record=record())
            )
            deadline = time.monotonic() + 10
            while not admin_conn.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND wait_event_type = 'Lock'",
                (app,),
            ).fetchall():
                assert time.monotonic() < deadline, "the append never waited for the lock"
                await asyncio.sleep(0.02)
            with pytest.raises(StoreError, match="canceling statement") as caught:
                await task
            assert isinstance(caught.value.__cause__, psycopg.errors.QueryCanceled)
            blocker.rollback()
        # Not retried (the connection was fine), nothing written, and the store goes on.
        assert await store.load("run-1") == [started()]
        assert await store.append("run-1", tool_step(1), expected_seq=1, record=record()) == 4


async def test_a_database_error_is_a_store_error_naming_the_server(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    async with PostgresStore(postgres_url, schema=postgres_schema) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        admin_conn.execute(
            sql.SQL(
                "CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'thread writes disabled'; END $$; "
                "CREATE TRIGGER refuse BEFORE INSERT ON {schema}.thread_messages "
                "FOR EACH ROW EXECUTE FUNCTION {schema}.refuse()"
            ).format(schema=sql.Identifier(postgres_schema))
        )
        with pytest.raises(StoreError, match="thread writes disabled") as caught:
            await store.append(
                "run-1",
                finishing_step(1),
                expected_seq=1,
                record=record(status="completed"),
                thread_messages=conversation(),
            )
        message = str(caught.value)
        assert f"PostgreSQL store {postgres_where(postgres_url)}" in message
        assert f"schema '{postgres_schema}': append to run 'run-1' failed" in message
        # One statement: the events and the run's summary were not written either.
        assert await store.load("run-1") == [started()]
        assert await store.get_run("run-1") == record(last_seq=1)
        admin_conn.execute(
            sql.SQL("DROP TABLE {}.events CASCADE").format(sql.Identifier(postgres_schema))
        )
        with pytest.raises(StoreError, match=r"load run 'run-1' failed: relation .* not exist"):
            await store.load("run-1")


async def test_a_failed_migration_is_reported_and_applies_nothing(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    schema = sql.Identifier(postgres_schema)
    admin_conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    admin_conn.execute(sql.SQL("CREATE TABLE {}.events (x int)").format(schema))
    async with PostgresStore(postgres_url, schema=postgres_schema) as store:
        with pytest.raises(StoreError, match='schema migration failed: relation "events" already'):
            await store.list_runs()
    assert tables(admin_conn, postgres_schema) == {"events"}


async def test_a_busy_pool_times_out_with_advice(postgres_url: str, postgres_schema: str) -> None:
    async with PostgresStore(
        postgres_url, schema=postgres_schema, min_size=1, max_size=1, connect_timeout_s=0.3
    ) as store:
        await store.append("run-1", [started()], expected_seq=0, record=record())
        with psycopg.connect(postgres_url) as blocker:
            blocker.execute(
                sql.SQL("SELECT 1 FROM {}.runs WHERE run_id = 'run-1' FOR UPDATE").format(
                    sql.Identifier(postgres_schema)
                )
            )
            stuck = asyncio.create_task(
                store.append("run-1", tool_step(1), expected_seq=1, record=record())
            )
            await asyncio.sleep(0.1)  # the only connection now waits for the row lock
            with pytest.raises(StoreError, match=r"no connection was free .* raise max_size"):
                await store.load("run-1")
            blocker.rollback()
        assert await stuck == 4


def test_a_url_without_a_user_names_no_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGUSER", raising=False)
    store = PostgresStore("postgresql://127.0.0.1:5433/db")
    assert repr(store) == "PostgresStore('127.0.0.1:5433/db', schema='keel')"


# --- concurrency across stores (as across processes) ----------------------------------------


async def test_exclusive_starts_from_many_stores_one_wins(
    postgres_url: str, postgres_schema: str
) -> None:
    async with PostgresStore(postgres_url, schema=postgres_schema) as first:
        await first.upgrade()
    stores = [PostgresStore(postgres_url, schema=postgres_schema) for _ in range(4)]
    try:
        for round_ in range(3):
            thread_id = f"thread-{round_}"
            outcomes = await asyncio.gather(
                *(
                    store.start_run(
                        f"r{round_}-{n}",
                        [started(f"r{round_}-{n}", thread_id=thread_id)],
                        record=record(f"r{round_}-{n}", thread_id=thread_id, holds_thread=True),
                        owner=f"w{n}",
                        ttl_s=60,
                        exclusive=True,
                    )
                    for n, store in enumerate(stores)
                ),
                return_exceptions=True,
            )
            winners = [o for o in outcomes if isinstance(o, Lease)]
            assert len(winners) == 1, outcomes
            assert all(isinstance(o, (Lease, ThreadBusyError)) for o in outcomes), outcomes
            assert len(await stores[0].list_runs(thread_id=thread_id)) == 1
    finally:
        for store in stores:
            await store.close()


# --- pgbouncer ------------------------------------------------------------------------------


@pytest.fixture
def pgbouncer_url(postgres_url: str) -> Iterator[str]:
    """A private pgbouncer in transaction mode in front of the test database."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    require_service(
        "pgbouncer (the connection pooler)",
        binary is not None,
        "install it with: apt-get install pgbouncer",
    )
    assert binary is not None
    server = psycopg.conninfo.conninfo_to_dict(postgres_url)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # pgbouncer refuses to run as root; as root it is started as 'nobody', who must be able to
    # read its files (pytest's tmp_path is private to root).
    directory = Path(tempfile.mkdtemp(prefix="keel-pgbouncer-"))
    directory.chmod(0o755)
    (directory / "users.txt").write_text(f'"{server.get("user", "postgres")}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={server.get('host', '127.0.0.1')} port={server.get('port', 5432)}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\n"
        # Fewer server connections than the store's pool: transactions of different client
        # connections share server connections, so any session state would leak or vanish.
        "default_pool_size = 2\n"
        "max_client_conn = 50\n"
        "server_reset_query =\n"
    )
    for path in directory.iterdir():
        path.chmod(0o644)
    command = [binary, str(config)]
    if os.geteuid() == 0:
        command = [binary, "-u", "nobody", str(config)]
    log_path = directory / "log.txt"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port, timeout_s=0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pgbouncer did not start: {log_path.read_text()}")
            time.sleep(0.05)
        user = server.get("user", "postgres")
        yield f"postgresql://{user}@127.0.0.1:{port}/{server.get('dbname', 'test')}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


async def test_the_store_works_behind_pgbouncer_in_transaction_mode(
    pgbouncer_url: str, postgres_url: str, postgres_schema: str
) -> None:
    async with PostgresStore(
        pgbouncer_url, schema=postgres_schema, max_size=6, listen_url=postgres_url
    ) as store:
        assert await store.upgrade() == [1, 3, 4, 5]
        lease = await store.start_run(
            "run-1", [started()], record=record(), owner="w", ttl_s=60, exclusive=True
        )
        assert lease is not None
        seq = 1
        for step in range(1, 4):
            seq = await store.append(
                "run-1", tool_step(step), expected_seq=seq, record=record(), lease=lease
            )
        await store.append(
            "run-1",
            finishing_step(4),
            expected_seq=seq,
            record=record(status="completed"),
            thread_messages=conversation(),
            lease=lease,
        )
        await store.renew_lease(lease, ttl_s=60)
        await store.release_lease(lease)
        assert len(await store.load("run-1")) == 12
        assert (await store.thread_history("thread-1")).last_seq == 4
        again = await store.acquire_lease("run-1", owner="w2", ttl_s=60)
        assert again.token == 2
        # Watching listens on the direct connection: another store's submit wakes it.
        async with (
            PostgresStore(pgbouncer_url, schema=postgres_schema) as other,
            store.watch(None) as queue,
        ):
            await other.start_run(
                "queued",
                [started("queued", thread_id="tq")],
                record=record("queued", thread_id="tq", status="queued"),
                owner=None,
                ttl_s=60,
            )
            assert await queue.wait(5)
            assert store._listeners.listening()

        # Many clients at once over two server connections: exclusive starts and appends.
        async def run(n: int) -> None:
            run_id = f"p{n}"
            try:
                run_lease = await store.start_run(
                    run_id,
                    [started(run_id, thread_id=f"t{n % 3}")],
                    record=record(run_id, thread_id=f"t{n % 3}", holds_thread=True),
                    owner=run_id,
                    ttl_s=60,
                    exclusive=True,
                )
            except ThreadBusyError:
                return
            at = 1
            for step in range(3):
                at = await store.append(
                    run_id,
                    tool_step(step),
                    expected_seq=at,
                    record=record(run_id, thread_id=f"t{n % 3}"),
                    lease=run_lease,
                )

        await asyncio.gather(*(run(n) for n in range(9)))
        for thread in ("t0", "t1", "t2"):
            runs = await store.list_runs(thread_id=thread)
            assert len(runs) == 1
            assert len(await store.load(runs[0].run_id)) == 10
    # The test's own direct connection sees what went through the pooler.
    async with PostgresStore(postgres_url, schema=postgres_schema) as direct:
        assert len(await direct.load("run-1")) == 12


# --- the extra ------------------------------------------------------------------------------


def test_without_psycopg_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "keel.stores._postgres")
    with pytest.raises(MissingExtraError) as caught:
        importlib.import_module("keel.stores._postgres")
    assert (caught.value.package, caught.value.extra) == ("psycopg", "postgres")
    assert "The PostgreSQL store needs the 'psycopg' package" in str(caught.value)
    assert "pip install 'keel-runtime[postgres]'" in str(caught.value)
    import keel.stores

    with pytest.raises(MissingExtraError):
        _ = keel.stores.PostgresStore


def test_the_lazy_export_is_the_store() -> None:
    import keel.stores

    assert keel.stores.PostgresStore is PostgresStore
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = keel.stores.Nope


def test_postgres_where_names_host_port_and_database() -> None:
    assert postgres_where("postgresql://u:p@h:6543/db") == "h:6543/db"
