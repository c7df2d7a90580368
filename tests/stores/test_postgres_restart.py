"""A run on PostgreSQL rides through a real restart of the database server: connections are
re-established, no append is lost or written twice, and watchers hear NOTIFY again.

The test starts a private cluster of its own (``initdb`` into a temporary directory, a free
port; as the ``postgres`` user when run as root, since ``initdb`` refuses root) and restarts
that one: the machine's shared server is never touched.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from keel._core.events import ToolCallFinished
from keel.stores._postgres import PostgresStore
from tests.services import port_open, require_service

from ._data import record, started, tool_step

STEPS = 12


@dataclass(frozen=True)
class Cluster:
    url: str
    restart: Callable[[], None]


def _binaries() -> Path | None:
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _as_owner(command: list[str]) -> list[str]:
    """Run as ``postgres`` when we are root (initdb and postgres refuse to run as root)."""
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", "postgres", "--", *command]
    return ["su", "postgres", "-s", "/bin/sh", "-c", subprocess.list2cmdline(command)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def private_cluster() -> Iterator[Cluster]:
    binaries = _binaries()
    owner_ok = os.geteuid() != 0
    if not owner_ok:
        try:
            pwd.getpwnam("postgres")
            owner_ok = True
        except KeyError:
            pass
    require_service(
        "PostgreSQL's server binaries (initdb, pg_ctl) to start a private cluster",
        binaries is not None and owner_ok,
        "install the postgresql package (it provides /usr/lib/postgresql/<version>/bin)",
    )
    assert binaries is not None
    directory = Path(tempfile.mkdtemp(prefix="keel-pg-restart-"))
    data, log = directory / "data", directory / "log.txt"
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    port = _free_port()

    def pg_ctl(*args: str) -> None:
        command = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), *args]
        done = subprocess.run(
            _as_owner(command), capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr + log.read_text()

    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    done = subprocess.run(
        _as_owner([*initdb, "-E", "UTF8", "--no-sync"]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl("-o", options, "-w", "start")

    def restart() -> None:
        pg_ctl("-o", options, "-m", "fast", "-w", "restart")

    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port, timeout_s=0.2):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield Cluster(url=f"postgresql://postgres@127.0.0.1:{port}/postgres", restart=restart)
    finally:
        subprocess.run(
            _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_run_rides_through_a_server_restart(private_cluster: Cluster) -> None:
    store = PostgresStore(private_cluster.url, schema="keel", reconnect_timeout_s=30)
    recoveries = 0
    recover = store._recover

    async def counted() -> None:
        nonlocal recoveries
        recoveries += 1
        await recover()

    store._recover = counted  # type: ignore[method-assign]
    underway = asyncio.Event()

    async def drive() -> int:
        lease = await store.start_run(
            "run-1", [started()], record=record(holds_thread=True), owner="w", ttl_s=60
        )
        assert lease is not None
        seq = 1
        for step in range(1, STEPS + 1):
            seq = await store.append(
                "run-1", tool_step(step), expected_seq=seq, record=record(), lease=lease
            )
            if step == 3:
                underway.set()  # three steps are journaled: restart the server now
            await asyncio.sleep(0.05)
        return seq

    try:
        async with store.watch(None) as queue:
            task = asyncio.create_task(drive())
            await underway.wait()
            await asyncio.to_thread(private_cluster.restart)
            assert await asyncio.wait_for(task, timeout=120) == 1 + 3 * STEPS
            events = await store.load("run-1")
            # The listener reconnected: a submit from another store object wakes the queue.
            async with PostgresStore(private_cluster.url, schema="keel") as other:
                deadline = time.monotonic() + 30
                while not store._listeners.listening():
                    assert time.monotonic() < deadline, "the listener never came back"
                    await asyncio.sleep(0.1)
                await queue.wait(0)  # forget the wake-ups of the restart itself
                await other.start_run(
                    "q",
                    [started("q", thread_id="t")],
                    record=record("q", thread_id="t", status="queued"),
                    owner=None,
                    ttl_s=60,
                )
                assert await queue.wait(10)
    finally:
        await store.close()

    assert recoveries >= 1  # the run did lose its connections to the restart
    finished = [e.call.id for e in events if isinstance(e, ToolCallFinished)]
    assert finished == [f"call_{step}" for step in range(1, STEPS + 1)]  # none lost, none twice
