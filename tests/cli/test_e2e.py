"""The ``keel`` command as a real subprocess: the example agent end to end, threads across
process restarts, listing and showing runs, and one-line errors with usage exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = f"{ROOT / 'examples' / 'support.py'}:agent"
_PROVIDER_VARIABLES = ("KEEL_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY")


def keel(*args: str, db: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROVIDER_VARIABLES}
    env["KEEL_DB"] = str(db)
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or db.parent,
        timeout=60,
        check=False,
    )


def runs(db: Path, *args: str) -> list[dict[str, Any]]:
    listed = keel("runs", "list", "--json", *args, db=db)
    assert listed.returncode == 0, listed.stderr
    data: list[dict[str, Any]] = json.loads(listed.stdout)
    return data


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "keel.db"


def test_the_example_agent_answers_offline_through_keel_run(db: Path) -> None:
    done = keel("run", EXAMPLE, "Where is order 1042?", db=db)

    assert done.returncode == 0, done.stderr
    assert "shipped" in done.stdout
    assert "1Z999AA10123456784" in done.stdout  # the tracking number came from the tool
    assert "completed · 2 steps · 1 tool call" in done.stderr
    [record] = runs(db)
    assert (record["agent"], record["model"], record["status"]) == ("support", "rules", "completed")


def test_a_thread_continues_after_the_process_exits(db: Path) -> None:
    first = keel("run", EXAMPLE, "Where is order 1042?", "--thread", "customer-42", db=db)
    assert first.returncode == 0, first.stderr

    second = keel("run", EXAMPLE, "What is your return policy?", "-t", "customer-42", db=db)
    assert second.returncode == 0, second.stderr

    newest, oldest = runs(db, "--thread", "customer-42")
    shown = keel("runs", "show", newest["run_id"], "--json", db=db)
    started = json.loads(shown.stdout)["events"][0]
    # The second process read the first run's four messages (question, call, result, answer).
    assert started["type"] == "run_started"
    assert started["history_count"] == 4
    assert oldest["thread_id"] == newest["thread_id"] == "customer-42"


def test_runs_show_prints_a_readable_timeline(db: Path) -> None:
    keel("run", EXAMPLE, "Where is order 1042?", db=db)
    [record] = runs(db)

    shown = keel("runs", "show", record["run_id"], db=db)

    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"run      {record['run_id']}" in text
    assert "model  step 1  rules" in text
    assert 'asks: lookup_order({"order_id":"1042"})' in text
    assert "tool   lookup_order done" in text
    assert "result: {" in text
    assert "1Z999AA10123456784" in text
    assert "tokens" in text
    assert "$0.000000" in text
    assert "run completed" in text


def test_json_output_of_run_is_machine_readable(db: Path) -> None:
    done = keel("run", EXAMPLE, "Where is order 1042?", "--json", db=db)

    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    assert result["usage"]["requests"] == 2
    assert [m["role"] for m in result["messages"]] == ["user", "assistant", "tool", "assistant"]


def test_a_paused_run_exits_with_code_3_and_says_why(db: Path) -> None:
    paused = keel("run", EXAMPLE, "Where is order 1042?", "--max-steps", "1", db=db)

    assert paused.returncode == 3
    assert "limit.max_steps" in paused.stderr
    assert "raise Limits(max_steps=...) and resume" in paused.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "missing.py:agent", "Hi"), "error: no file missing.py"),
        (("run", "no-colon", "Hi"), "must look like 'path/to/file.py:agent'"),
        (("run", f"{ROOT / 'examples' / 'support.py'}:agnt", "Hi"), "it defines: agent"),
        (("run", EXAMPLE, "   "), "input is empty"),
        (("run", EXAMPLE, "Hi", "--model", "acme:x"), "unknown model 'acme:x'"),
        (("run", EXAMPLE, "Hi", "--model", "openai:gpt-4o"), "set OPENAI_API_KEY"),
        (("runs", "show", "run_nope"), "no run with id 'run_nope'"),
        (("runs", "list", "--status", "lost"), "unknown status 'lost'"),
    ],
)
def test_mistakes_are_one_clear_line_and_exit_code_2(
    db: Path, args: tuple[str, ...], expected: str
) -> None:
    failed = keel(*args, db=db)

    assert failed.returncode == 2
    assert expected in failed.stderr
    assert failed.stderr.count("\n") == 1, failed.stderr  # one line, no traceback
    assert "Traceback" not in failed.stderr


def test_a_bad_database_location_is_a_clear_error(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("these are my notes, not a database\n")

    failed = keel("runs", "list", db=not_a_db)

    assert failed.returncode == 1
    assert str(not_a_db) in failed.stderr
    assert "Traceback" not in failed.stderr


def test_help_describes_the_commands(db: Path) -> None:
    shown = keel("--help", db=db)
    assert shown.returncode == 0
    for command in ("run", "runs"):
        assert command in shown.stdout
    assert "list" in keel("runs", "--help", db=db).stdout
