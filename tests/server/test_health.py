"""Health, the API's document, and the last line of defence: liveness and readiness, semantic
probes asked through the agents, /openapi.json and /docs, and a bug answered as a logged JSON
500 that keeps secrets out of the log."""

from __future__ import annotations

import logging

import httpx
import pytest

from keel import KeelSettings
from keel.observability import Probe
from keel.server import ServerSettings, create_app
from tests.server.agents import agents
from tests.server.live import serving


def test_the_document_and_its_docs_are_served(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    docs = client.get("/docs")

    assert {"/v1/runs", "/v1/runs/{run_id}/stream", "/v1/approvals"} <= set(document["paths"])
    assert document["paths"]["/v1/runs"]["post"]["requestBody"]["content"]["application/json"]
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_readiness_reports_each_check(client: httpx.Client) -> None:
    ready = client.get("/readyz").json()

    assert ready["ok"] is True
    assert {c["name"] for c in ready["checks"]} == {
        "store",
        "schema",
        "breakers",
        "queue",
        "server",
    }


@pytest.mark.parametrize(("expected", "status"), [("Seen: ping", 200), ("pong", 503)])
def test_semantic_probes_ask_the_agents_and_judge_the_answers(
    db: KeelSettings, expected: str, status: int
) -> None:
    app = create_app(
        agents=agents,
        settings=ServerSettings(grace_s=0.1),
        keel_settings=db,
        probes={"echo": [Probe("ping", exact=expected, name="ping")]},
    )
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        answer = client.get("/v1/health/semantic")
        unprobed = client.get("/v1/health/semantic", params={"agent": "desk"})

    assert answer.status_code == status
    [probe] = answer.json()["probes"]
    assert (probe["agent"], probe["name"], probe["answer"]) == ("echo", "ping", "Seen: ping")
    assert probe["passed"] is (status == 200)
    assert (unprobed.status_code, unprobed.json()["error"]["code"]) == (404, "no_probes")


def test_a_bug_is_a_logged_json_500_without_secrets(
    db: KeelSettings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(agents=agents, settings=ServerSettings(grace_s=0.1), keel_settings=db)

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("cannot reach postgresql://keel:hunter2@db/keel")

    with (
        caplog.at_level(logging.ERROR, logger="keel.server"),
        serving(app) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        answer = client.get("/broken")

    error = answer.json()["error"]
    assert (answer.status_code, error["code"]) == (500, "internal")
    error_id = error["message"].split("error ")[-1]
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert "postgresql://keel:***@db/keel" in record.getMessage()
    assert "hunter2" not in caplog.text
    assert "Traceback" not in answer.text
