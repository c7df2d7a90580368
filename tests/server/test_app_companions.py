"""What ``create_app`` runs beside the API: signed webhooks on the runs it serves, and cron
schedules stored and fired while it runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from keel import Agent, KeelSettings
from keel.schedules import Schedule, open_schedule_store
from keel.server import create_app
from keel.testing import FunctionModel
from keel.webhooks import Webhook, Webhooks, verify_signature
from tests.server.live import serving
from tests.webhooks.receiver import receiving

SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtdGVzdHMtb25seQ=="


def _answer(request: object) -> str:
    return "All done."


def test_a_run_the_api_served_is_told_to_a_webhook_signed(tmp_path: Path) -> None:
    settings = KeelSettings.from_environ({"KEEL_DB": str(tmp_path / "keel.db")})
    agent = Agent(name="desk", model=FunctionModel(_answer))
    with receiving() as receiver:
        hooks = Webhooks([Webhook(receiver.url, SECRET, events={"run.completed"})])
        app = create_app(agents=[agent], keel_settings=settings, webhooks=hooks)
        with serving(app) as url:
            run = httpx.post(f"{url}/v1/runs", json={"agent": "desk", "input": "hi"}).json()
            [delivered] = receiver.wait_for(1)
    assert run["run_id"] in delivered.body.decode()
    verify_signature(SECRET, delivered.headers, delivered.body)


def test_the_apps_schedules_are_stored_when_it_starts(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    settings = KeelSettings.from_environ({"KEEL_DB": str(db)})
    agent = Agent(name="desk", model=FunctionModel(_answer))
    nightly = Schedule(name="nightly", cron="0 3 * * *", agent="desk", input="Summarize the day")
    app = create_app(agents=[agent], keel_settings=settings, schedules=[nightly])
    with serving(app):
        pass

    async def stored() -> list[str]:
        store = open_schedule_store(db)
        try:
            return [state.schedule.name for state in await store.all()]
        finally:
            await store.aclose()

    assert asyncio.run(stored()) == ["nightly"]
