"""Fixtures of the server tests: an app on a real store, served over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from keel import KeelSettings
from keel.server import ServerSettings, create_app, open_key_store
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


KeyMaker = Callable[..., str]


@pytest.fixture
def make_key(db: KeelSettings) -> KeyMaker:
    """Creates an API key beside the app's store (as ``keel keys create`` does) and returns
    it; keywords as for ``KeyStore.create`` (default scopes: all)."""

    def make(**options: Any) -> str:
        async def create() -> str:
            keys = open_key_store(db.db, schema=db.db_schema)
            try:
                chosen = {"scopes": ["run", "read", "approve", "admin"], **options}
                return (await keys.create(**chosen)).secret
            finally:
                await keys.aclose()

        return asyncio.run(create())

    return make


@pytest.fixture
def revoke_key(db: KeelSettings) -> Callable[[str], None]:
    """Revokes a key given as created (its id is in it)."""

    def revoke(secret: str) -> None:
        async def run() -> None:
            keys = open_key_store(db.db, schema=db.db_schema)
            try:
                assert await keys.revoke(secret.split("_")[1])
            finally:
                await keys.aclose()

        asyncio.run(run())

    return revoke


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
