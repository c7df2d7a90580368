"""Who may call: the local operator on loopback while no key exists; afterwards a valid key
on every request, with the scope each route needs. The key's tenant, user and roles reach
the runs it starts."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.server.conftest import KeyMaker
from tests.server.http import start


def code(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def test_without_keys_loopback_clients_need_none(client: httpx.Client) -> None:
    assert start(client).status_code == 200


def test_without_keys_a_client_off_loopback_is_refused(client: httpx.Client) -> None:
    # Through a proxy on this host, uvicorn takes the client's address from X-Forwarded-For.
    remote = client.get("/v1/runs", headers={"X-Forwarded-For": "203.0.113.9"})

    assert code(remote) == (403, "loopback_only")
    assert "keel keys create" in remote.json()["error"]["message"]


def test_once_a_key_exists_every_request_needs_one(
    client: httpx.Client, make_key: KeyMaker
) -> None:
    key = make_key(tenant="acme", user="ann")

    missing = client.get("/v1/runs")
    wrong = client.get("/v1/runs", headers={"Authorization": "Bearer keel_0123456789ab_nope"})
    bearer = client.get("/v1/runs", headers={"Authorization": f"Bearer {key}"})
    header = client.get("/v1/runs", headers={"X-API-Key": key})

    assert code(missing) == (401, "missing_key")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert code(wrong) == (401, "invalid_key")
    assert (bearer.status_code, header.status_code) == (200, 200)


def test_a_revoked_key_is_refused(
    client: httpx.Client, make_key: KeyMaker, revoke_key: Callable[[str], None]
) -> None:
    key = make_key(tenant="acme", user="ann")
    assert client.get("/v1/runs", headers={"X-API-Key": key}).status_code == 200

    revoke_key(key)

    assert code(client.get("/v1/runs", headers={"X-API-Key": key})) == (401, "invalid_key")


SCOPED = [
    (["read"], "POST", "/v1/runs", False),
    (["run"], "POST", "/v1/runs", True),
    (["run"], "GET", "/v1/runs", False),
    (["read"], "GET", "/v1/runs", True),
    (["read"], "GET", "/metrics", False),
    (["admin"], "GET", "/metrics", True),
    (["admin"], "POST", "/v1/runs", True),  # admin covers every scope
    (["read", "run"], "POST", "/v1/runs/RUN/approve", False),
    (["approve"], "POST", "/v1/runs/RUN/approve", True),
]


def test_each_route_needs_its_scope(client: httpx.Client, make_key: KeyMaker) -> None:
    owner = {"X-API-Key": make_key(tenant="acme", user="ann")}
    for scopes, method, path, allowed in SCOPED:
        waiting = client.post(
            "/v1/runs", json={"agent": "desk", "input": "refund me"}, headers=owner
        ).json()
        key = make_key(tenant="acme", user="bob", scopes=scopes)

        answer = client.request(
            method,
            path.replace("RUN", waiting["run_id"]),
            json={"agent": "echo", "input": "hi"} if path == "/v1/runs" else {},
            headers={"X-API-Key": key},
        )

        if allowed:
            assert answer.status_code < 400, (scopes, method, path, answer.text)
        else:
            assert code(answer) == (403, "missing_scope"), (scopes, method, path)
            assert "lacks the '" in answer.json()["error"]["message"]


def test_the_keys_tenant_user_and_roles_reach_the_run(
    client: httpx.Client, make_key: KeyMaker
) -> None:
    key = make_key(tenant="acme", user="ann", scopes=["run", "read"], roles=["support"])
    headers = {"X-API-Key": key}

    run = client.post("/v1/runs", json={"agent": "echo", "input": "hi"}, headers=headers).json()
    started = client.get(f"/v1/runs/{run['run_id']}/events", headers=headers).json()["events"][0]

    assert run["user"] == "ann"
    assert (started["event"]["tenant"], started["event"]["user"]) == ("acme", "ann")
    assert started["event"]["roles"] == ["support"]


def test_health_answers_without_a_key_but_metrics_need_admin(
    client: httpx.Client, make_key: KeyMaker
) -> None:
    assert start(client).status_code == 200  # before any key: the local operator
    key = make_key(tenant="acme", user="ann", scopes=["admin"])

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert code(client.get("/metrics")) == (401, "missing_key")
    metrics = client.get("/metrics", headers={"X-API-Key": key})
    assert metrics.status_code == 200
    assert 'keel_runs_started_total{agent="echo"} 1.0' in metrics.text
