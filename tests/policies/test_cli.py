"""Policies from the command line: a person approves a policy's escalation with ``keel
approve`` in another process (the tool runs once), ``keel runs show`` lists each policy's
decision with its name and reason, and ``keel runs replay`` finds the run identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[2] / "src"

APP = '''
from pathlib import Path

from keel import Agent, tool
from keel.messages import ModelRequest, ToolResultMessage
from keel.policies import Grant, RequireApproval, ToolPermissions
from keel.testing import FunctionModel, call

LOG = Path(__file__).with_name("refunds.log")


@tool(idempotent=True)
def refund(order_id: str, amount_usd: float) -> str:
    """Refund an order."""
    with LOG.open("a") as log:
        log.write(order_id + "\\n")
    return f"refunded order {order_id}"


@tool
def delete_user(user_id: str) -> str:
    """Delete a user."""
    return "deleted"


def desk(request: ModelRequest) -> object:
    told = [m.content for m in request.messages if isinstance(m, ToolResultMessage)]
    if not told:
        return [call("refund", order_id="7", amount_usd=250), call("delete_user", user_id="u1")]
    return " | ".join(told)


agent = Agent(
    name="desk",
    model=FunctionModel(desk),
    tools=[refund, delete_user],
    checks=[
        ToolPermissions(agents={"desk": Grant(tools={"refund"})}),
        RequireApproval(
            "refund",
            when=lambda args: args["amount_usd"] > 100,
            reason="refunds over $100 need a second pair of eyes",
        ),
    ],
)
'''


def keel(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "OPENAI_"))}
    env["KEEL_DB"] = str(db)
    # This checkout's sources, whatever the working directory and however keel is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=db.parent,
        timeout=60,
        check=False,
    )


def test_a_policy_escalation_is_approved_from_the_command_line(tmp_path: Path) -> None:
    app = tmp_path / "desk.py"
    app.write_text(APP)
    db = tmp_path / "keel.db"

    waiting = keel("run", f"{app}:agent", "Refund order 7 and delete my account", db=db)
    assert waiting.returncode == 3, waiting.stderr
    listed: list[dict[str, Any]] = json.loads(keel("runs", "list", "--json", db=db).stdout)
    run_id = listed[0]["run_id"]
    approved = keel("approve", run_id, "--by", "ana", "--app", str(app), db=db)

    assert approved.returncode == 0, approved.stderr
    assert "refunded order 7" in approved.stdout
    assert "you may not call delete_user: agent 'desk' does not include it" in approved.stdout
    assert (tmp_path / "refunds.log").read_text() == "7\n"  # exactly once
    shown = keel("runs", "show", run_id, db=db).stdout
    assert "(tool_permissions: allow, require_approval:refund: escalate)" in shown
    assert "why: refunds over $100 need a second pair of eyes" in shown
    assert "DENY  (tool_permissions: deny)" in shown
    assert "why: you may not call delete_user: agent 'desk' does not include it" in shown
    assert "decided        approve call" in shown
    replayed = keel("runs", "replay", run_id, "--app", str(app), db=db)
    assert replayed.stdout.startswith("identical"), replayed.stdout + replayed.stderr
