"""Encryption at rest on SQLite and PostgreSQL: what the rows hold, rotation, wrong keys.

Runs are made by a real :class:`keel.Runtime` that opens its own store from settings (as the
``keel`` command does), with a scripted model whose tool call and answer carry a planted
secret; the test then reads the rows with a plain connection beside the store's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from keel import Agent, KeelSettings, Runtime, tool
from keel.errors import StoreError
from keel.ports import Store
from keel.stores import Keyring, MemoryStore, Rotation, open_store
from keel.stores._sql.rotation import Rotator, rotate
from keel.stores._sql.store import SQLStore
from keel.testing import ScriptedModel, call

SECRET = "PLANTED-7c1e9"
# Fixed keys, so that a failing test can be replayed; generated once with Keyring.generate_key.
KEY_A = "so3g0y7CC_KF3ug305qvcyZX93H8GU17QoE1RPOQ5uE="
KEY_B = "z0Hzx3NHQQNY5TZvdxWDPIOjQRC5_QqyUjX8LKKaupg="
KEY_C = "gehhQNaqV0_ENtZ9AdQHdY181K2AnwNRkQR4xIbj1lA="

_TABLES = ("runs", "events", "thread_messages")


@dataclass
class Backend:
    """A database for one test, and a plain connection to look at its rows."""

    kind: str
    location: str
    schema: str
    conn: Any

    def settings(self, keys: str | None) -> KeelSettings:
        return KeelSettings(
            db=self.location,
            db_schema=self.schema,
            encryption_keys=None if keys is None else SecretStr(keys),
        )

    def open(self, keys: str | None) -> SQLStore:
        keyring = Keyring.from_settings(self.settings(keys))
        store = open_store(self.location, schema=self.schema, keyring=keyring)
        assert isinstance(store, SQLStore)
        return store

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            return list(self.conn.execute(f"SELECT * FROM {table}"))
        query = sql.SQL("SELECT * FROM {}.{}").format(
            sql.Identifier(self.schema), sql.Identifier(table)
        )
        return list(self.conn.execute(query).fetchall())

    def text(self) -> str:
        """Everything the three tables hold, as one string."""
        return "\n".join(repr(row) for table in _TABLES for row in self.rows(table))

    def stored_values(self) -> list[str]:
        """The values a keyring encrypts: bodies, and the runs' content fields."""
        values = [row[-1] for row in self.rows("events")]
        values += [row[-1] for row in self.rows("thread_messages")]
        for run_id in [row[0] for row in self.rows("runs")]:
            values += [v for v in self.run_fields(run_id) if v is not None]
        return values

    def run_fields(self, run_id: str) -> tuple[str, str | None, str | None]:
        statement = "SELECT input, output_preview, reason FROM {} WHERE run_id = {}"
        if self.kind == "sqlite":
            row = self.conn.execute(statement.format("runs", "?"), (run_id,)).fetchone()
        else:
            table = f'"{self.schema}".runs'
            row = self.conn.execute(statement.format(table, "%s"), (run_id,)).fetchone()
        return (row[0], row[1], row[2])

    def set_input(self, run_id: str, value: str) -> None:
        """Write a run's input as another process would, beside the store."""
        if self.kind == "sqlite":
            with self.conn:
                self.conn.execute("UPDATE runs SET input = ? WHERE run_id = ?", (value, run_id))
        else:
            self.conn.execute(
                sql.SQL("UPDATE {}.runs SET input = %s WHERE run_id = %s").format(
                    sql.Identifier(self.schema)
                ),
                (value, run_id),
            )


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "keel.db"
        conn = sqlite3.connect(path)
        try:
            yield Backend("sqlite", str(path), "keel", conn)
        finally:
            conn.close()
        return
    url: str = request.getfixturevalue("postgres_url")
    schema: str = request.getfixturevalue("postgres_schema")
    admin: psycopg.Connection[tuple[Any, ...]] = request.getfixturevalue("admin_conn")
    yield Backend("postgres", url, schema, admin)


def agent() -> Agent[str]:
    @tool
    def lookup(order_id: str) -> str:
        """Look an order up."""
        return f"order {order_id}: shipped to {SECRET}-result"

    model = ScriptedModel(
        [call("lookup", order_id=f"{SECRET}-argument"), f"It ships today ({SECRET}-answer)"]
    )
    return Agent(name="support", model=model, tools=[lookup])


async def run_once(backend: Backend, keys: str | None, thread: str = "t1") -> str:
    """A run through a runtime that opens its own store from settings; its id."""
    async with Runtime(settings=backend.settings(keys)) as runtime:
        result = await runtime.run(agent(), f"Where is my order? {SECRET}-input", thread=thread)
    assert result.status == "completed"
    return result.run_id


async def snapshot(store: Store) -> dict[str, Any]:
    """Everything a store gives back: each run's record and journal, each thread's history."""
    records = await store.list_runs(limit=None)
    return {
        "records": records,
        "journals": {r.run_id: await store.load(r.run_id) for r in records},
        "threads": {t: await store.thread_history(t) for t in {r.thread_id for r in records}},
    }


@pytest.fixture
async def keyed(backend: Backend) -> tuple[Backend, str]:
    """The backend with one run written under key A."""
    return backend, await run_once(backend, KEY_A)


async def test_the_rows_hold_no_plaintext_and_runs_still_list_by_status_thread_and_agent(
    keyed: tuple[Backend, str],
) -> None:
    backend, run_id = keyed
    async with Runtime(settings=backend.settings(KEY_A)) as runtime:
        queued = await runtime.submit(agent(), f"And this one? {SECRET}-queued", thread="t2")

    stored = backend.text()
    assert SECRET not in stored
    assert all(value.startswith("enc:1:") for value in backend.stored_values())
    run_row = backend.rows("runs")[0]
    assert "support" in run_row  # the summary stays plain
    async with backend.open(KEY_A) as store:
        completed = await store.list_runs(status="completed")
        assert [r.run_id for r in completed] == [run_id]
        assert completed[0].input == f"Where is my order? {SECRET}-input"
        assert completed[0].output_preview is not None
        assert SECRET in completed[0].output_preview
        assert [r.run_id for r in await store.list_runs(thread_id="t2")] == [queued]
        assert await store.claim_runs(owner="w", ttl_s=60, limit=5, agents=["other"]) == []
        claimed = await store.claim_runs(owner="w", ttl_s=60, limit=5, agents=["support"])
        assert [lease.run_id for lease in claimed] == [queued]
        journal = repr(await store.load(run_id))
        for part in ("argument", "result", "answer", "input"):
            assert f"{SECRET}-{part}" in journal


async def test_rotating_to_a_new_key_loses_nothing(keyed: tuple[Backend, str]) -> None:
    backend, _ = keyed
    await run_once(backend, f"{KEY_B},{KEY_A}")  # the same thread, written with B
    async with backend.open(f"{KEY_B},{KEY_A}") as store:
        before = await snapshot(store)
        values = len(backend.stored_values())

        done = await store.rotate_keys(batch_size=3)  # several batches per table

        assert done.rotated > 0
        assert done.current > 0  # the second run's values were written with B
        assert done.rotated + done.current == values
        assert (done.plain, done.encrypted, done.changed) == (0, 0, 0)
        again = await store.rotate_keys()
        assert again == Rotation(current=values)
    async with backend.open(KEY_B) as store:
        assert await snapshot(store) == before
    async with backend.open(KEY_A) as store:
        with pytest.raises(StoreError, match="KEEL_ENCRYPTION_KEYS"):
            await store.list_runs()


@pytest.mark.parametrize("keys", [KEY_C, None])
async def test_reading_without_the_key_says_which_setting_to_fix(
    keyed: tuple[Backend, str], keys: str | None
) -> None:
    backend, run_id = keyed
    async with backend.open(keys) as store:
        for read in (store.load(run_id), store.get_run(run_id), store.thread_history("t1")):
            with pytest.raises(StoreError, match="KEEL_ENCRYPTION_KEYS") as caught:
                await read
            error = caught.value
            # No traceback from cryptography: nothing chained, or the context suppressed.
            assert error.__cause__ is None
            assert error.__context__ is None or error.__suppress_context__
            assert KEY_A not in str(error)
            assert KEY_C not in str(error)


async def test_rows_written_before_a_key_was_configured_still_read_and_can_be_encrypted(
    backend: Backend,
) -> None:
    await run_once(backend, None)
    assert SECRET in backend.text()
    async with backend.open(None) as store:
        plain = await snapshot(store)
    values = len(backend.stored_values())
    async with backend.open(KEY_A) as store:
        assert await snapshot(store) == plain
        assert await store.rotate_keys() == Rotation(plain=values)
        assert SECRET in backend.text()

        done = await store.rotate_keys(encrypt_plain=True, batch_size=4)

        assert done == Rotation(encrypted=values)
        assert SECRET not in backend.text()
        assert await snapshot(store) == plain


async def test_rotation_leaves_a_value_another_process_changed_meanwhile(
    keyed: tuple[Backend, str],
) -> None:
    backend, run_id = keyed
    old_process = Keyring([KEY_A])
    async with backend.open(f"{KEY_B},{KEY_A}") as store:
        keyring = store.keyring
        assert keyring is not None
        meddled: list[str] = []

        async def run(task: Any) -> Any:
            result = await store._run(task)
            if task.action == "read runs to rotate keys" and not meddled:
                # Between the read and the rewrite, an append of a process that still
                # encrypts with A changes the run's input.
                meddled.append(old_process.encrypt("changed meanwhile"))
                backend.set_input(run_id, meddled[0])
            return result

        done = await rotate(
            run,
            Rotator(store._programs.sql),
            keyring,
            where="here",
            encrypt_plain=False,
            batch_size=100,
        )

        assert done.changed == 1
        assert backend.run_fields(run_id)[0] == meddled[0]  # not overwritten with stale data
        assert (await store.get_run(run_id)).input == "changed meanwhile"


async def test_the_memory_store_keeps_nothing_at_rest_and_ignores_the_keyring() -> None:
    store = open_store("memory", keyring=Keyring([KEY_A]))
    assert isinstance(store, MemoryStore)
    await store.close()
