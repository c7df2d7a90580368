"""Decision history on PostgreSQL: a version 3 schema gains it, and the listing's statements
are valid for every set of filters."""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
from psycopg import sql

from keel._core.codec import encode_event
from keel.ports import Feedback, RunQuery
from keel.stores._postgres import PostgresStore
from keel.stores._sql.postgres_schema import CREATE_MIGRATIONS_TABLE, MIGRATIONS

from ._data import T0, record, started, tool_step

AdminConnection = psycopg.Connection[tuple[Any, ...]]


def make_version_3_schema(admin: AdminConnection, schema: str) -> None:
    """A schema as version 3 left it, with one paused run, written by plain SQL."""
    quoted = sql.Identifier(schema).as_string(admin)
    with admin.transaction():
        admin.execute(f"CREATE SCHEMA {quoted}")
        admin.execute(CREATE_MIGRATIONS_TABLE.replace("{schema}", quoted))
        for migration in MIGRATIONS[:2]:
            for statement in migration.statements:
                admin.execute(statement.replace("{schema}", quoted))
            admin.execute(
                f"INSERT INTO {quoted}.schema_migrations VALUES (%s, %s, 0)",
                (migration.version, migration.name),
            )
        admin.execute(
            f"INSERT INTO {quoted}.runs (run_id, thread_id, agent, model, status, created_at, "
            "updated_at, input, steps, tool_calls, input_tokens, output_tokens, last_seq, "
            "holds_thread) VALUES ('old', 'thread-1', 'weather', 'm', 'paused', %s, %s, 'hi', "
            "0, 0, 0, 0, 1, true)",
            (T0, T0),
        )
        first = started("old")
        admin.execute(
            f"INSERT INTO {quoted}.events VALUES ('old', 1, %s, %s, %s)",
            (first.type, first.at, encode_event(first).decode()),
        )


async def test_a_version_3_schema_gains_history_and_feedback(
    postgres_url: str, postgres_schema: str, admin_conn: AdminConnection
) -> None:
    make_version_3_schema(admin_conn, postgres_schema)
    async with PostgresStore(postgres_url, schema=postgres_schema) as store:
        old = await store.get_run("old")
        assert (old.tenant, old.user, old.tools) == (None, None, ())
        assert [r.run_id for r in await store.list_runs(RunQuery(agent="weather"))] == ["old"]
        later = record("old", status="completed", tools=("get_weather",), tenant="acme")
        await store.append("old", tool_step(1), expected_seq=1, record=later)
        found = await store.list_runs(RunQuery(tool="get_weather", tenant="acme"))
        assert [r.run_id for r in found] == ["old"]
        await store.add_feedback(Feedback(id="f", run_id="old", score=5, at=T0))
        assert [f.id for f in await store.list_feedback()] == ["f"]
        assert await store.upgrade() == []
    versions = admin_conn.execute(
        sql.SQL("SELECT version FROM {}.schema_migrations ORDER BY version").format(
            sql.Identifier(postgres_schema)
        )
    ).fetchall()
    assert versions == [(1,), (3,), (4,), (5,)]


_NAMES = ("agent", "thread", "tenant", "user", "tool", "error", "since", "until", "min_cost")


async def test_every_combination_of_filters_is_a_valid_statement(
    postgres_url: str, postgres_schema: str
) -> None:
    values: dict[str, Any] = {
        "agent": "a",
        "thread": "t",
        "tenant": "x",
        "user": "u",
        "tool": "refund",
        "error": "e",
        "since": T0,
        "until": T0 + 5,
        "min_cost": 0.0,
    }
    async with PostgresStore(postgres_url, schema=postgres_schema) as store:
        await store.append(
            "r1",
            [started("r1")],
            expected_seq=0,
            record=record(
                "r1",
                agent="a",
                thread_id="t",
                tenant="x",
                user="u",
                tools=("refund",),
                reason_code="e",
                cost_usd=0.5,
                created_at=T0 + 1,
            ),
        )
        for size in (1, 2, 3):
            for names in itertools.combinations(_NAMES, size):
                query = RunQuery(**{name: values[name] for name in names})
                for status in (None, "running", ("running", "failed")):
                    runs = await store.list_runs(query, status=status, before=f"{T0 + 2!r}/z")
                    assert [r.run_id for r in runs] == ["r1"], (names, status)
