"""``keel webhooks``: deliveries listed by status, and a dead one made pending again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel._cli.main import app
from keel.webhooks import Delivery, open_outbox
from keel.webhooks._outbox import Changed

runner = CliRunner()
NOW = 1_700_000_000.0


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "keel.db")
    monkeypatch.setenv("KEEL_DB", path)
    return path


def keel(*args: str) -> tuple[int, str]:
    done = runner.invoke(app, list(args))
    return done.exit_code, done.output


async def one_dead_and_one_delivered(db: str) -> None:
    outbox = open_outbox(db)
    made = [
        Delivery(id=f"msg_{n}", endpoint="billing", event_type="run.completed", run_id=f"run_{n}",
                 seq=3, next_attempt_at=NOW, created_at=NOW + n, updated_at=NOW)
        for n in (1, 2)
    ]  # fmt: skip
    for delivery in made:
        await outbox.record(Changed(delivery.run_id, 3, 0, NOW), 3, [delivery])
    first, second = await outbox.claim(
        owner="me", endpoints={"billing"}, now=NOW, lease_s=60, limit=2
    )
    await outbox.finish(first, owner="me", status="dead", now=NOW, http_status=404,
                        error="the endpoint answered 404")  # fmt: skip
    await outbox.finish(second, owner="me", status="delivered", now=NOW, http_status=200)
    await outbox.aclose()


def test_deliveries_are_listed_and_a_dead_one_retried(db: str) -> None:
    asyncio.run(one_dead_and_one_delivered(db))

    code, out = keel("webhooks", "list")
    assert code == 0, out
    assert (
        "msg_1  run.completed of run run_1 to billing  dead (1 attempt): the endpoint answered 404"
        in out
    )
    assert "msg_2  run.completed of run run_2 to billing  delivered" in out

    [dead] = json.loads(keel("webhooks", "list", "--status", "dead", "--json")[1])
    assert (dead["id"], dead["last_status"]) == ("msg_1", 404)

    code, out = keel("webhooks", "retry", "msg_1")
    assert code == 0
    assert "msg_1 is pending again" in out
    [pending] = json.loads(keel("webhooks", "list", "--status", "pending", "--json")[1])
    assert (pending["id"], pending["attempts"]) == ("msg_1", 0)

    code, out = keel("webhooks", "retry", "msg_2")
    assert code == 2
    assert "delivered already" in out
    code, out = keel("webhooks", "retry", "msg_nope")
    assert code == 2
    assert "no webhook delivery 'msg_nope'" in out
    code, out = keel("webhooks", "list", "--status", "lost")
    assert code == 2
    assert "--status must be one of pending, delivered, dead" in out
