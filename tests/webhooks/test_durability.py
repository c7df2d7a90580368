"""No event is lost to a crash, and none is delivered twice by two deliverers: real processes
on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel import Runtime
from keel.stores import open_store
from keel.webhooks import Webhook, Webhooks, new_secret
from tests.postgres import drop_schema, new_schema_name
from tests.webhooks.conftest import answering
from tests.webhooks.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_webhook_worker.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
SECRET = new_secret()
RUNS = 12


@pytest.fixture(params=["sqlite", "postgres"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str | None]]:
    if request.param == "sqlite":
        yield str(tmp_path / "keel.db"), None
        return
    url, schema = request.getfixturevalue("postgres_url"), new_schema_name()
    try:
        yield url, schema
    finally:
        await drop_schema(url, schema)


def worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


async def test_a_run_finished_by_a_process_killed_before_delivering_is_delivered_by_another(
    database: tuple[str, str | None], receiver: Receiver
) -> None:
    target, schema = database
    finisher = worker("finish", target, schema or "-", receiver.url, SECRET)
    out, err = await asyncio.to_thread(finisher.communicate, timeout=60)
    assert finisher.returncode == -9, err  # killed
    run_id = out.strip()
    assert receiver.received == []  # it died before sending anything

    webhooks = Webhooks([Webhook(receiver.url, SECRET)])
    store = open_store(target, schema=schema or "keel")
    async with Runtime(store=store) as runtime:
        await webhooks.start(runtime, background=False)
        [delivered] = await webhooks.run_once(scan=True)
        assert await webhooks.run_once(scan=True) == []
        await webhooks.stop()
    await store.close()

    assert (delivered.status, delivered.run_id) == ("delivered", run_id)
    [got] = receiver.received
    assert (got.json["type"], got.json["data"]["run_id"]) == ("run.completed", run_id)


async def test_two_deliverers_never_deliver_one_event_twice(
    database: tuple[str, str | None], receiver: Receiver
) -> None:
    target, schema = database
    store = open_store(target, schema=schema or "keel")
    async with Runtime(store=store) as runtime:
        finished = {(await runtime.run(answering(), f"hi {n}")).run_id for n in range(RUNS)}
    await store.close()

    deliverers = [
        worker("deliver", target, schema or "-", receiver.url, SECRET, str(RUNS)) for _ in range(2)
    ]
    for process in deliverers:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line == "ready\n", process.stderr.read() if process.stderr else line
    for process in deliverers:  # both go at once
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    counts = []
    for process in deliverers:
        out, err = await asyncio.to_thread(process.communicate, timeout=60)
        assert process.returncode == 0, err
        counts.append(json.loads(out.strip().splitlines()[-1])["delivered"])

    ids = Counter(r.id for r in receiver.received)
    assert len(ids) == RUNS
    assert set(ids.values()) == {1}
    assert {r.json["data"]["run_id"] for r in receiver.received} == finished
    assert sum(counts) == RUNS
