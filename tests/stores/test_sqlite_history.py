"""Decision history on SQLite: a version 3 database gains it, and every filtered listing reads
an index in order instead of sorting the matches."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from keel._core.codec import encode_event
from keel.ports import Feedback, RunQuery
from keel.stores import SQLiteStore
from keel.stores._sql import sqlite_schema
from keel.stores._sql.history_sql import list_runs_template
from keel.stores._sql.sqlite import SQLITE
from keel.stores._sql.sqlite_schema import MIGRATIONS

from ._data import T0, record, started, tool_step


def make_version_3_database(path: Path) -> None:
    """A database as schema 3 left it, with one paused run, written by plain SQL."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("BEGIN")
        conn.execute(sqlite_schema.CREATE_MIGRATIONS_TABLE)
        for migration in MIGRATIONS[:3]:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, 0)",
                (migration.version, migration.name),
            )
        conn.execute(
            "INSERT INTO runs (run_id, thread_id, agent, model, status, created_at, updated_at, "
            "input, steps, tool_calls, input_tokens, output_tokens, last_seq, holds_thread) "
            "VALUES ('old', 'thread-1', 'weather', 'm', 'paused', ?, ?, 'hi', 0, 0, 0, 0, 1, 1)",
            (T0, T0),
        )
        first = started("old")
        conn.execute(
            "INSERT INTO events VALUES ('old', 1, ?, ?, ?)",
            (first.type, first.at, encode_event(first).decode()),
        )
        conn.execute("COMMIT")


async def test_a_version_3_database_gains_history_and_feedback(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    make_version_3_database(path)
    async with SQLiteStore(path) as store:
        old = await store.get_run("old")
        assert (old.tenant, old.user, old.tools) == (None, None, ())
        assert [r.run_id for r in await store.list_runs(RunQuery(agent="weather"))] == ["old"]
        later = record("old", status="completed", tools=("get_weather",), tenant="acme")
        await store.append("old", tool_step(1), expected_seq=1, record=later)
        assert [r.run_id for r in await store.list_runs(RunQuery(tool="get_weather"))] == ["old"]
        await store.add_feedback(Feedback(id="f", run_id="old", score=5, at=T0))
        assert [f.id for f in await store.list_feedback()] == ["f"]
    with closing(sqlite3.connect(path)) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [v for (v,) in versions] == [1, 2, 3, 4, 5]


KEYS = [
    (),
    ("agent",),
    ("agent", "status_one"),
    ("agent", "status_many"),
    ("status_one",),
    ("thread",),
    ("tenant",),
    ("tenant", "since"),
    ("user",),
    ("error",),
    ("error", "status_one"),
    ("since", "until"),
    ("since",),
    ("min_cost", "max_cost"),
    ("min_duration",),
    ("tool",),
    ("agent", "tool", "since"),
    ("thread", "tool"),
]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("paged", [False, True])
async def test_a_filtered_listing_reads_an_index_in_order(
    key: tuple[str, ...], paged: bool
) -> None:
    async with SQLiteStore(":memory:") as store:
        await store.list_runs()
        conn = store._reader
        assert conn is not None
        if paged:  # a cursor below ``until`` stands for it (Filters.key)
            key = (*(name for name in key if name != "until"), "before")
        statement = SQLITE.render(list_runs_template(key))
        params = dict.fromkeys(
            ("agent", "thread", "tenant", "user", "tool", "error", "status"), "x"
        ) | dict.fromkeys(
            ("since", "until", "min_cost", "max_cost", "min_duration", "before_at"), 1.0
        )
        params |= {"statuses": '["a", "b"]', "before_id": "r", "limit": 50, "now": 0.0}
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, params))
        assert "TEMP B-TREE" not in plan, plan
        if "tool" in key and "thread" not in key:  # run_tools, by its key
            assert plan.startswith("SCAN t") or "SEARCH t USING PRIMARY KEY" in plan, plan
        else:
            assert "USING INDEX runs_" in plan, plan
        if paged:  # the page starts at the cursor, found through the index
            assert "(created_at,run_id)<(?,?)" in plan, plan
