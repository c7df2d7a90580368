"""The CLI in process (typer's runner): outputs and exit codes of each command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel._cli.main import app

AGENT = '''
from keel import Agent, Limits, tool
from keel.testing import ScriptedModel, call

@tool(idempotent=True, side_effects="read")
def lookup_order(order_id: str) -> dict[str, str]:
    """Find an order by id."""
    return {"order_id": order_id, "status": "shipped"}

agent = Agent(
    name="demo",
    model=ScriptedModel([call("lookup_order", order_id="7"), "It shipped."]),
    tools=[lookup_order],
)
failing = Agent(name="failing", model=ScriptedModel([]))
not_an_agent = 42
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "demo.py").write_text(AGENT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEEL_DB", str(tmp_path / "keel.db"))
    for name in ("KEEL_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


runner = CliRunner()


def test_run_prints_the_answer_and_a_summary(project: Path) -> None:
    done = runner.invoke(app, ["run", "demo.py:agent", "Where is 7?"])

    assert done.exit_code == 0, done.output
    assert "It shipped." in done.output
    assert "completed · 2 steps · 1 tool call" in done.output


def test_run_json(project: Path) -> None:
    done = runner.invoke(app, ["run", "demo.py:agent", "Where is 7?", "--json"])
    data = json.loads(done.stdout)
    assert (data["status"], data["output"], data["tool_calls"]) == ("completed", "It shipped.", 1)


def test_a_failed_run_exits_1_with_its_reason(project: Path) -> None:
    failed = runner.invoke(app, ["run", "demo.py:failing", "Hi"])

    assert failed.exit_code == 1
    assert "model_error" in failed.output


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "demo.py:not_an_agent",
            "is not a keel.Agent (it is of type int); it defines: agent, failing",
        ),
        ("demo.py:nothing", "has no attribute 'nothing'"),
        ("no_such_module:agent", "cannot import module 'no_such_module'"),
    ],
)
def test_bad_targets_exit_2(project: Path, target: str, expected: str) -> None:
    failed = runner.invoke(app, ["run", target, "Hi"])
    assert failed.exit_code == 2
    assert expected in failed.output


def test_an_installed_module_can_be_a_target(project: Path) -> None:
    failed = runner.invoke(app, ["run", "keel.testing:agent", "Hi"])
    assert failed.exit_code == 2
    assert "keel.testing has no attribute 'agent'; it defines no keel.Agent" in failed.output


def test_runs_list_and_show(project: Path) -> None:
    runner.invoke(app, ["run", "demo.py:agent", "Where is 7?", "--thread", "t-1"])

    listed = runner.invoke(app, ["runs", "list"])
    as_json = json.loads(runner.invoke(app, ["runs", "list", "--json", "-t", "t-1"]).stdout)
    shown = runner.invoke(app, ["runs", "show", as_json[0]["run_id"]])
    shown_json = json.loads(
        runner.invoke(app, ["runs", "show", as_json[0]["run_id"], "--json"]).stdout
    )

    assert listed.exit_code == 0
    assert "demo" in listed.output
    assert "completed" in listed.output
    assert as_json[0]["thread_id"] == "t-1"
    assert "tool   lookup_order done" in shown.output
    assert [e["type"] for e in shown_json["events"]][-1] == "run_finished"


def test_runs_list_on_an_empty_database_says_how_to_start(project: Path) -> None:
    listed = runner.invoke(app, ["runs", "list", "--status", "paused"])
    assert listed.exit_code == 0
    assert "no runs yet" in listed.output


def test_the_db_option_overrides_the_environment(project: Path) -> None:
    other = project / "other.db"
    runner.invoke(app, ["run", "demo.py:agent", "Hi", "--db", str(other)])
    assert other.exists()
    assert json.loads(runner.invoke(app, ["runs", "list", "--json"]).stdout) == []


def test_an_unknown_database_scheme_is_a_usage_error(project: Path) -> None:
    failed = runner.invoke(app, ["runs", "list", "--db", "mysql://localhost/keel"])
    assert failed.exit_code == 2
    assert "unknown scheme 'mysql://'" in failed.output


def test_an_agent_file_that_fails_to_load_is_one_clear_line(project: Path) -> None:
    (project / "broken.py").write_text("from keel import Agent\n\nagent = Agent(name=)\n")
    (project / "raises.py").write_text("x = 1\nraise RuntimeError('no database configured')\n")

    broken = runner.invoke(app, ["run", "broken.py:agent", "Hi"])
    raises = runner.invoke(app, ["run", "raises.py:agent", "Hi"])

    assert broken.exit_code == 2
    assert "broken.py could not be loaded: SyntaxError" in broken.output
    assert "(line 3)" in broken.output
    assert raises.exit_code == 2
    assert "raises.py could not be loaded: RuntimeError: no database configured (line 2)" in (
        raises.output
    )
