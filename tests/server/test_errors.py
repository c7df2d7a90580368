"""Bad input gets a 4xx JSON error naming the field and the problem, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server.live import AppFactory, serving


@pytest.fixture
def client(shared_client: httpx.Client) -> httpx.Client:
    """These tests only send bad requests: one server serves them all."""
    return shared_client


def error_of(answer: httpx.Response) -> dict[str, object]:
    body = answer.json()
    assert set(body) == {"error"}, body
    error: dict[str, object] = body["error"]
    assert {"code", "message", "field"} <= set(error)
    return error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": "hi"}, "agent"),
        ({"agent": "echo"}, "input"),
        ({"agent": "echo", "input": "   "}, "input"),
        ({"agent": "echo", "input": "a\x00b"}, "input"),
        ({"agent": "echo", "input": "hi", "thread": "a b"}, "thread"),
        ({"agent": "echo", "input": "hi", "if_busy": "later"}, "if_busy"),
        ({"agent": "echo", "input": "hi", "wait": -1}, "wait"),
        ({"agent": "echo", "input": "hi", "limits": {"max_steps": 0}}, "limits.max_steps"),
        ({"agent": "echo", "input": "hi", "limits": {"max_stepz": 3}}, "limits.max_stepz"),
        ({"agent": "echo", "input": "hi", "treads": "t"}, "treads"),
        ({"agent": "echo", "input": 42}, "input"),
        ({"agent": "../etc", "input": "hi"}, "agent"),
    ],
)
def test_a_bad_run_request_names_the_field(
    client: httpx.Client, body: dict[str, object], field: str
) -> None:
    answer = client.post("/v1/runs", json=body)

    assert answer.status_code == 422, answer.text
    error = error_of(answer)
    assert (error["code"], error["field"]) == ("invalid_request", field)
    assert str(error["message"]).startswith(f"{field}: ")


def test_a_body_that_is_not_json_is_refused_clearly(client: httpx.Client) -> None:
    answer = client.post(
        "/v1/runs", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert answer.status_code == 422
    assert error_of(answer)["field"] == "body"
    assert "not valid JSON" in str(error_of(answer)["message"])


def test_an_unknown_agent_is_404_listing_the_agents(client: httpx.Client) -> None:
    answer = client.post("/v1/runs", json={"agent": "nobody", "input": "hi"})

    assert answer.status_code == 404
    error = error_of(answer)
    assert (error["code"], error["field"]) == ("agent_not_found", "agent")
    assert error["agents"] == ["desk", "echo", "gated", "typist"]


def test_a_wait_longer_than_the_server_allows_is_refused(client: httpx.Client) -> None:
    answer = client.post("/v1/runs", json={"agent": "echo", "input": "hi", "wait": 3000})

    assert answer.status_code == 422
    assert error_of(answer)["field"] == "wait"
    assert "max_wait_s" in str(error_of(answer)["message"])


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/runs", {"limit": 0}, "limit"),
        ("/v1/runs", {"status": "sleeping"}, "status.0"),
        ("/v1/runs", {"cursor": "nonsense"}, "cursor"),
        ("/v1/runs", {"since": "yesterday-ish"}, "since"),
        ("/v1/runs", {"min_cost": "-1"}, "min_cost"),
        ("/v1/runs/run_x/events", {"after": -1}, "after"),
        ("/v1/threads", {"cursor": "x"}, "cursor"),
    ],
)
def test_bad_query_parameters_name_the_parameter(
    client: httpx.Client, path: str, params: dict[str, str | int], field: str
) -> None:
    answer = client.get(path, params=params)

    assert answer.status_code == 422, answer.text
    assert error_of(answer)["field"] == field


def test_unknown_runs_paths_and_methods_are_json_errors(client: httpx.Client) -> None:
    missing = client.get("/v1/runs/run_0123")
    nowhere = client.get("/v2/everything")
    wrong = client.put("/v1/runs")

    assert (missing.status_code, error_of(missing)["code"]) == (404, "run_not_found")
    assert (nowhere.status_code, error_of(nowhere)["code"]) == (404, "not_found")
    assert (wrong.status_code, error_of(wrong)["code"]) == (405, "method_not_allowed")


def test_a_body_over_the_limit_is_413_without_being_read(make_app: AppFactory) -> None:
    app = make_app(max_body_bytes=2048)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        declared = client.post("/v1/runs", json={"agent": "echo", "input": "x" * 5000})

        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b"x" * 1000

        streamed = client.post(
            "/v1/runs", content=chunks(), headers={"content-type": "application/json"}
        )
        fine = client.post("/v1/runs", json={"agent": "echo", "input": "x" * 1000})

    assert (declared.status_code, error_of(declared)["code"]) == (413, "too_large")
    assert (streamed.status_code, error_of(streamed)["code"]) == (413, "too_large")
    assert fine.status_code == 200


def test_decisions_on_a_run_with_nothing_pending_are_409(client: httpx.Client) -> None:
    run = client.post("/v1/runs", json={"agent": "echo", "input": "hi"}).json()

    answer = client.post(f"/v1/runs/{run['run_id']}/approve", json={})

    assert answer.status_code == 409
    assert error_of(answer)["code"] == "nothing_pending"
