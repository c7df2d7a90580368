"""The durable-run commands: approve, reject, confirm, resume, cancel, replay, fork, diff,
steps, delete, prune, threads delete and db upgrade. Decisions and resumes run in a new
process, with the agent loaded from the app the operator names (never from the journal)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keel._cli.main import app

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "examples" / "support.py")
EXAMPLE = f"{APP}:agent"
REFUND = "Please refund $120 on order 1043, it arrived broken"
_PROVIDER_VARIABLES = (
    "KEEL_MODEL",
    "KEEL_APP",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
)


def keel(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROVIDER_VARIABLES}
    env["KEEL_DB"] = str(db)
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=db.parent,  # another directory than the one the agent was given from
        timeout=60,
        check=False,
    )


def newest(db: Path, *args: str) -> dict[str, Any]:
    listed = keel("runs", "list", "--json", *args, db=db)
    runs: list[dict[str, Any]] = json.loads(listed.stdout)
    return runs[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "keel.db"


def test_a_big_refund_waits_then_a_person_approves_it_from_another_process(db: Path) -> None:
    waiting = keel("run", EXAMPLE, REFUND, db=db)
    assert waiting.returncode == 3, waiting.stderr
    assert "awaiting_approval" in waiting.stderr
    run_id = newest(db)["run_id"]
    listed = json.loads(keel("approvals", "list", "--json", db=db).stdout)
    assert listed[0]["run_id"] == run_id
    assert listed[0]["calls"][0]["tool"] == "refund_order"

    approved = keel("approve", run_id, "--by", "ana@example.com", "--app", APP, db=db)

    assert approved.returncode == 0, approved.stderr
    assert "rf_0001" in approved.stdout
    shown = keel("runs", "show", run_id, db=db).stdout
    assert "decided        approve call" in shown
    assert "by ana@example.com" in shown
    replayed = keel("runs", "replay", run_id, "--app", APP, db=db)
    assert replayed.returncode == 0
    assert replayed.stdout.startswith("identical")


def test_a_rejected_refund_is_not_paid(db: Path) -> None:
    keel("run", EXAMPLE, REFUND, db=db)
    run_id = newest(db)["run_id"]

    rejected = keel(
        "reject", run_id, "--reason", "needs a photo of the damage", "--app", APP, db=db
    )

    assert rejected.returncode == 0, rejected.stderr
    assert "rejected this call: needs a photo of the damage" in rejected.stdout
    assert "rf_0001" not in rejected.stdout


def test_edited_arguments_must_be_a_json_object(db: Path) -> None:
    keel("run", EXAMPLE, REFUND, db=db)
    run_id = newest(db)["run_id"]

    bad = keel("approve", run_id, "--args", "[1]", db=db)
    assert bad.returncode == 2
    assert "--args must be a JSON object" in bad.stderr
    arguments = '{"order_id": "1043", "amount_usd": 60, "reason": "x"}'
    edited = keel("approve", run_id, "--args", arguments, "--app", APP, db=db)
    assert edited.returncode == 0, edited.stderr
    assert "amount_usd: 60.0" in edited.stdout


def test_a_paused_run_resumes_with_a_higher_limit(db: Path) -> None:
    paused = keel("run", EXAMPLE, "Where is order 1042?", "--max-steps", "1", db=db)
    assert paused.returncode == 3
    run_id = newest(db)["run_id"]

    resumed = keel("resume", run_id, "--max-steps", "5", "--app", APP, db=db)

    assert resumed.returncode == 0, resumed.stderr
    assert "1Z999AA10123456784" in resumed.stdout
    assert "completed · 2 steps" in resumed.stderr


def test_the_journal_never_decides_what_code_resume_loads(db: Path) -> None:
    paused = keel("run", EXAMPLE, "Where is order 1042?", "--max-steps", "1", db=db)
    assert paused.returncode == 3
    run_id = newest(db)["run_id"]

    # No app named: the journal's record of where the agent came from is not followed.
    unnamed = keel("resume", run_id, db=db)
    assert unnamed.returncode == 2
    assert "say where agent 'support' of run" in unnamed.stderr
    assert "--app" in unnamed.stderr
    # An app that does not define the run's agent is refused, naming what it does define.
    other = db.parent / "other.py"
    other.write_text("from keel import Agent\nagent = Agent(name='billing', model='rules')\n")
    refused = keel("resume", run_id, "--app", str(other), db=db)
    assert refused.returncode == 2
    assert "belongs to agent 'support', which" in refused.stderr
    assert "(it defines: billing)" in refused.stderr


def test_a_decision_without_an_app_queues_the_run_for_a_worker(db: Path) -> None:
    keel("run", EXAMPLE, REFUND, db=db)
    run_id = newest(db)["run_id"]

    decided = keel("approve", run_id, "--by", "ana", db=db)

    assert decided.returncode == 0, decided.stderr
    assert f"run {run_id} is queued" in decided.stderr
    assert newest(db)["status"] == "queued"
    worked = keel("worker", APP, "--until-idle", db=db)
    assert worked.returncode == 0, worked.stderr
    assert newest(db)["status"] == "completed"
    assert "rf_0001" in keel("runs", "show", run_id, db=db).stdout


runner = CliRunner()


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEEL_DB", str(tmp_path / "keel.db"))
    for name in _PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def run_id_of(*args: str) -> str:
    done = invoke("run", EXAMPLE, *args, "--json")
    data: dict[str, Any] = json.loads(done.stdout)
    run_id: str = data["run_id"]
    return run_id


def test_fork_steps_and_diff(local: Path) -> None:
    source = run_id_of("Where is order 1042?")
    steps = invoke("runs", "steps", source)
    assert "step 1: lookup_order (" in steps.output
    call_id = steps.output.split("lookup_order (")[1].split(")")[0]

    edit = f'{call_id}={{"status": "lost"}}'
    forked = invoke("runs", "fork", source, "--step", "1", "--tool-result", edit, "--app", APP)
    assert forked.exit_code == 0, forked.output
    assert "status: lost" in forked.output
    fork_id = json.loads(invoke("runs", "list", "--json").stdout)[0]["run_id"]

    diff = invoke("runs", "diff", source, fork_id)
    assert "step 1  tool results:" in diff.output
    assert '+ lookup_order -> {"status": "lost"}' in diff.output
    as_json = json.loads(invoke("runs", "diff", source, fork_id, "--json").stdout)
    assert as_json["first_divergent_step"] == 1
    assert invoke("runs", "diff", source, source).output.strip() == "no differences"
    bad = invoke("runs", "fork", source, "--step", "1", "--tool-result", "nonsense", "--app", APP)
    assert bad.exit_code == 2


def test_cancel_delete_prune_and_threads(local: Path) -> None:
    paused = run_id_of("Where is order 1042?", "--max-steps", "1", "--thread", "t1")
    cancelled = invoke("cancel", paused, "--reason", "not needed")
    assert f"run {paused} cancelled" in cancelled.output
    run_id_of("Hi", "--thread", "t2")
    kept = run_id_of("Hi again")

    assert "deleted thread t2 and 1 run" in invoke("threads", "delete", "t2").output
    assert "deleted 1 run" in invoke("runs", "delete", paused).output
    assert "deleted 0 runs" in invoke("runs", "prune", "--older-than", "30d").output
    assert [r["run_id"] for r in json.loads(invoke("runs", "list", "--json").stdout)] == [kept]
    assert "deleted 1 run" in invoke("runs", "prune", "--older-than", "0s").output
    assert invoke("runs", "prune", "--older-than", "soon").exit_code == 2


def test_resume_all_and_db_upgrade(local: Path) -> None:
    nothing = invoke("resume", "--all", "--app", APP)
    assert nothing.output.strip() == "no interrupted runs"
    assert "say which agents" in invoke("resume", "--all").output
    assert invoke("resume").exit_code == 2
    assert "the schema is up to date" in invoke("db", "upgrade").output


def test_approvals_list_when_nothing_waits(local: Path) -> None:
    assert "no run is waiting" in invoke("approvals", "list").output


def test_runs_follow_prints_a_run_live_from_another_process(db: Path) -> None:
    paused = keel("run", EXAMPLE, "Where is order 1042?", "--max-steps", "1", db=db)
    run_id = newest(db)["run_id"]
    assert paused.returncode == 3

    follower = subprocess.Popen(
        [sys.executable, "-m", "keel", "runs", "follow", run_id, "--until-finished", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if k not in _PROVIDER_VARIABLES},
            "KEEL_DB": str(db),
        },
        cwd=db.parent,
    )
    resumed = keel("resume", run_id, "--max-steps", "5", "--app", APP, db=db)
    out, err = follower.communicate(timeout=60)

    assert resumed.returncode == 0, resumed.stderr
    assert follower.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert lines[0]["event"]["type"] == "run_started"
    assert lines[-1]["event"]["type"] == "run_finished"
    assert "run_resumed" in {line["event"]["type"] for line in lines}

    stopped = keel("runs", "follow", run_id, "--after", str(len(lines) - 1), db=db)
    assert stopped.returncode == 0
    assert "run completed" in stopped.stdout


def test_resume_with_queue_needs_no_app_and_a_worker_finishes_the_run(db: Path) -> None:
    keel("run", EXAMPLE, "Where is order 1042?", "--max-steps", "1", db=db)
    run_id = newest(db)["run_id"]

    queued = keel("resume", run_id, "--max-steps", "5", "--queue", db=db)

    assert queued.returncode == 0, queued.stderr
    assert f"run {run_id} is queued" in queued.stderr
    assert keel("worker", APP, "--until-idle", db=db).returncode == 0
    assert newest(db)["status"] == "completed"
