"""Fixtures of the server tests: an app on a real store, served over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from keel import KeelSettings
from keel.server import KeyStore, ServerSettings, create_app, open_key_store
from tests.postgres import drop_schema, new_schema_name
from tests.server.agents import GATES, agents
from tests.server.live import AppFactory, serving


@pytest.fixture(params=["sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeelSettings]:
    """Where the app keeps runs: a SQLite file (``params=["sqlite", "postgres"]`` through
    ``pytest.mark.parametrize("db", [...], indirect=True)`` for PostgreSQL too)."""
    if request.param == "sqlite":
        yield KeelSettings(db=str(tmp_path / "keel.db"))
        return
    url: str = request.getfixturevalue("postgres_url")
    schema = new_schema_name()
    try:
        yield KeelSettings(db=url, db_schema=schema)
    finally:
        asyncio.run(drop_schema(url, schema))


@pytest.fixture
def keys(db: KeelSettings) -> KeyStore:
    """The key store beside the app's store (the same file or schema)."""
    return open_key_store(db.db, schema=db.db_schema)


@pytest.fixture
def make_app(db: KeelSettings) -> AppFactory:
    """An app serving the test agents on ``db``; keywords are server settings."""

    def make(**settings: Any) -> FastAPI:
        chosen = {"grace_s": 0.2, "wait_s": 10.0, **settings}
        return create_app(agents=agents, settings=ServerSettings(**chosen), keel_settings=db)

    return make


@pytest.fixture(autouse=True)
def _open_gates() -> Iterator[None]:
    """Gates left closed by a test are opened afterwards, so no run stays stuck."""
    yield
    for gate in GATES.values():
        gate.set()
    GATES.clear()


@pytest.fixture
def base_url(make_app: AppFactory) -> Iterator[str]:
    """The default app, served over HTTP."""
    with serving(make_app()) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    """A client of the default app (as the local operator: no keys exist)."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client of one app shared by a module's tests (on SQLite, as the local operator), for
    tests that do not depend on what other tests stored."""
    where = KeelSettings(db=str(tmp_path_factory.mktemp("shared") / "keel.db"))
    app = create_app(
        agents=agents, settings=ServerSettings(grace_s=0.2, wait_s=10.0), keel_settings=where
    )
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client
