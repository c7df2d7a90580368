"""Draining: on SIGTERM a server takes no new work (503), ends its waits (202: the run is
durable) and streams, hands back the runs it drives, and exits 0; another process finishes
them."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi import FastAPI

from keel.ports import RunRecord
from keel.server._state import ServerState
from keel.stores import SQLiteStore
from tests.server.agents import GATE_ENV, GATES
from tests.server.http import start, until
from tests.server.live import AppFactory, serving
from tests.server.process import (
    ROOT,
    finish,
    free_port,
    keel_env,
    start_keel,
    wait_until_serving,
)
from tests.server.sse import messages

APP = str(ROOT / "tests" / "server" / "agents.py")


def state_of(app: FastAPI) -> ServerState:
    state: ServerState = app.state.keel
    return state


def test_a_draining_server_refuses_new_work_and_ends_waits_and_streams(
    make_app: AppFactory,
) -> None:
    GATES["drained"] = threading.Event()
    app = make_app(grace_s=0.1)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        run_id = start(client, agent="gated", input="drained", background=True).json()["run_id"]
        with (
            ThreadPoolExecutor(1) as pool,
            client.stream("GET", f"/v1/runs/{run_id}/stream") as stream,
        ):
            waiting = pool.submit(
                client.post, "/v1/runs", json={"agent": "gated", "input": "drained", "wait": 300}
            )
            until(lambda: len(client.get("/v1/runs").json()["runs"]) == 2)  # both are durable

            state_of(app).drain()
            got = list(messages(stream))
            answered = waiting.result()

        refused = start(client)
        alive = client.get("/healthz")
        ready = client.get("/readyz")

    assert answered.status_code == 202  # the wait ended at once; the run is durable
    assert "end" not in [m.event for m in got]  # no end: the client resumes elsewhere
    assert (refused.status_code, refused.json()["error"]["code"]) == (503, "draining")
    assert refused.headers["retry-after"] == "1"
    assert alive.status_code == 200
    assert ready.status_code == 503
    assert {c["name"]: c["ok"] for c in ready.json()["checks"]}["server"] is False


def test_sigterm_hands_back_runs_in_flight_and_a_worker_finishes_them(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    env = keel_env(**{GATE_ENV: str(gate)})
    db = str(tmp_path / "keel.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_keel(
        "serve", APP, "--port", str(port), "--grace", "0.2", "--db", db, cwd=tmp_path, env=env
    )
    try:
        wait_until_serving(server, url)
        with httpx.Client(base_url=url, timeout=30) as client:
            run_ids = [
                start(client, agent="gated", input=f"run {n}", background=True).json()["run_id"]
                for n in range(3)
            ]
            # The server drives all three: each waits in its model call.
            until(
                lambda: (
                    {client.get(f"/v1/runs/{r}").json()["status"] for r in run_ids} == {"running"}
                )
            )
    finally:
        _, err = finish(server)

    assert server.returncode == 0, err
    assert "Traceback" not in err
    gate.touch()
    worker = start_keel("worker", APP, "--until-idle", "--db", db, cwd=tmp_path, env=env)
    _, worker_err = finish(worker, signum=None)
    assert worker.returncode == 0, worker_err
    assert "after driving 3 run(s)" in worker_err
    finished = asyncio.run(records(db, run_ids))
    assert {r.status for r in finished} == {"completed"}
    assert {r.output_preview for r in finished} == {f"through: run {n}" for n in range(3)}


async def records(db: str, run_ids: list[str]) -> list[RunRecord]:
    store = SQLiteStore(db)
    try:
        return [await store.get_run(r) for r in run_ids]
    finally:
        await store.close()
