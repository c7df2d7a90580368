"""PostgreSQL's queue across connections: claims by several stores (as by several processes)
never share a run, NOTIFY wakes watchers of other store objects, watching falls back to
polling when LISTEN is impossible, and no password leaks into messages."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from keel.errors import StoreError
from keel.stores._postgres import PostgresStore

from ._data import T0, record, started, tool_step


@pytest.fixture
async def store(postgres_url: str, postgres_schema: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(postgres_url, schema=postgres_schema) as store:
        await store.upgrade()
        yield store


async def submit(store: PostgresStore, run_id: str, *, thread_id: str, at: float = T0) -> None:
    await store.start_run(
        run_id,
        [started(run_id, thread_id=thread_id)],
        record=record(
            run_id, thread_id=thread_id, status="queued", created_at=at, holds_thread=True
        ),
        owner=None,
        ttl_s=60,
    )


async def test_claimers_on_several_connections_never_share_a_run(
    store: PostgresStore, postgres_url: str, postgres_schema: str
) -> None:
    runs = 150
    for n in range(runs):
        await submit(store, f"r{n:03d}", thread_id=f"t{n % 50}", at=T0 + n)
    claimers = [PostgresStore(postgres_url, schema=postgres_schema) for _ in range(4)]

    async def claim_all(claimer: PostgresStore, name: str) -> list[str]:
        got: list[str] = []
        misses = 0
        while misses < 30:
            leases = await claimer.claim_runs(owner=name, ttl_s=60, limit=3)
            misses = 0 if leases else misses + 1
            for lease in leases:
                got.append(lease.run_id)
                run = await claimer.get_run(lease.run_id)
                ended = record(
                    lease.run_id,
                    thread_id=run.thread_id,
                    status="completed",
                    created_at=run.created_at,
                )
                await claimer.append(
                    lease.run_id, tool_step(1), expected_seq=1, record=ended, lease=lease
                )
            if not leases:
                await asyncio.sleep(0.01)
        return got

    try:
        results = await asyncio.gather(
            *(claim_all(claimer, f"c{n}") for n, claimer in enumerate(claimers))
        )
    finally:
        for claimer in claimers:
            await claimer.close()
    everything = [run_id for got in results for run_id in got]
    assert sorted(everything) == [f"r{n:03d}" for n in range(runs)]
    assert sum(1 for got in results if got) >= 2  # the work was shared


async def test_notify_wakes_watchers_of_another_store(
    store: PostgresStore, postgres_url: str, postgres_schema: str
) -> None:
    async with (
        PostgresStore(postgres_url, schema=postgres_schema) as other,
        store.watch(None) as queue,
        store.watch("q1") as run,
    ):
        assert store._listeners.listening()
        assert not await queue.wait(0.05)
        began = time.monotonic()
        await submit(other, "q1", thread_id="t")
        assert await queue.wait(5)
        assert await run.wait(5)
        assert time.monotonic() - began < 5
        (lease,) = await other.claim_runs(owner="w", ttl_s=60, limit=1)
        await other.append("q1", tool_step(1), expected_seq=1, record=record("q1"), lease=lease)
        assert await run.wait(5)
        # A release makes the run claimable again: the queue hears it.
        await other.release_lease(lease)
        assert await queue.wait(5)


async def test_watching_polls_when_listen_is_impossible(
    postgres_url: str, postgres_schema: str
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = f"postgresql://keel:s3cret@127.0.0.1:{port}/test"
    async with (
        PostgresStore(
            postgres_url, schema=postgres_schema, listen_url=nowhere, poll_interval_s=0.05
        ) as store,
        PostgresStore(postgres_url, schema=postgres_schema) as other,
    ):
        await store.upgrade()
        async with store.watch(None) as queue:
            assert not store._listeners.listening()
            await submit(other, "q1", thread_id="t")
            # No NOTIFY reaches it, but it is woken to look again.
            assert await queue.wait(2)
        assert "s3cret" not in repr(store)


def test_a_bad_listen_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="listen_url is not a valid") as caught:
        PostgresStore(
            "postgresql://u@127.0.0.1/db", listen_url="postgresql://u:s3cret@h/db?bogus_option=1"
        )
    assert "s3cret" not in str(caught.value)


def test_errors_never_quote_the_password() -> None:
    store = PostgresStore("postgresql://keel:s3cr%40t@127.0.0.1:5/db", schema="keel")
    assert "s3cr" not in repr(store)
    leaked = psycopg.OperationalError(
        "connection to 'postgresql://keel:s3cr@t@127.0.0.1:5/db' password=s3cr@t failed"
    )
    error = store._error("load run 'x'", leaked)
    assert "s3cr@t" not in str(error)
    assert store._cause(leaked) is None  # not chained: its message holds the secret
    plain = psycopg.OperationalError("connection refused")
    assert store._cause(plain) is plain
    assert "s3cr@t" not in str(store._connect_error(leaked))


async def test_a_wrong_password_is_reported_without_it(postgres_url: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(postgres_url)
    url = psycopg.conninfo.make_conninfo(
        postgres_url, user="keel_no_such_user", password="s3cret-pw"
    )
    async with PostgresStore(url, connect_timeout_s=3) as store:
        with pytest.raises(StoreError) as caught:
            await store.list_runs()
    text = str(caught.value)
    cause = caught.value.__cause__
    assert "s3cret-pw" not in text
    assert cause is None or "s3cret-pw" not in str(cause)
    assert str(params.get("host", "")) in text


async def test_each_event_loop_gets_one_listen_connection(
    store: PostgresStore, postgres_url: str, postgres_schema: str
) -> None:
    app = f"keel-listen-{postgres_schema}"
    watcher = PostgresStore(
        postgres_url, schema=postgres_schema, listen_url=f"{postgres_url}?application_name={app}"
    )
    registered = threading.Barrier(3)
    woken: list[bool] = []

    def in_thread() -> None:
        async def main() -> None:
            async with watcher.watch(None) as queue, watcher.watch("other") as _:
                registered.wait(timeout=10)
                woken.append(await queue.wait(10))

        asyncio.run(main())

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    await asyncio.to_thread(registered.wait, 10)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        (listeners,) = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchone() or (0,)
    await submit(store, "q1", thread_id="t")
    for thread in threads:
        await asyncio.to_thread(thread.join, 20)
    await watcher.close()
    assert listeners == 2  # two loops, two watches each: one connection per loop
    assert woken == [True, True]
