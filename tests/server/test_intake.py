"""Backpressure: past ``max_inflight`` run requests (or ``max_queued`` queued runs) a request
is refused whole with 429 and ``Retry-After``, and every run that was accepted finishes."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.server.agents import GATES
from tests.server.live import AppFactory, serving


def test_a_full_intake_answers_429_and_loses_nothing_it_accepted(make_app: AppFactory) -> None:
    GATES["hold"] = threading.Event()
    with (
        serving(make_app(max_inflight=3, retry_after_s=7)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):

        def ask(_: int) -> httpx.Response:
            return client.post("/v1/runs", json={"agent": "gated", "input": "hold", "wait": 30})

        with ThreadPoolExecutor(6) as pool:
            answers = [pool.submit(ask, n) for n in range(6)]
            # The three that got a slot hold it until their run ends: the gate is closed, so
            # the other three are refused first, whatever the order they came in.
            refused: list[httpx.Response] = []
            while len(refused) < 3:
                time.sleep(0.01)
                refused = [a.result() for a in answers if a.done()]
            GATES["hold"].set()
            accepted = [a.result() for a in answers if a.result() not in refused]

        runs = client.get("/v1/runs", params={"limit": 50}).json()["runs"]

    assert [(r.status_code, r.headers["retry-after"]) for r in refused] == [(429, "7")] * 3
    assert {r.json()["error"]["code"] for r in refused} == {"too_many_requests"}
    assert [a.status_code for a in accepted] == [200] * 3
    assert sorted(r["run_id"] for r in runs) == sorted(a.json()["run_id"] for a in accepted)
    assert {r["status"] for r in runs} == {"completed"}


def test_a_full_queue_answers_429_until_it_drains(make_app: AppFactory) -> None:
    app = make_app(max_queued=2, inline_worker=False)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        body = {"agent": "echo", "input": "later", "background": True}
        first, second, third = (client.post("/v1/runs", json=body) for _ in range(3))

        assert (first.status_code, second.status_code) == (202, 202)
        assert third.status_code == 429
        assert third.json()["error"]["code"] == "queue_full"
        assert "retry-after" in third.headers
        client.post(f"/v1/runs/{first.json()['run_id']}/cancel")
        assert client.post("/v1/runs", json=body).status_code == 202
