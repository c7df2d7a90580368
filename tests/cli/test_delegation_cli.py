"""Delegation from the command line: a child run's approval, decided with ``keel approve`` in
another process, then ``keel resume`` of the parent, completes both; ``keel runs show`` shows
the tree of runs both ways."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.timeout(180)  # six processes, each importing Keel: seconds each on a busy machine
def test_a_child_approval_decided_from_the_cli_lets_the_parent_complete(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    refunds = tmp_path / "refunds.txt"

    started = keel("run", f"{APP}:desk", "I want my money back for 1043", db=db)

    assert started.returncode == 3, started.stderr
    assert "[child_waiting]" in started.stderr
    parent_id = re.search(r"run (run_\w+) paused", started.stderr)
    assert parent_id is not None, started.stderr
    parent = parent_id.group(1)
    [waiting] = json.loads(keel("approvals", "list", "--json", db=db).stdout)
    child = waiting["run_id"]
    assert waiting["agent"] == "refunds"
    assert f"keel approve {child}" in started.stderr
    assert not refunds.exists()

    approved = keel("approve", child, "--by", "ana", "--app", APP, db=db)
    assert approved.returncode == 0, approved.stderr
    resumed = keel("resume", parent, "--app", APP, db=db)

    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "Your refund is done."
    assert refunds.read_text() == "1043\n"
    shown = keel("runs", "show", parent, db=db).stdout
    assert "children" in shown
    assert f"{child}  refunds  completed" in shown
    assert "waits for child run" in shown  # the pause, in the parent's timeline
    shown_child = keel("runs", "show", child, "--json", db=db).stdout
    data = json.loads(shown_child)
    assert (data["parent"]["run_id"], data["parent"]["step"]) == (parent, 1)
    assert data["children"] == []
