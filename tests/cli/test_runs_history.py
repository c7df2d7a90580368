"""``keel runs list`` with the decision-history filters, and its pages."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keel import Agent, Runtime, tool
from keel._cli.main import app
from keel.messages import ToolCall
from keel.testing import ScriptedModel, call

runner = CliRunner()


def support(*answers: str) -> Agent[str]:
    @tool
    def refund(order_id: str) -> str:
        """Refund an order."""
        return f"refunded {order_id}"

    script: list[str | ToolCall] = [*answers] or [call("refund", order_id="o-1"), "Refunded."]
    return Agent(name="support", model=ScriptedModel(script), tools=[refund])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with three runs: a refund for acme, a greeting for globex, a plain one."""
    path = tmp_path / "keel.db"

    async def fill() -> None:
        async with Runtime(store=path) as runtime:
            await runtime.run(support(), "refund o-1", tenant="acme", user="ann")
            await runtime.run(support("Hello!"), "hi", tenant="globex")
            await runtime.run(support("Sure."), "plain")

    asyncio.run(fill())
    return path


def listed(db: Path, *args: str) -> list[dict[str, Any]]:
    done = runner.invoke(app, ["runs", "list", "--db", str(db), "--json", *args])
    assert done.exit_code == 0, done.output
    runs: list[dict[str, Any]] = json.loads(done.stdout)
    return runs


def test_runs_are_listed_by_tool_tenant_user_and_time(db: Path) -> None:
    assert [r["input"] for r in listed(db, "--tool", "refund")] == ["refund o-1"]
    assert [r["input"] for r in listed(db, "--tenant", "globex")] == ["hi"]
    assert [r["input"] for r in listed(db, "--user", "ann", "--status", "completed")] == [
        "refund o-1"
    ]
    assert len(listed(db, "--agent", "support", "--since", "1h")) == 3
    assert listed(db, "--until", "2001-01-01") == []
    assert listed(db, "--min-cost", "1000") == []
    assert len(listed(db, "--max-duration", "3600", "--status", "completed", "-s", "failed")) == 3
    assert listed(db, "--error", "max_steps") == []


def test_a_full_page_says_how_to_get_the_next(db: Path) -> None:
    first = listed(db, "--limit", "2")
    rest = listed(db, "--limit", "2", "--before", first[-1]["cursor"])
    assert [r["input"] for r in first + rest] == ["plain", "hi", "refund o-1"]
    done = runner.invoke(app, ["runs", "list", "--db", str(db), "--limit", "2"])
    assert done.exit_code == 0, done.output
    assert f"more: --before '{first[-1]['cursor']}'" in done.stdout
    done = runner.invoke(app, ["runs", "list", "--db", str(db), "--tool", "nothing"])
    assert "no runs match" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since takes an age such as 1h"),
        (["--status", "sleeping"], "unknown status 'sleeping'"),
        (["--before", "garbage"], "not a page cursor"),
    ],
)
def test_bad_options_are_one_line_errors(db: Path, args: list[str], message: str) -> None:
    done = runner.invoke(app, ["runs", "list", "--db", str(db), *args])
    assert done.exit_code == 2
    assert message in done.output
    assert "Traceback" not in done.output
