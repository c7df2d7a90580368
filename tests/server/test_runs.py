"""``/v1/runs`` over real HTTP: start a run and get its answer, or its id at once; read,
list and page runs; their steps and events; thread policies; limits."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.server.agents import GATES
from tests.server.http import settled, start


def test_a_run_answers_with_its_output_once_it_completes(client: httpx.Client) -> None:
    answer = start(client, input="Where is my order?")

    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert (run["status"], run["output"]) == ("completed", "Seen: Where is my order?")
    assert run["steps"] == 1
    assert client.get(f"/v1/runs/{run['run_id']}").json()["output"] == run["output"]


def test_a_background_run_answers_202_with_a_location_once_it_is_durable(
    client: httpx.Client,
) -> None:
    GATES["later"] = threading.Event()
    answer = start(client, agent="gated", input="later", background=True)

    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    assert answer.headers["location"] == f"/v1/runs/{run_id}"
    assert client.get(answer.headers["location"]).json()["status"] in ("queued", "running")
    assert start(client, input="meanwhile").status_code == 200  # the server still answers
    GATES["later"].set()
    assert settled(client, run_id)["output"] == "through: later"


def test_a_run_still_going_when_the_wait_ends_answers_202_and_finishes_later(
    client: httpx.Client,
) -> None:
    GATES["slow"] = threading.Event()
    answer = start(client, agent="gated", input="slow", wait=0.05)

    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] in ("queued", "running")
    GATES["slow"].set()
    assert settled(client, answer.json()["run_id"])["output"] == "through: slow"


def test_a_thread_carries_the_conversation(client: httpx.Client) -> None:
    start(client, input="first", thread="customer-42")
    second = start(client, input="second", thread="customer-42").json()

    assert second["output"] == "Seen: first | second"
    assert second["thread"] == "customer-42"


def test_reject_answers_409_while_the_thread_has_an_open_run(client: httpx.Client) -> None:
    waiting = start(client, agent="desk", input="refund me", thread="t").json()
    assert waiting["status"] == "awaiting_approval"

    refused = start(client, agent="desk", input="hello?", thread="t", if_busy="reject")

    assert refused.status_code == 409
    error = refused.json()["error"]
    assert (error["code"], error["field"], error["active_run_id"]) == (
        "thread_busy",
        "thread",
        waiting["run_id"],
    )
    runs = client.get("/v1/runs", params={"thread": "t"}).json()["runs"]
    assert [r["run_id"] for r in runs] == [waiting["run_id"]]  # nothing was journaled


def test_interrupt_cancels_the_open_run_and_starts(client: httpx.Client) -> None:
    waiting = start(client, agent="desk", input="refund me", thread="t").json()

    answer = start(client, agent="desk", input="never mind", thread="t", if_busy="interrupt")

    assert answer.json()["output"] == "How can I help?"
    assert client.get(f"/v1/runs/{waiting['run_id']}").json()["status"] == "cancelled"


def test_queue_waits_behind_the_open_run_durably(client: httpx.Client) -> None:
    waiting = start(client, agent="desk", input="refund me", thread="t").json()

    queued = start(client, agent="desk", input="thanks", thread="t", wait=0)

    assert queued.status_code == 202
    assert queued.json()["status"] == "queued"
    client.post(f"/v1/runs/{waiting['run_id']}/approve", json={})
    assert settled(client, queued.json()["run_id"])["output"] == "How can I help?"


def test_limits_only_tighten_and_the_deadline_is_the_wall_time_limit(
    client: httpx.Client,
) -> None:
    paused = start(client, agent="desk", input="refund", limits={"max_steps": 1}).json()
    events = client.get(f"/v1/runs/{paused['run_id']}/events").json()["events"]

    started = events[0]["event"]
    assert started["limits"]["max_steps"] == 1
    timed = start(client, deadline_s=5, limits={"max_steps": 10_000}).json()
    first = client.get(f"/v1/runs/{timed['run_id']}/events").json()["events"][0]["event"]
    assert first["limits"]["max_wall_time_s"] == 5
    assert first["limits"]["max_steps"] == 25  # the agent's own: a request never raises one


def test_steps_and_events_tell_what_happened(client: httpx.Client) -> None:
    run = start(client, agent="desk", input="refund me").json()

    steps = client.get(f"/v1/runs/{run['run_id']}/steps").json()["steps"]
    events = client.get(f"/v1/runs/{run['run_id']}/events").json()
    later = client.get(f"/v1/runs/{run['run_id']}/events", params={"after": 2}).json()

    assert steps[0]["actions"][0]["tool"] == "refund"
    assert [e["seq"] for e in events["events"]] == list(range(1, events["last_seq"] + 1))
    assert events["events"][0]["type"] == "run_started"
    assert later["events"] == events["events"][2:]


def test_runs_are_listed_newest_first_filtered_and_paged(client: httpx.Client) -> None:
    ids = [start(client, input=f"n{i}").json()["run_id"] for i in range(3)]
    refunded = start(client, agent="desk", input="refund me").json()["run_id"]
    start(client, agent="desk", input="refund me too")
    client.post(f"/v1/runs/{refunded}/approve")
    settled(client, refunded)

    first = client.get("/v1/runs", params={"agent": "echo", "limit": 2}).json()
    second = client.get(
        "/v1/runs", params={"agent": "echo", "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    waiting = client.get("/v1/runs", params={"status": "awaiting_approval"}).json()["runs"]
    by_tool = client.get("/v1/runs", params={"tool": "refund", "since": "1h"}).json()["runs"]

    assert [r["run_id"] for r in first["runs"] + second["runs"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert [r["input"] for r in waiting] == ["refund me too"]
    assert [r["run_id"] for r in by_tool] == [refunded]


def test_the_agents_served_are_listed(client: httpx.Client) -> None:
    listed = client.get("/v1/agents").json()["agents"]

    assert [a["name"] for a in listed] == ["desk", "echo", "gated", "typist"]
    assert next(a for a in listed if a["name"] == "desk")["tools"] == ["refund"]


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
def test_runs_work_on_postgresql(client: httpx.Client) -> None:
    start(client, input="first", thread="pg")
    answer = start(client, input="second", thread="pg")

    assert answer.json()["output"] == "Seen: first | second"
    assert len(client.get("/v1/runs").json()["runs"]) == 2


def test_a_request_repeated_with_its_idempotency_key_gets_the_first_run(
    client: httpx.Client,
) -> None:
    key = {"Idempotency-Key": "order-1042-refund-7f3a"}
    body = {"agent": "echo", "input": "refund 1042"}
    first = client.post("/v1/runs", json=body, headers=key)
    again = client.post("/v1/runs", json={**body, "background": True}, headers=key)

    assert first.status_code == 200, first.text
    assert again.json()["run_id"] == first.json()["run_id"]
    listed = client.get("/v1/runs", params={"agent": "echo", "limit": 100}).json()["runs"]
    assert [r["run_id"] for r in listed].count(first.json()["run_id"]) == 1
    other = client.post("/v1/runs", json={**body, "agent": "desk"}, headers=key)
    assert other.status_code == 409, other.text
    assert "echo" in other.json()["error"]["message"]


@pytest.mark.parametrize("bad", ["", "a" * 256, "has space"])
def test_a_malformed_idempotency_key_is_refused_naming_the_header(
    client: httpx.Client, bad: str
) -> None:
    answer = client.post(
        "/v1/runs", json={"agent": "echo", "input": "x"}, headers={"Idempotency-Key": bad}
    )
    assert answer.status_code in (400, 422), answer.text
    assert "idempotency" in answer.text.lower()
