"""Schedule stores of every kind, and a runtime whose agent answers at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel import Agent, Runtime
from keel.schedules import ScheduleStore, open_schedule_store
from keel.stores import open_store
from keel.testing import FakeClock, FunctionModel, MemoryStore
from tests.postgres import drop_schema, new_schema_name

START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def reporter() -> Agent[str]:
    return Agent(name="reporter", model=FunctionModel(lambda request: "report"))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str | None]]:
    """``(location, schema)`` of a fresh database of each kind."""
    if request.param == "memory":
        yield "memory", None
    elif request.param == "sqlite":
        yield str(tmp_path / "keel.db"), None
    else:
        url, schema = request.getfixturevalue("postgres_url"), new_schema_name()
        try:
            yield url, schema
        finally:
            await drop_schema(url, schema)


@pytest.fixture
async def schedule_store(backend: tuple[str, str | None]) -> AsyncIterator[ScheduleStore]:
    store = open_schedule_store(backend[0], schema=backend[1])
    yield store
    await store.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def runtime(backend: tuple[str, str | None], clock: FakeClock) -> AsyncIterator[Runtime]:
    """A runtime on the backend's database, knowing the ``reporter`` agent."""
    location, schema = backend
    store = MemoryStore() if location == "memory" else open_store(location, schema=schema or "keel")
    async with Runtime(store=store, agents=[reporter()], clock=clock) as made:
        yield made
    await store.close()
