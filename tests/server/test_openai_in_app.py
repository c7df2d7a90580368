"""The OpenAI-compatible endpoint as ``keel serve`` serves it: inside ``create_app``, behind
the same API keys, and running each agent for the key's tenant and user."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest

from keel import Agent, KeelSettings, ModelRequest, Runtime
from keel.messages import UserMessage
from keel.server import create_app, open_key_store
from keel.testing import FunctionModel
from tests.server.live import serving


def _who(request: object) -> str:
    return "answered"


async def _key(db: Path) -> str:
    keys = open_key_store(db)
    try:
        return (await keys.create(tenant="acme", user="ann", scopes=["run", "read"])).secret
    finally:
        await keys.aclose()


def test_the_endpoint_is_served_with_the_apps_keys_and_tenants(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    secret = asyncio.run(_key(db))
    agent = Agent(name="desk", model=FunctionModel(_who))
    app = create_app(agents=[agent], keel_settings=KeelSettings.from_environ({"KEEL_DB": str(db)}))
    with serving(app) as url:
        good = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        answer = good.chat.completions.create(
            model="desk", messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.choices[0].message.content == "answered"
        assert [m.id for m in good.models.list()] == ["desk"]
        bad = openai.OpenAI(base_url=f"{url}/v1", api_key="not-a-key", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(
                model="desk", messages=[{"role": "user", "content": "hello"}]
            )

    async def recorded() -> tuple[str | None, str | None]:
        async with Runtime(settings=KeelSettings.from_environ({"KEEL_DB": str(db)})) as runtime:
            [run] = (await runtime.query_runs(agent="desk")).runs
            return run.tenant, run.user

    assert asyncio.run(recorded()) == ("acme", "ann")


def _echo(request: ModelRequest) -> str:
    said = [m.content for m in request.messages if isinstance(m, UserMessage)]
    return " | ".join(str(text) for text in said)


def test_a_thread_is_the_same_thread_on_both_endpoints(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    secret = asyncio.run(_key(db))
    agent = Agent(name="desk", model=FunctionModel(_echo))
    app = create_app(agents=[agent], keel_settings=KeelSettings.from_environ({"KEEL_DB": str(db)}))
    with serving(app) as url:
        chat = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        chat.chat.completions.create(
            model="desk",
            messages=[{"role": "user", "content": "first"}],
            extra_body={"thread": "t-1"},
        )
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=url, headers=headers) as api:
            made = api.post("/v1/runs", json={"agent": "desk", "input": "second", "thread": "t-1"})
            assert made.status_code == 200, made.text
            assert made.json()["output"] == "first | second"
            [thread] = api.get("/v1/threads").json()["threads"]
            assert thread["thread"] == "t-1"
        answer = chat.chat.completions.create(
            model="desk",
            messages=[{"role": "user", "content": "third"}],
            extra_body={"thread": "t-1"},
        )
        assert answer.choices[0].message.content == "first | second | third"
