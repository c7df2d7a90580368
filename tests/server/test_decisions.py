"""People deciding over HTTP: what waits is listed, approving (with edited arguments or not)
and rejecting put the run back to work, cancelling ends it; feedback is recorded and read."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.server.agents import GATES
from tests.server.conftest import KeyMaker
from tests.server.http import settled, start


def waiting_refund(client: httpx.Client, **headers: str) -> dict[str, Any]:
    run: dict[str, Any] = client.post(
        "/v1/runs", json={"agent": "desk", "input": "refund me"}, headers=headers
    ).json()
    assert run["status"] == "awaiting_approval"
    return run


def decisions(client: httpx.Client, run_id: str, **headers: str) -> list[dict[str, Any]]:
    events = client.get(f"/v1/runs/{run_id}/events", headers=headers).json()["events"]
    return [e["event"] for e in events if e["type"] == "call_decided"]


def test_what_waits_is_listed_and_an_approval_finishes_the_run(client: httpx.Client) -> None:
    run = waiting_refund(client)
    [pending] = run["pending"]

    listed = client.get("/v1/approvals").json()["approvals"]
    approved = client.post(f"/v1/runs/{run['run_id']}/approve", json={"by": "ana"})

    assert [(a["run_id"], a["pending"]) for a in listed] == [(run["run_id"], [pending])]
    assert (pending["tool"], pending["kind"]) == ("refund", "approval")
    assert approved.status_code == 200
    assert approved.json()["status"] == "queued"  # a worker drives it on
    assert settled(client, run["run_id"])["output"] == "Done: refunded $120."
    assert [(d["decision"], d["by"]) for d in decisions(client, run["run_id"])] == [
        ("approve", "ana")
    ]
    assert client.get("/v1/approvals").json()["approvals"] == []


def test_an_edit_runs_the_call_with_other_arguments(client: httpx.Client) -> None:
    run = waiting_refund(client)

    bad = client.post(f"/v1/runs/{run['run_id']}/edit", json={"arguments": {"amount_usd": "x"}})
    edited = client.post(f"/v1/runs/{run['run_id']}/edit", json={"arguments": {"amount_usd": 50}})

    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "arguments")
    assert "amount_usd" in bad.json()["error"]["message"]
    assert edited.status_code == 200
    assert settled(client, run["run_id"])["output"] == "Done: refunded $50."
    assert decisions(client, run["run_id"])[0]["decision"] == "edit"


def test_a_rejection_tells_the_model_who_refused_and_why(client: httpx.Client) -> None:
    run = waiting_refund(client)

    client.post(f"/v1/runs/{run['run_id']}/reject", json={"reason": "over the limit"})

    done = settled(client, run["run_id"])
    assert done["status"] == "completed"
    assert "over the limit" in done["output"]
    [decided] = decisions(client, run["run_id"])
    assert (decided["decision"], decided["reason"]) == ("reject", "over the limit")


def test_an_unknown_call_is_404_naming_what_waits(client: httpx.Client) -> None:
    run = waiting_refund(client)
    call_id = run["pending"][0]["call_id"]

    answer = client.post(f"/v1/runs/{run['run_id']}/approve", json={"call_id": "call_nope"})

    assert (answer.status_code, answer.json()["error"]["field"]) == (404, "call_id")
    assert call_id in answer.json()["error"]["message"]


def test_with_a_key_the_decision_is_the_keys_user(client: httpx.Client, make_key: KeyMaker) -> None:
    headers = {"X-API-Key": make_key(tenant="acme", user="ana")}
    run = waiting_refund(client, **headers)

    impostor = client.post(
        f"/v1/runs/{run['run_id']}/approve", json={"by": "someone-else"}, headers=headers
    )
    client.post(f"/v1/runs/{run['run_id']}/approve", headers=headers)

    assert (impostor.status_code, impostor.json()["error"]["field"]) == (422, "by")
    [decided] = decisions(client, run["run_id"], **headers)
    assert decided["by"] == "ana"


def test_a_cancelled_run_ends_and_frees_its_thread(client: httpx.Client) -> None:
    GATES["forever"] = threading.Event()
    run_id = start(client, agent="gated", input="forever", thread="c", background=True).json()[
        "run_id"
    ]

    cancelled = client.post(f"/v1/runs/{run_id}/cancel", json={"reason": "changed my mind"})
    after = start(client, input="next", thread="c", if_busy="reject")

    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["reason"]["message"] == "changed my mind"
    assert after.status_code == 200


def test_feedback_is_recorded_and_read_back(client: httpx.Client) -> None:
    run_id = start(client).json()["run_id"]

    given = client.post(
        f"/v1/runs/{run_id}/feedback", json={"score": 1, "label": "golden", "comment": "Right."}
    )
    on_step = client.post(f"/v1/runs/{run_id}/feedback", json={"step": 1, "score": 4})
    no_step = client.post(f"/v1/runs/{run_id}/feedback", json={"step": 9, "score": 4})
    empty = client.post(f"/v1/runs/{run_id}/feedback", json={})
    listed = client.get(f"/v1/runs/{run_id}/feedback").json()["feedback"]

    assert (given.status_code, on_step.status_code) == (201, 201)
    assert [(f["step"], f["score"], f["label"]) for f in listed] == [
        (None, 1, "golden"),
        (1, 4, None),
    ]
    assert (no_step.status_code, no_step.json()["error"]["field"]) == (422, "step")
    assert "1 step" in no_step.json()["error"]["message"]
    assert empty.status_code == 422
