"""Idempotent submit and run: a request repeated with its idempotency key (after a crash, a lost
answer, a redelivered message, from another process) gets the run the first one created, and
no second run is ever made."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from keel import Agent, Runtime, StoreError, UsageError
from keel.messages import ModelRequest
from keel.ports import Lease
from keel.stores import MemoryStore
from keel.testing import FunctionModel
from tests.stores._backends import StoreFactory, open_store

__all__ = ["open_store"]  # the fixture: memory, SQLite and PostgreSQL


class Counted:
    """A model that answers "done" and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: ModelRequest) -> str:
        self.calls += 1
        return "done"


def agent(name: str = "support", model: Counted | None = None) -> Agent[str]:
    return Agent(name=name, model=FunctionModel(model or Counted()))


async def run_count(runtime: Runtime) -> int:
    return len(await runtime.store.list_runs(limit=None))


async def test_a_repeated_submit_returns_the_first_run(open_store: StoreFactory) -> None:
    support = agent()
    async with open_store() as store, Runtime(store=store) as runtime:
        first = await runtime.submit(support, "Where is order 1043?", idempotency_key="msg-1")
        again = await runtime.submit(support, "Where is order 1043?", idempotency_key="msg-1")
        other = await runtime.submit(support, "Where is order 1043?", idempotency_key="msg-2")
        assert again == first
        assert other != first
        assert await run_count(runtime) == 2


async def test_concurrent_submits_with_one_key_make_one_run(open_store: StoreFactory) -> None:
    support = agent()
    async with open_store() as store, Runtime(store=store) as runtime:
        ids = await asyncio.gather(
            *(runtime.submit(support, "Hi", idempotency_key="same") for _ in range(2))
        )
        assert ids[0] == ids[1]
        assert await run_count(runtime) == 1


async def test_keys_are_scoped_by_tenant() -> None:
    support = agent()
    async with Runtime(store="memory") as runtime:
        acme = await runtime.submit(support, "Hi", tenant="acme", idempotency_key="k")
        globex = await runtime.submit(support, "Hi", tenant="globex", idempotency_key="k")
        nobody = await runtime.submit(support, "Hi", idempotency_key="k")
        assert len({acme, globex, nobody}) == 3
        assert await runtime.submit(support, "Hi", tenant="acme", idempotency_key="k") == acme


async def test_another_process_gets_the_same_run(tmp_path: Path) -> None:
    support = agent()
    path = tmp_path / "keel.db"
    async with Runtime(store=path) as web, Runtime(store=path) as other_host:
        first = await web.submit(support, "Hi", idempotency_key="request-7")
        assert await other_host.submit(support, "Hi", idempotency_key="request-7") == first
        assert await run_count(web) == 1


class LosesTheAnswer(MemoryStore):
    """Commits the first start, then fails as a lost connection would: the run is durable but
    its caller never hears so."""

    def __init__(self) -> None:
        super().__init__(check_json=True)
        self.lost = False

    async def start_run(self, run_id: str, events: Any, **options: Any) -> Lease | None:
        lease = await super().start_run(run_id, events, **options)
        if not self.lost:
            self.lost = True
            raise StoreError("the connection was lost after the commit")
        return lease


async def test_a_submit_whose_answer_was_lost_is_repeated_without_a_second_run() -> None:
    support = agent()
    async with LosesTheAnswer() as store, Runtime(store=store) as runtime:
        with pytest.raises(StoreError, match="lost after the commit"):
            await runtime.submit(support, "Hi", idempotency_key="msg-1")
        run_id = await runtime.submit(support, "Hi", idempotency_key="msg-1")
        records = await store.list_runs(limit=None)
        assert [r.run_id for r in records] == [run_id]


async def test_a_key_used_for_another_agent_is_refused() -> None:
    async with Runtime(store="memory") as runtime:
        first = await runtime.submit(agent("support"), "Hi", idempotency_key="k")
        with pytest.raises(UsageError, match=f"already used for run {first} of agent 'support'"):
            await runtime.submit(agent("billing"), "Hi", idempotency_key="k")
        with pytest.raises(UsageError, match="of agent 'support', not 'billing'"):
            await runtime.run(agent("billing"), "Hi", idempotency_key="k")
        assert await run_count(runtime) == 1


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        ("", "non-empty str of at most 255 characters"),
        ("x" * 256, "got 256 characters"),
        ("line\nbreak", "control characters"),
        (1043, "got 1043"),
    ],
)
async def test_a_bad_key_is_refused_with_the_rule(key: Any, complaint: str) -> None:
    async with Runtime(store="memory") as runtime:
        with pytest.raises(UsageError, match=complaint):
            await runtime.submit(agent(), "Hi", idempotency_key=key)
        with pytest.raises(UsageError, match=complaint):
            await runtime.run(agent(), "Hi", idempotency_key=key)
        assert await run_count(runtime) == 0


async def test_the_longest_key_is_accepted() -> None:
    support = agent()
    async with Runtime(store="memory") as runtime:
        key = "k" * 255
        first = await runtime.submit(support, "Hi", idempotency_key=key)
        assert await runtime.submit(support, "Hi", idempotency_key=key) == first


async def test_deleting_the_run_frees_its_key() -> None:
    support = agent()
    async with Runtime(store="memory") as runtime:
        first = await runtime.submit(support, "Hi", idempotency_key="k")
        await runtime.store.delete_runs([first])
        assert await runtime.submit(support, "Hi", idempotency_key="k") != first


# -- run() -----------------------------------------------------------------------------------


async def test_a_repeated_run_returns_the_first_runs_result() -> None:
    model = Counted()
    support = agent(model=model)
    async with Runtime(store="memory") as runtime:
        first = await runtime.run(support, "Hi", idempotency_key="k")
        again = await runtime.run(support, "Hi", idempotency_key="k")
        assert (again.run_id, again.status, again.output) == (first.run_id, "completed", "done")
        assert model.calls == 1
        assert await run_count(runtime) == 1


async def test_concurrent_runs_with_one_key_drive_one_run() -> None:
    model = Counted()
    support = agent(model=model)
    async with Runtime(store="memory") as runtime:
        results = await asyncio.gather(
            *(runtime.run(support, "Hi", thread="t", idempotency_key="k") for _ in range(2))
        )
        assert results[0].run_id == results[1].run_id
        assert [r.output for r in results] == ["done", "done"]
        assert model.calls == 1


async def test_a_run_whose_caller_died_is_driven_by_the_repeat() -> None:
    """The first call made its run durable and died before driving it (here: a submit, which
    leaves the run queued with nobody driving it); the repeated call drives it."""
    model = Counted()
    support = agent(model=model)
    async with Runtime(store="memory") as runtime:
        run_id = await runtime.submit(support, "Hi", thread="t", idempotency_key="k")
        result = await runtime.run(support, "Hi", thread="t", idempotency_key="k")
        assert (result.run_id, result.status, result.output) == (run_id, "completed", "done")
        assert model.calls == 1
