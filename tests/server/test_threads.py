"""Threads over HTTP: listed once each, newest first, page by page; read with the run that
holds them; deleted with their runs (not while one is being driven)."""

from __future__ import annotations

import threading

import httpx

from tests.server.agents import GATES
from tests.server.http import start, until


def test_threads_are_listed_once_each_newest_first_page_by_page(client: httpx.Client) -> None:
    for thread in ("a", "b", "a", "c"):
        start(client, thread=thread)

    first = client.get("/v1/threads", params={"limit": 2}).json()
    second = client.get("/v1/threads", params={"limit": 2, "cursor": first["next_cursor"]}).json()

    assert [t["thread"] for t in first["threads"]] == ["c", "a"]
    assert [t["thread"] for t in second["threads"]] == ["b"]
    assert second["next_cursor"] is None
    assert first["threads"][1]["latest_run"]["input"] == "hello"


def test_a_thread_shows_its_runs_and_the_run_holding_it(client: httpx.Client) -> None:
    done = start(client, agent="desk", input="hi", thread="t").json()
    waiting = start(client, agent="desk", input="refund me", thread="t").json()

    thread = client.get("/v1/threads/t").json()

    assert thread["active_run_id"] == waiting["run_id"]
    assert [r["run_id"] for r in thread["runs"]] == [waiting["run_id"], done["run_id"]]
    assert client.get("/v1/threads/nothing-here").status_code == 404


def test_a_deleted_thread_is_gone_with_its_runs(client: httpx.Client) -> None:
    first = start(client, thread="gone").json()
    start(client, thread="gone")

    deleted = client.delete("/v1/threads/gone")

    assert deleted.json() == {"deleted_runs": 2}
    assert client.get("/v1/threads/gone").status_code == 404
    assert client.get(f"/v1/runs/{first['run_id']}").status_code == 404
    assert start(client, thread="gone").json()["output"] == "Seen: hello"  # a fresh start


def test_a_thread_is_not_deleted_while_a_run_of_it_is_driven(client: httpx.Client) -> None:
    GATES["busy"] = threading.Event()
    run_id = start(client, agent="gated", input="busy", thread="busy", background=True).json()[
        "run_id"
    ]
    until(lambda: client.get(f"/v1/runs/{run_id}").json()["status"] == "running")

    refused = client.delete("/v1/threads/busy")

    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "run_busy")
    assert client.get(f"/v1/runs/{run_id}").status_code == 200
