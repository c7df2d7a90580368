"""A real PostgreSQL server for tests, and one fresh schema per test.

The fixtures are registered for the whole suite in ``tests/conftest.py``.

The server is ``postgresql://postgres@127.0.0.1:5432/test`` unless ``KEEL_TEST_POSTGRES_URL``
names another. Without one, the PostgreSQL tests skip (or fail under
``KEEL_REQUIRE_SERVICES=1``, as in CI): see :mod:`tests.services`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.services import require_service

POSTGRES_URL_ENV = "KEEL_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_where(url: str) -> str:
    """``host:port/db`` of a URL, for messages (never its password)."""
    params = conninfo_to_dict(url)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname')}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test server's URL, once it answered; skips or fails (CI) when it does not."""
    url = os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
    reason = ""
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
    require_service(
        f"PostgreSQL at {postgres_where(url)} ({reason})",
        not reason,
        f"start a PostgreSQL server there (database 'test', user 'postgres', trust auth), or "
        f"point {POSTGRES_URL_ENV} at one",
    )
    return url


def new_schema_name() -> str:
    """A schema name no other test uses."""
    return f"keel_test_{uuid.uuid4().hex[:12]}"


async def drop_schema(url: str, schema: str) -> None:
    """Drop a test schema and everything in it."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@pytest.fixture
async def postgres_schema(postgres_url: str) -> AsyncIterator[str]:
    """A fresh schema name for one test, dropped (with its tables) afterwards."""
    schema = new_schema_name()
    try:
        yield schema
    finally:
        await drop_schema(postgres_url, schema)


@pytest.fixture
def admin_conn(postgres_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain connection beside the store's, to look at data or terminate backends."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn
