"""Delegation from the command line: a child run's approval, decided with ``keel approve`` in
another process, then ``keel resume`` of the parent, completes both; ``keel runs show`` shows
the tree of runs both ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "tests" / "cli" / "delegation_app.py")
_PROVIDER_VARIABLES = ("KEEL_MODEL", "KEEL_APP", "OPENAI_API_KEY", "OPENAI_BASE_URL")


def keel(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROVIDER_VARIABLES}
    env["KEEL_DB"] = str(db)
    env["KEEL_TEST_REFUNDS"] = str(db.parent / "refunds.txt")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=db.parent,
        timeout=60,
        check=False,
    )


def test_a_child_approval_decided_from_the_cli_lets_the_parent_complete(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    refunds = tmp_path / "refunds.txt"

    started = keel("run", f"{APP}:desk", "I want my money back for 1043", db=db)

    assert started.returncode == 3, started.stderr
    assert "[child_waiting]" in started.stderr
    runs = json.loads(keel("runs", "list", "--json", db=db).stdout)
    parent = next(r for r in runs if r["agent"] == "desk")
    child = next(r for r in runs if r["agent"] == "refunds")
    assert (parent["status"], child["status"]) == ("paused", "awaiting_approval")
    assert f"keel approve {child['run_id']}" in started.stderr
    waiting = json.loads(keel("approvals", "list", "--json", db=db).stdout)
    assert [w["run_id"] for w in waiting] == [child["run_id"]]
    assert not refunds.exists()

    approved = keel("approve", child["run_id"], "--by", "ana", "--app", APP, db=db)
    assert approved.returncode == 0, approved.stderr
    resumed = keel("resume", parent["run_id"], "--app", APP, db=db)

    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "Your refund is done."
    assert refunds.read_text() == "1043\n"
    shown = keel("runs", "show", parent["run_id"], db=db).stdout
    assert "children" in shown
    assert f"{child['run_id']}  refunds  completed" in shown
    assert "waits for child run" in shown  # the pause, in the parent's timeline
    shown_child = keel("runs", "show", child["run_id"], db=db).stdout
    assert f"parent   {parent['run_id']} (step 1, call " in shown_child
    data = json.loads(keel("runs", "show", parent["run_id"], "--json", db=db).stdout)
    assert [c["run_id"] for c in data["children"]] == [child["run_id"]]
    assert data["parent"] is None
