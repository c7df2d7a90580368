"""The OpenAPI document holds: generated requests to every operation (valid ones and broken
ones) never get a 5xx, and every answer fits the document (status, headers, body)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from keel import KeelSettings
from keel.server import ServerSettings, create_app, open_key_store
from tests.server.agents import agents
from tests.server.live import serving


def _app(db: Path | str) -> FastAPI:
    return create_app(
        agents=agents,
        settings=ServerSettings(grace_s=0.1, wait_s=1.0),
        keel_settings=KeelSettings(db=str(db)),
    )


# The OpenAI-compatible operations refuse, by design, parameters OpenAI's schema allows and
# an agent cannot honour (n > 1, audio...): test_openai_fuzz.py checks them without the
# "schema-valid data is accepted" check.
schema = schemathesis.openapi.from_dict(_app("memory").openapi()).exclude(
    path_regex=r"^/v1/(chat/completions|models)"
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The API on a store with an API key (so that requests without one must be refused),
    and the headers carrying that key."""
    db = tmp_path_factory.mktemp("schemathesis") / "keel.db"

    async def admin_key() -> str:
        keys = open_key_store(db)
        try:
            made = await keys.create(tenant="acme", user="ann", scopes=["admin"])
            return made.secret
        finally:
            await keys.aclose()

    headers = {"Authorization": f"Bearer {asyncio.run(admin_key())}"}
    with serving(_app(db)) as url:
        httpx.post(f"{url}/v1/runs", json={"agent": "desk", "input": "refund me"}, headers=headers)
        yield url, headers


@schema.parametrize()
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_keeps_its_document(
    case: schemathesis.Case[Any], live: tuple[str, dict[str, str]]
) -> None:
    url, headers = live
    case.call_and_validate(base_url=url, headers=headers)
