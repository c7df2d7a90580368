"""Idempotency keys on SQLite: two store objects on one file (two processes) starting runs
with one key create one run; and a version 4 database gains the keys."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from keel.errors import RunExistsError
from keel.stores import SQLiteStore
from keel.stores._sql import sqlite_schema

from ._data import record, started
from .test_contract_keys import keyed, run_ids


async def test_two_stores_on_one_file_racing_with_one_key_create_one_run(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    async with SQLiteStore(path) as one, SQLiteStore(path) as two:
        await one.upgrade()
        attempts = [
            keyed(store, f"{name}-{i}", "shared", thread_id=f"{name}-{i}")
            for i in range(4)
            for name, store in (("one", one), ("two", two))
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        created = await run_ids(two)
        assert len(created) == 1
        refused = [o for o in outcomes if isinstance(o, RunExistsError)]
        assert len(refused) == 7
        assert {r.run_id for r in refused} == set(created)


async def test_a_version_4_database_gains_idempotency_keys(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("BEGIN")
        conn.execute(sqlite_schema.CREATE_MIGRATIONS_TABLE)
        for migration in sqlite_schema.MIGRATIONS[:4]:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, 0)",
                (migration.version, migration.name),
            )
        conn.execute("COMMIT")
    async with SQLiteStore(path) as store:
        await store.append("old", [started("old")], expected_seq=0, record=record("old"))
        await keyed(store, "new", "k", thread_id="t2")
        with pytest.raises(RunExistsError):
            await keyed(store, "again", "k", thread_id="t3")
        assert await store.delete_runs(["old", "new"]) == 2
        assert await store.upgrade() == []
