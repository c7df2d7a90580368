"""The backends the contract suite runs over, and their fixtures.

Each backend is a factory that opens a fresh, empty store. The memory store round-trips every
event through JSON (``check_json=True``), so data no durable store would keep fails here too.
PostgreSQL needs a server (see ``tests/postgres.py``); each store gets its own schema.

Lease expiry is real time: a lease meant to expire gets ``SHORT_TTL`` and the test sleeps past
it; a lease meant to stay live gets ``LONG_TTL``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from keel.ports import Store
from keel.stores import MemoryStore, SQLiteStore
from tests.postgres import drop_schema, new_schema_name

__all__ = [
    "BACKENDS",
    "EXPIRY_WAIT",
    "LONG_TTL",
    "SHORT_TTL",
    "THREAD_SAFE_BACKENDS",
    "StoreFactory",
    "memory_store",
    "open_store",
    "postgres_store",
    "sqlite_store",
    "store",
]

StoreFactory = Callable[[], AbstractAsyncContextManager[Store]]
"""Opens a fresh, empty store."""

SHORT_TTL = 0.2  # a lease the test lets expire
EXPIRY_WAIT = 0.3  # sleeping this long expires a SHORT_TTL lease
LONG_TTL = 60.0  # a lease that stays live for the whole test


@asynccontextmanager
async def memory_store() -> AsyncIterator[Store]:
    store = MemoryStore(check_json=True)
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def sqlite_store(directory: Path) -> AsyncIterator[Store]:
    store = SQLiteStore(directory / "keel.db")
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def postgres_store(url: str) -> AsyncIterator[Store]:
    from keel.stores._postgres import PostgresStore

    schema = new_schema_name()
    store = PostgresStore(url, schema=schema)
    try:
        yield store
    finally:
        await store.close()
        await drop_schema(url, schema)


BACKENDS = ["memory", "sqlite", "postgres"]
# Stores that one object may serve to several threads, each with its own event loop.
THREAD_SAFE_BACKENDS = ["memory", "sqlite"]


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    kind: str = request.param
    if kind == "memory":
        return memory_store
    if kind == "sqlite":
        return lambda: sqlite_store(tmp_path)
    url: str = request.getfixturevalue("postgres_url")
    return lambda: postgres_store(url)


@pytest.fixture
async def store(open_store: StoreFactory) -> AsyncIterator[Store]:
    async with open_store() as store:
        yield store
