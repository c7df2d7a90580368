"""The ``Store`` contract's idempotency keys: a key creates one run per tenant, atomically with
the run, and goes with it. Runs over every backend."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from keel.errors import JournalConflictError, RunExistsError, RunNotFoundError, ThreadBusyError
from keel.ports import Store

from ._backends import LONG_TTL
from ._data import record, started


async def keyed(
    store: Store,
    run_id: str,
    key: str,
    *,
    tenant: str | None = None,
    thread_id: str = "thread-1",
    exclusive: bool = False,
    owner: str | None = None,
) -> None:
    """Start ``run_id`` queued (or leased to ``owner``) with idempotency key ``key``."""
    await store.start_run(
        run_id,
        [started(run_id, thread_id=thread_id)],
        record=record(
            run_id,
            thread_id=thread_id,
            status="queued" if owner is None else "running",
            tenant=tenant,
            holds_thread=True,
        ),
        owner=owner,
        ttl_s=LONG_TTL,
        exclusive=exclusive,
        idempotency_key=key,
    )


async def run_ids(store: Store) -> list[str]:
    return sorted(r.run_id for r in await store.list_runs(limit=None))


async def test_a_key_used_again_names_the_first_run_and_writes_nothing(store: Store) -> None:
    await keyed(store, "first", "order-1043", tenant="acme")
    with pytest.raises(RunExistsError, match=r"order-1043.*acme.*first") as refused:
        await keyed(store, "second", "order-1043", tenant="acme", thread_id="other")
    assert (refused.value.run_id, refused.value.agent) == ("first", "weather")
    assert (refused.value.idempotency_key, refused.value.tenant) == ("order-1043", "acme")
    assert await run_ids(store) == ["first"]
    with pytest.raises(RunNotFoundError):
        await store.load("second")


async def test_keys_are_scoped_by_tenant(store: Store) -> None:
    await keyed(store, "acme-run", "k", tenant="acme", thread_id="t1")
    await keyed(store, "globex-run", "k", tenant="globex", thread_id="t2")
    await keyed(store, "no-tenant-run", "k", thread_id="t3")
    with pytest.raises(RunExistsError) as refused:
        await keyed(store, "again", "k", thread_id="t4")
    assert refused.value.run_id == "no-tenant-run"
    assert await run_ids(store) == ["acme-run", "globex-run", "no-tenant-run"]


async def test_a_used_key_is_refused_before_the_busy_thread(store: Store) -> None:
    await keyed(store, "first", "k", owner="w")
    with pytest.raises(RunExistsError):
        await keyed(store, "second", "k", owner="w", exclusive=True)
    with pytest.raises(ThreadBusyError):
        await keyed(store, "third", "fresh", owner="w", exclusive=True)
    assert await run_ids(store) == ["first"]


async def test_starting_the_same_run_again_is_a_conflict_not_a_repeat(store: Store) -> None:
    """A start retried under its own run id (its commit's answer was lost) is told apart from
    another request with the key: the store's check for its own commit relies on it."""
    await keyed(store, "run-1", "k")
    with pytest.raises(JournalConflictError):
        await keyed(store, "run-1", "k")


async def test_deleting_the_run_frees_its_key(store: Store) -> None:
    await keyed(store, "first", "k")
    assert await store.delete_runs(["first"]) == 1
    await keyed(store, "second", "k")
    assert await run_ids(store) == ["second"]
    assert await store.delete_thread("thread-1") == 1
    await keyed(store, "third", "k")
    assert await run_ids(store) == ["third"]


async def test_racing_starts_with_one_key_create_one_run(store: Store) -> None:
    attempts = [keyed(store, f"racer-{i}", "shared", thread_id=f"t{i}") for i in range(8)]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    created = await run_ids(store)
    assert len(created) == 1
    refusals = [o for o in outcomes if isinstance(o, RunExistsError)]
    assert len(refusals) == 7
    assert {r.run_id for r in refusals} == set(created)


async def test_a_start_without_a_key_is_never_refused_as_a_repeat(store: Store) -> None:
    await keyed(store, "keyed", "k")
    plain = record("plain", thread_id="t2", status="queued")
    await store.start_run(
        "plain", [started("plain", thread_id="t2")], record=plain, owner=None, ttl_s=LONG_TTL
    )
    assert await run_ids(store) == ["keyed", "plain"]


@pytest.mark.parametrize("key", ["", 42])
async def test_a_key_that_is_not_a_non_empty_string_is_refused(store: Store, key: object) -> None:
    with pytest.raises(ValueError, match="idempotency key must be a non-empty str"):
        await store.start_run(
            "run-1",
            [started("run-1")],
            record=dataclasses.replace(record("run-1"), status="queued"),
            owner=None,
            ttl_s=LONG_TTL,
            idempotency_key=key,  # type: ignore[arg-type]
        )
    assert await run_ids(store) == []
