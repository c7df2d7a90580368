"""``keel schedules``: add, list with the next due time, pause, resume and remove."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel._cli.main import app
from keel.schedules import open_schedule_store

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "keel.db")
    monkeypatch.setenv("KEEL_DB", path)
    return path


def keel(*args: str) -> tuple[int, str]:
    done = runner.invoke(app, list(args))
    return done.exit_code, done.output


def test_a_schedule_is_added_listed_paused_resumed_and_removed(db: str) -> None:
    code, out = keel(
        "schedules", "add", "nightly", "--cron", "0 2 * * *", "--agent", "reporter",
        "--input", "Sum up the day", "--tenant", "acme", "--timezone", "Europe/Paris",
    )  # fmt: skip
    assert code == 0, out
    assert "added nightly  '0 2 * * *' (Europe/Paris)  agent reporter  next " in out

    code, out = keel("schedules", "list", "--json")
    [listed] = json.loads(out)
    assert (listed["tenant"], listed["enabled"], listed["input"]) == (
        "acme",
        True,
        "Sum up the day",
    )
    assert listed["next_due"] > 0

    assert "paused" in keel("schedules", "pause", "nightly")[1]
    [paused] = json.loads(keel("schedules", "list", "--json")[1])
    assert (paused["enabled"], paused["next_due"]) == (False, None)
    assert "resumed nightly" in keel("schedules", "resume", "nightly")[1]

    async def stored() -> list[str]:
        store = open_schedule_store(db)
        try:
            return [s.schedule.name for s in await store.all() if s.schedule.enabled]
        finally:
            await store.aclose()

    assert asyncio.run(stored()) == ["nightly"]
    assert keel("schedules", "remove", "nightly") == (0, "removed schedule nightly\n")
    assert "no schedules" in keel("schedules", "list")[1]


def test_bad_input_is_one_clear_line(db: str) -> None:
    code, out = keel(
        "schedules", "add", "x", "--cron", "61 * * * *", "--agent", "a", "--input", "i"
    )
    assert code == 2
    assert "cron expression '61 * * * *' is not valid" in out
    code, out = keel(
        "schedules", "add", "x", "--cron", "* * * * *", "--agent", "a", "--input", "i",
        "--timezone", "Mars/Base",
    )  # fmt: skip
    assert code == 2
    assert "timezone 'Mars/Base' is not a known IANA time zone" in out
    code, out = keel("schedules", "remove", "ghost")
    assert code == 2
    assert "no schedule named 'ghost'" in out
    code, out = keel("schedules", "pause", "ghost")
    assert code == 2
    assert "no schedule named 'ghost'" in out
    assert "Traceback" not in out


def test_a_name_is_added_once_unless_replaced(db: str) -> None:
    args = ["schedules", "add", "s", "--cron", "* * * * *", "--agent", "a", "--input", "i"]
    assert keel(*args)[0] == 0
    code, out = keel(*args)
    assert code == 2
    assert "exists" in out
    assert keel(*args, "--replace")[0] == 0
