"""``keel budgets``: stored limits set, listed and removed from the command line."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel._cli.main import app
from keel.budgets import Budget, open_budget_ledger

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "keel.db")
    monkeypatch.setenv("KEEL_DB", path)
    return path


def test_set_then_list_shows_the_limit_its_spend_and_reservations(db: str) -> None:
    done = runner.invoke(app, ["budgets", "set", "tenant", "acme", "25", "--window", "month"])
    assert done.exit_code == 0, done.output
    assert "tenant acme: limit $25.00 per month" in done.output

    async def spend() -> None:
        ledger = open_budget_ledger(db)
        keys = {"tenant": "acme"}
        await ledger.reserve("r1", "run_1", keys, 2.0, budgets=[], now=time.time())
        await ledger.settle("r1", 1.5, now=time.time())
        await ledger.reserve("r2", "run_1", keys, 3.0, budgets=[], now=time.time())
        await ledger.aclose()

    asyncio.run(spend())
    listed = runner.invoke(app, ["budgets", "list"])
    assert listed.exit_code == 0, listed.output
    assert "tenant acme  $25.00 per month: spent $1.500000, reserved $3.000000" in listed.output
    assert "reservation r2 of run run_1: $3.000000" in listed.output
    assert "not shown" in listed.output  # code budgets are not known here: said so

    data = json.loads(runner.invoke(app, ["budgets", "list", "--json"]).output)
    [status] = data["budgets"]
    assert (status["scope"], status["key"], status["remaining_usd"]) == ("tenant", "acme", 20.5)
    assert [r["reservation_id"] for r in data["reservations"]] == ["r2"]


def test_a_stored_limit_beats_the_apps_budget(db: str) -> None:
    assert runner.invoke(app, ["budgets", "set", "global", "global", "0.5"]).exit_code == 0

    async def statuses() -> list[tuple[str, float]]:
        ledger = open_budget_ledger(db)
        found = await ledger.statuses(budgets=[Budget("global", 100.0)], now=time.time())
        await ledger.aclose()
        return [(s.source, s.limit_usd) for s in found]

    assert asyncio.run(statuses()) == [("stored", 0.5)]


def test_remove_forgets_the_limit(db: str) -> None:
    runner.invoke(app, ["budgets", "set", "user", "u-7", "3"])
    done = runner.invoke(app, ["budgets", "remove", "user", "u-7"])
    assert done.exit_code == 0, done.output
    assert "no stored budget limit" in runner.invoke(app, ["budgets", "list"]).output
    again = runner.invoke(app, ["budgets", "remove", "user", "u-7"])
    assert again.exit_code == 2
    assert "no stored limit for user u-7" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "team", "x", "1"], "SCOPE must be one of"),
        (["set", "user", "x", "1", "--window", "week"], "--window must be one of"),
        (["set", "global", "acme", "1"], "the global scope has one key"),
    ],
)
def test_mistakes_end_in_one_line(db: str, args: list[str], message: str) -> None:
    done = runner.invoke(app, ["budgets", *args])
    assert done.exit_code == 2
    assert message in done.output
    assert "Traceback" not in done.output


def test_the_db_option_beats_keel_db(db: str, tmp_path: Path) -> None:
    other = str(tmp_path / "other.db")
    assert runner.invoke(app, ["budgets", "set", "agent", "a", "1", "--db", other]).exit_code == 0
    assert "no stored budget limit" in runner.invoke(app, ["budgets", "list"]).output
    assert "agent a" in runner.invoke(app, ["budgets", "list", "--db", other]).output


def test_with_keel_audit_changes_are_audited_and_with_keel_budgets_runs_obey_them(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.audit import open_audit_log
    from keel.testing import OpenAICompatibleServer

    monkeypatch.setenv("KEEL_AUDIT", "1")
    monkeypatch.setenv("KEEL_BUDGETS", "1")
    app_file = tmp_path / "app.py"
    app_file.write_text(
        "from keel import Agent, ModelSettings\n"
        "agent = Agent(name='desk', model='openai:gpt-4o-mini',"
        " model_settings=ModelSettings(max_tokens=50))\n"
    )
    set_it = runner.invoke(app, ["budgets", "set", "agent", "desk", "0", "--by", "ann"])
    assert set_it.exit_code == 0, set_it.output
    assert runner.invoke(app, ["budgets", "remove", "agent", "nobody"]).exit_code != 0

    with OpenAICompatibleServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        refused = runner.invoke(app, ["run", f"{app_file}:agent", "Hello?"])
        assert refused.exit_code == 3, refused.output  # paused: the budget is $0
        assert "budget.exhausted" in refused.output or "budget" in refused.output
        assert server.requests == []  # no call was made
        runner.invoke(app, ["budgets", "set", "agent", "desk", "1", "--by", "ann"])
        ran = runner.invoke(app, ["run", f"{app_file}:agent", "Hello again?"])
        assert ran.exit_code == 0, ran.output

    async def audited() -> list[tuple[str, str | None, str]]:
        log = open_audit_log(db)
        try:
            assert (await log.verify()).ok
            return [(r.action, r.user, r.subject) for r in await log.records()]
        finally:
            await log.aclose()

    found = asyncio.run(audited())
    assert found[0] == ("budget.changed", "ann", "agent:desk")
    assert ("budget.refused", None, found[1][2]) == found[1]
    assert found[2] == ("budget.changed", "ann", "agent:desk")
