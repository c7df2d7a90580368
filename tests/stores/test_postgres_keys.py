"""Idempotency keys on PostgreSQL: two connections starting runs with one key create one run,
the second waiting for the first to commit; and a version 4 schema gains the keys."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from keel.errors import RunExistsError, RunNotFoundError
from keel.stores._postgres import PostgresStore
from keel.stores._sql.postgres_schema import CREATE_MIGRATIONS_TABLE, MIGRATIONS

from ._data import T0, record, started
from .test_contract_keys import keyed, run_ids

AdminConnection = psycopg.Connection[tuple[Any, ...]]


async def test_two_stores_racing_with_the_same_keys_create_one_run_per_key(
    postgres_url: str, postgres_schema: str
) -> None:
    async with (
        PostgresStore(postgres_url, schema=postgres_schema) as one,
        PostgresStore(postgres_url, schema=postgres_schema) as two,
    ):
        await one.upgrade()
        attempts = [
            keyed(store, f"{name}-{i}", f"key-{i}", thread_id=f"{name}-{i}")
            for i in range(10)
            for name, store in (("one", one), ("two", two))
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        created = await run_ids(one)
        assert sorted(r.rsplit("-", 1)[1] for r in created) == sorted(str(i) for i in range(10))
        refused = [o for o in outcomes if isinstance(o, RunExistsError)]
        assert len(refused) == 10
        assert {r.run_id for r in refused} == set(created)


def _open_key_transaction(conn: AdminConnection, schema: str) -> None:
    """In ``conn``'s open transaction: run 'holder' with key 'k', not committed yet."""
    quoted = sql.Identifier(schema).as_string(conn)
    conn.execute(
        f"INSERT INTO {quoted}.runs (run_id, thread_id, agent, model, status, created_at, "
        "updated_at, input, steps, tool_calls, input_tokens, output_tokens, last_seq) "
        "VALUES ('holder', 'other', 'weather', 'm', 'queued', %s, %s, 'hi', 0, 0, 0, 0, 0)",
        (T0, T0),
    )
    conn.execute(
        f"INSERT INTO {quoted}.run_keys (tenant, idempotency_key, run_id) "
        "VALUES ('', 'k', 'holder')"
    )


async def _waiting_for_a_lock(admin: AdminConnection, app: str) -> None:
    deadline = time.monotonic() + 10
    query = (
        "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
    )
    while not admin.execute(query, (app,)).fetchall():
        assert time.monotonic() < deadline, "the start never waited for the key"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("first_commits", [True, False], ids=["committed", "rolled-back"])
async def test_a_start_waits_for_a_key_being_written_then_follows_what_became_of_it(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection, first_commits: bool
) -> None:
    app = f"keel-test-{uuid.uuid4().hex[:8]}"
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}application_name={app}"
    async with PostgresStore(url, schema=postgres_schema) as store:
        await store.upgrade()
        with psycopg.connect(postgres_url) as first:
            _open_key_transaction(first, postgres_schema)
            # The start finds no committed key, inserts its run, then waits on the key's row.
            starting = asyncio.create_task(keyed(store, "second", "k"))
            await _waiting_for_a_lock(admin_conn, app)
            if first_commits:
                first.commit()
            else:
                first.rollback()
        if first_commits:
            with pytest.raises(RunExistsError) as refused:
                await starting
            assert refused.value.run_id == "holder"
            with pytest.raises(RunNotFoundError):  # its run was rolled back with the key
                await store.get_run("second")
            assert await run_ids(store) == ["holder"]
        else:
            await starting
            assert await run_ids(store) == ["second"]


async def test_a_version_4_schema_gains_idempotency_keys(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    quoted = sql.Identifier(postgres_schema).as_string(admin_conn)
    with admin_conn.transaction():
        admin_conn.execute(f"CREATE SCHEMA {quoted}")
        admin_conn.execute(CREATE_MIGRATIONS_TABLE.replace("{schema}", quoted))
        for migration in MIGRATIONS:
            if migration.version > 4:
                break
            for statement in migration.statements:
                admin_conn.execute(statement.replace("{schema}", quoted))
            admin_conn.execute(
                f"INSERT INTO {quoted}.schema_migrations VALUES (%s, %s, 0)",
                (migration.version, migration.name),
            )
    async with PostgresStore(postgres_url, schema=postgres_schema) as store:
        await store.append("old", [started("old")], expected_seq=0, record=record("old"))
        await keyed(store, "new", "k", thread_id="t2")
        with pytest.raises(RunExistsError):
            await keyed(store, "again", "k", thread_id="t3")
        assert await store.delete_runs(["old", "new"]) == 2
        assert await store.upgrade() == []
