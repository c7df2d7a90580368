"""Deleting a user's data: every run for the user (of one tenant, when given), with its
events, thread messages and feedback, on every store; nothing while a run is being driven."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel import Agent, RunLeasedError, Runtime
from keel.errors import RunNotFoundError
from keel.ports import RunQuery
from keel.testing import ScriptedModel
from tests.stores._backends import memory_store, postgres_store, sqlite_store


def answering(*answers: str) -> Agent[str]:
    return Agent(name="desk", model=ScriptedModel(list(answers)))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    kind: str = request.param
    if kind == "memory":
        opened = memory_store()
    elif kind == "sqlite":
        opened = sqlite_store(tmp_path)
    else:
        opened = postgres_store(request.getfixturevalue("postgres_url"))
    async with opened as store, Runtime(store=store) as runtime:
        yield runtime


async def test_a_users_runs_go_with_their_messages_and_feedback(runtime: Runtime) -> None:
    mine = await runtime.run(answering("one"), "hi", thread="t", tenant="acme", user="ann")
    await runtime.add_feedback(mine.run_id, score=1)
    theirs = await runtime.run(answering("two"), "hello", thread="t", tenant="acme", user="bob")
    other_tenant = await runtime.run(answering("three"), "hey", tenant="globex", user="ann")

    deleted = await runtime.delete_user_data("ann", tenant="acme")

    assert deleted == 1
    with pytest.raises(RunNotFoundError):
        await runtime.get_run(mine.run_id)
    assert await runtime.list_feedback(run_id=mine.run_id) == []
    history = await runtime.store.thread_history("t")
    assert [m.content for m in history.messages] == ["hello", "two"]  # ann's turn is gone
    assert (await runtime.get_run(theirs.run_id)).user == "bob"
    assert (await runtime.get_run(other_tenant.run_id)).tenant == "globex"


async def test_without_a_tenant_every_tenants_runs_of_the_user_go(runtime: Runtime) -> None:
    for tenant in ("acme", "globex"):
        await runtime.run(answering("ok"), "hi", tenant=tenant, user="ann")

    assert await runtime.delete_user_data("ann") == 2
    assert (await runtime.store.list_runs(RunQuery(user="ann"))) == []
    assert await runtime.delete_user_data("ann") == 0


async def test_nothing_is_deleted_while_a_run_of_the_user_is_driven(runtime: Runtime) -> None:
    done = await runtime.run(answering("ok"), "hi", tenant="acme", user="ann")
    driven = await runtime.submit(answering("later"), "again", tenant="acme", user="ann")
    lease = await runtime.store.acquire_lease(driven, owner="elsewhere", ttl_s=60)

    with pytest.raises(RunLeasedError):
        await runtime.delete_user_data("ann", tenant="acme")

    assert (await runtime.get_run(done.run_id)).user == "ann"
    await runtime.store.release_lease(lease)
    assert await runtime.delete_user_data("ann", tenant="acme") == 2
