"""Tenants never see each other: every route tried with another tenant's ids answers as for
ids that do not exist (404), lists hold only the caller's own, and two tenants' threads of
the same name are two conversations."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.server.conftest import KeyMaker


@dataclass
class Tenants:
    client: httpx.Client
    acme: dict[str, str]
    globex: dict[str, str]
    done: str  # acme's completed run, on thread "t"
    waiting: str  # acme's run waiting for approval, on thread "w"


@pytest.fixture
def tenants(client: httpx.Client, make_key: KeyMaker) -> Tenants:
    acme = {"X-API-Key": make_key(tenant="acme", user="ann")}
    globex = {"X-API-Key": make_key(tenant="globex", user="bob", scopes=["run", "read", "approve"])}
    done = client.post(
        "/v1/runs", json={"agent": "echo", "input": "acme secret", "thread": "t"}, headers=acme
    ).json()["run_id"]
    waiting = client.post(
        "/v1/runs", json={"agent": "desk", "input": "refund me", "thread": "w"}, headers=acme
    ).json()["run_id"]
    client.post(f"/v1/runs/{done}/feedback", json={"score": 1}, headers=acme)
    return Tenants(client, acme, globex, done, waiting)


ROUTES = [
    ("GET", "/v1/runs/{run}", None),
    ("GET", "/v1/runs/{run}/steps", None),
    ("GET", "/v1/runs/{run}/events", None),
    ("GET", "/v1/runs/{run}/stream", None),
    ("GET", "/v1/runs/{run}/feedback", None),
    ("POST", "/v1/runs/{run}/feedback", {"score": -1}),
    ("POST", "/v1/runs/{run}/approve", {}),
    ("POST", "/v1/runs/{run}/edit", {"arguments": {"amount_usd": 1}}),
    ("POST", "/v1/runs/{run}/reject", {"reason": "no"}),
    ("POST", "/v1/runs/{run}/cancel", {}),
]


def test_another_tenants_run_answers_like_no_run_on_every_route(tenants: Tenants) -> None:
    client = tenants.client
    for method, path, body in ROUTES:
        theirs = client.request(
            method, path.format(run=tenants.waiting), json=body, headers=tenants.globex
        )
        nobody = client.request(
            method, path.format(run="run_0000nothing"), json=body, headers=tenants.globex
        )

        assert theirs.status_code == nobody.status_code == 404, (method, path)
        mine, missing = theirs.json()["error"], nobody.json()["error"]
        assert mine["code"] == missing["code"] == "run_not_found"
        # The same answer, but for the id: nothing tells that the run exists.
        assert mine["message"].replace(tenants.waiting, "ID") == missing["message"].replace(
            "run_0000nothing", "ID"
        )
    after = client.get(f"/v1/runs/{tenants.waiting}", headers=tenants.acme).json()
    assert after["status"] == "awaiting_approval"  # untouched by any of it
    assert (
        client.get(f"/v1/runs/{tenants.done}/feedback", headers=tenants.acme).json()["feedback"][0][
            "score"
        ]
        == 1
    )


def test_lists_hold_only_the_callers_own(tenants: Tenants) -> None:
    client, globex = tenants.client, tenants.globex

    assert client.get("/v1/runs", headers=globex).json()["runs"] == []
    assert client.get("/v1/runs", params={"thread": "t"}, headers=globex).json()["runs"] == []
    assert client.get("/v1/approvals", headers=globex).json()["approvals"] == []
    assert client.get("/v1/threads", headers=globex).json()["threads"] == []
    mine = client.get("/v1/threads", headers=tenants.acme).json()["threads"]
    assert sorted(t["thread"] for t in mine) == ["t", "w"]
    waiting = client.get("/v1/approvals", headers=tenants.acme).json()["approvals"]
    assert [a["run_id"] for a in waiting] == [tenants.waiting]


def test_another_tenants_threads_are_not_found_nor_deleted(tenants: Tenants) -> None:
    client, globex = tenants.client, tenants.globex

    read = client.get("/v1/threads/t", headers=globex)
    deleted = client.delete("/v1/threads/t", headers=globex)

    assert (read.status_code, deleted.status_code) == (404, 404)
    assert read.json()["error"]["code"] == "thread_not_found"
    runs = client.get("/v1/threads/t", headers=tenants.acme).json()["runs"]
    assert [r["run_id"] for r in runs] == [tenants.done]


def test_the_same_thread_name_is_two_conversations(tenants: Tenants) -> None:
    answer = tenants.client.post(
        "/v1/runs",
        json={"agent": "echo", "input": "globex hello", "thread": "w", "if_busy": "reject"},
        headers=tenants.globex,
    ).json()

    # Neither acme's messages nor acme's open run on "w" reach globex's thread "w".
    assert (answer["status"], answer["output"]) == ("completed", "Seen: globex hello")
    assert answer["thread"] == "w"


def test_another_tenants_user_data_is_out_of_reach(tenants: Tenants, make_key: KeyMaker) -> None:
    client = tenants.client
    admin = {"X-API-Key": make_key(tenant="globex", user="root", scopes=["admin"])}

    refused = client.delete("/v1/users/ann/data", headers=tenants.globex)
    emptied = client.delete("/v1/users/ann/data", headers=admin)

    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "missing_scope")
    assert emptied.json() == {"deleted_runs": 0}
    assert client.get(f"/v1/runs/{tenants.done}", headers=tenants.acme).status_code == 200


def test_a_user_deletes_their_own_data(tenants: Tenants) -> None:
    client = tenants.client
    client.post(f"/v1/runs/{tenants.waiting}/cancel", headers=tenants.acme)

    deleted = client.delete("/v1/users/ann/data", headers=tenants.acme)

    assert deleted.json() == {"deleted_runs": 2}
    assert client.get("/v1/runs", headers=tenants.acme).json()["runs"] == []


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
def test_tenants_are_apart_on_postgresql(tenants: Tenants) -> None:
    client = tenants.client

    theirs = client.get(f"/v1/runs/{tenants.done}", headers=tenants.globex)
    mine = client.get("/v1/runs", headers=tenants.acme).json()["runs"]

    assert theirs.status_code == 404
    assert {r["run_id"] for r in mine} == {tenants.done, tenants.waiting}
