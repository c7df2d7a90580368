"""A run on PostgreSQL rides through a real restart of the database server: connections are
re-established, no append is lost or written twice, and the run finishes.

It restarts the local cluster with ``pg_ctlcluster`` (root is needed), and makes sure the
server is up again afterwards whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

from keel import Agent, Limits, Runtime, tool
from keel._core.events import ToolCallFinished, ToolCallStarted
from keel._core.fold import fold
from keel.stores._postgres import PostgresStore
from keel.testing import ScriptedModel, call
from tests.services import port_open, require_service

STEPS = 8


def _cluster() -> list[str]:
    versions = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").exists() else []
    ok = bool(versions) and shutil.which("pg_ctlcluster") is not None and os.geteuid() == 0
    require_service(
        "a local PostgreSQL cluster that this test may restart (pg_ctlcluster, as root)",
        ok,
        "run the tests as root on a machine whose PostgreSQL was installed from Debian packages",
    )
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main"]


def _ensure_up(cluster: list[str]) -> None:
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", 5432):
        if time.monotonic() > deadline:
            subprocess.run([*cluster, "start"], check=False, timeout=60)
            deadline = time.monotonic() + 60
        time.sleep(0.2)


async def test_a_run_rides_through_a_server_restart(
    postgres_url: str, postgres_schema: str
) -> None:
    cluster = _cluster()
    underway = asyncio.Event()

    @tool(idempotent=True, side_effects="read")
    async def slow_lookup(n: int) -> str:
        """Look something up, slowly."""
        if n == 2:
            underway.set()  # two steps are journaled: restart the server now
        await asyncio.sleep(0.25)
        return f"result {n}"

    script = [call("slow_lookup", n=n) for n in range(STEPS)] + ["all found"]
    agent = Agent(
        name="restart",
        model=ScriptedModel(script),
        tools=[slow_lookup],
        limits=Limits(max_steps=20),
    )
    store = PostgresStore(postgres_url, schema=postgres_schema, reconnect_timeout_s=30)
    recoveries = 0
    recover = store._recover

    async def counted() -> None:
        nonlocal recoveries
        recoveries += 1
        await recover()

    store._recover = counted  # type: ignore[method-assign]
    try:
        async with Runtime(store=store) as runtime:
            task = asyncio.create_task(runtime.run(agent, "find them all"))
            await underway.wait()
            restart = await asyncio.create_subprocess_exec(
                *cluster,
                "restart",
                "-m",
                "fast",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await restart.communicate()
            assert restart.returncode == 0, err.decode()
            result = await asyncio.wait_for(task, timeout=120)
            events = await store.load(result.run_id)
    finally:
        await asyncio.to_thread(_ensure_up, cluster)
        await store.close()

    assert recoveries >= 1  # the run did lose its connections to the restart
    assert (result.status, result.output) == ("completed", "all found")
    keys = [e.idempotency_key for e in events if isinstance(e, ToolCallStarted)]
    assert keys == [f"{result.run_id}:{step}:0" for step in range(1, STEPS + 1)]
    finished = [e.call.id for e in events if isinstance(e, ToolCallFinished)]
    assert len(finished) == len(set(finished)) == STEPS  # none lost, none twice
    assert fold(events).status == "completed"
