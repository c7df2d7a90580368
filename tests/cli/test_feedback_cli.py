"""``keel feedback``: add, list and export."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keel import Agent, Runtime, tool
from keel._cli.main import app
from keel.testing import ScriptedModel, call

runner = CliRunner()


def support() -> Agent[str]:
    @tool
    def refund(order_id: str) -> str:
        """Refund an order."""
        return f"refunded {order_id}"

    model = ScriptedModel([call("refund", order_id="o-1"), "Refunded."])
    return Agent(name="support", model=model, tools=[refund])


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "keel.db"

    async def fill() -> str:
        async with Runtime(store=path) as runtime:
            return (await runtime.run(support(), "refund o-1")).run_id

    return path, asyncio.run(fill())


def keel(db: Path, *args: str) -> Any:
    return runner.invoke(app, [*args, "--db", str(db)])


def test_feedback_is_added_listed_and_exported(run: tuple[Path, str], tmp_path: Path) -> None:
    db, run_id = run
    done = keel(db, "feedback", "add", run_id, "--score", "5", "--label", "golden", "--by", "ann")
    assert done.exit_code == 0, done.output
    assert "recorded feedback fb_" in done.stdout
    done = keel(db, "feedback", "add", run_id, "--step", "1", "--score", "-1", "-c", "why?")
    assert done.exit_code == 0, done.output
    done = keel(db, "feedback", "list", "--json", "--label", "golden")
    items = json.loads(done.stdout)
    assert [(i["score"], i["by"]) for i in items] == [(5.0, "ann")]
    done = keel(db, "feedback", "list", "--max-score", "0")
    assert "why?" in done.stdout
    output = tmp_path / "cases.jsonl"
    done = keel(db, "feedback", "export", "--label", "golden", "--output", str(output))
    assert done.exit_code == 0, done.output
    cases = [json.loads(line) for line in output.read_text().splitlines()]
    assert [c["id"] for c in cases] == [run_id]
    assert cases[0]["expected_tool_calls"] == [{"name": "refund", "arguments": {"order_id": "o-1"}}]
    assert cases[0]["reference"] == "Refunded."
    done = keel(db, "feedback", "export", "--agent", "support")
    assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == [run_id]


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--score", "9"], "score must be a number from -1 to 5", 2),
        (["--step", "7", "--score", "1"], "step must be from 1 to 2, got 7", 2),
        ([], "feedback needs a score, a label or a comment", 2),
    ],
)
def test_bad_feedback_is_a_one_line_error(
    run: tuple[Path, str], args: list[str], message: str, code: int
) -> None:
    db, run_id = run
    done = keel(db, "feedback", "add", run_id, *args)
    assert done.exit_code == code
    assert message in done.output
    assert "Traceback" not in done.output


def test_feedback_on_an_unknown_run_is_refused(run: tuple[Path, str]) -> None:
    db, _ = run
    done = keel(db, "feedback", "add", "run_nope", "--score", "1")
    assert done.exit_code == 2
    assert "run_nope" in done.output
