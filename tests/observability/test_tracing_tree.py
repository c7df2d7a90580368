"""One run, one trace: the span tree of a run that retries a model call, waits for a person's
approval, and is finished by another process where its model falls back, all under the web
request that started it (checked with the SDK's in-memory exporter in both processes)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from keel import KeelSettings, Runtime
from keel.observability import Tracing
from tests.observability import tracing_scenario as scenario

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("tracing_worker.py")
NO_MODELS = KeelSettings.from_environ({})

Span = dict[str, Any]


def one(spans: Iterable[Span], name: str, **attributes: Any) -> Span:
    found = [
        s
        for s in spans
        if s["name"] == name and all(s["attributes"].get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{len(found)} spans named {name!r} with {attributes}"
    return found[0]


def children(spans: Iterable[Span], parent: Span) -> list[Span]:
    return sorted(
        (s for s in spans if s["parent_id"] == parent["span_id"]), key=lambda s: s["start"]
    )


async def resume_elsewhere(db: Path, run_id: str, out: Path) -> str:
    """Resume the run in a new Python process; its status there."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "--db",
        str(db),
        "--run",
        run_id,
        "--spans",
        str(out),
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode().strip()


async def test_a_run_is_one_trace_across_retries_a_fallback_an_approval_and_processes(
    tmp_path: Path,
) -> None:
    provider, exporter = scenario.memory_provider()
    db = tmp_path / "keel.db"
    runtime = Runtime(
        store=str(db),
        settings=NO_MODELS,
        checks=scenario.checks(),
        observers=[Tracing(provider, capture_content=True)],
    )
    web = provider.get_tracer("web")
    with web.start_as_current_span("POST /refunds") as request:
        first = await runtime.run(scenario.agent(), "Refund order 1042 (30 USD)", thread="c-7")
    assert first.status == "awaiting_approval"
    decided = await runtime.approve(first.run_id, by="alice", resume=False)
    assert decided.status == "queued"
    await runtime.close()

    out = tmp_path / "spans.json"
    assert await resume_elsewhere(db, first.run_id, out) == "completed"

    here = [scenario.record(s) for s in exporter.get_finished_spans()]
    there: list[Span] = json.loads(out.read_text())
    spans = here + there
    top = one(here, "POST /refunds")
    assert top["trace_id"] == f"{request.get_span_context().trace_id:032x}"

    # One trace, one tree: every span hangs from the request, through the run.
    assert {s["trace_id"] for s in spans} == {top["trace_id"]}
    ids = {s["span_id"] for s in spans}
    assert all(s["parent_id"] in ids for s in spans if s is not top)

    # The run: exported by the process that saw it end, under the request that started it.
    run = one(there, "invoke_agent desk")
    assert run["parent_id"] == top["span_id"]
    assert run["kind"] == "INTERNAL"
    assert run["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert run["attributes"]["gen_ai.agent.name"] == "desk"
    assert run["attributes"]["gen_ai.conversation.id"] == "c-7"
    assert run["attributes"]["keel.run.id"] == first.run_id
    assert run["attributes"]["keel.run.status"] == "completed"
    assert json.loads(run["attributes"]["gen_ai.output.messages"])[0]["parts"][0] == {
        "type": "text",
        "content": "Order 1042 is refunded.",
    }
    drive_here, approval, drive_there = children(spans, run)
    assert drive_here in here
    assert drive_there in there
    assert drive_here["name"] == drive_there["name"] == "keel.drive desk"
    assert drive_here["attributes"]["keel.drive.reason"] == "started"
    assert drive_here["attributes"]["keel.drive.outcome"] == "awaiting_approval"
    assert drive_there["attributes"]["keel.drive.outcome"] == "completed"
    assert run["start"] == drive_here["start"]
    assert run["end"] >= drive_there["end"]

    # The approval: the wait, from the request to alice's decision, between the two stretches.
    assert approval["name"] == "keel.approval refund"
    assert approval["attributes"]["keel.approval.decision"] == "approve"
    assert approval["attributes"]["keel.approval.by"] == "alice"
    assert approval["attributes"]["gen_ai.tool.name"] == "refund"
    assert drive_here["end"] <= approval["end"] <= drive_there["start"]
    assert approval["start"] <= drive_here["end"]
    requested = [e["name"] for e in drive_here["events"]]
    assert "keel.approval_requested" in requested

    # Here: the first model call, retried once after a 500, then the check on the refund.
    chat, checks = children(spans, drive_here)
    assert chat["name"] == "chat big-model"
    assert chat["kind"] == "CLIENT"
    assert chat["attributes"]["gen_ai.operation.name"] == "chat"
    assert chat["attributes"]["gen_ai.provider.name"] == "acme"
    assert chat["attributes"]["gen_ai.request.model"] == "big-model"
    assert chat["attributes"]["gen_ai.response.model"] == "big-model"
    assert chat["attributes"]["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert chat["attributes"]["keel.attempts"] == 2
    assert "gen_ai.usage.input_tokens" in chat["attributes"]
    failed, answered = children(spans, chat)
    assert (failed["name"], failed["status"]) == ("chat big-model", "ERROR")
    assert failed["attributes"]["error.type"] == "model_server_error"
    assert (answered["status"], answered["attributes"]["keel.attempt"]) == ("UNSET", 2)
    assert failed["end"] <= answered["start"]
    assert checks["name"] == "keel.checks tool_call"
    assert checks["attributes"]["keel.checks.verdict"] == "allow"
    assert checks["attributes"]["keel.checks.checks"] == ["refund_limit"]
    assert [e["name"] for e in checks["events"]] == ["keel.check"]

    # There: the refund, then the fallback (the primary fails twice, the backup answers).
    tool, chat2 = children(spans, drive_there)
    assert tool["name"] == "execute_tool refund"
    assert tool["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert tool["attributes"]["gen_ai.tool.name"] == "refund"
    assert (
        tool["attributes"]["gen_ai.tool.call.id"] == approval["attributes"]["gen_ai.tool.call.id"]
    )
    assert json.loads(tool["attributes"]["gen_ai.tool.call.arguments"]) == {
        "order": "1042",
        "amount_usd": 30.0,
    }
    assert tool["attributes"]["gen_ai.tool.call.result"] == "refunded 30.00 USD on order 1042"
    assert chat2["name"] == "chat big-model"
    assert chat2["attributes"]["gen_ai.response.model"] == "small-model"
    assert chat2["attributes"]["keel.model.fallback"] is True
    attempts = children(spans, chat2)
    assert [(s["name"], s["status"]) for s in attempts] == [
        ("chat big-model", "ERROR"),
        ("chat big-model", "ERROR"),
        ("chat small-model", "UNSET"),
    ]
    assert tool["end"] <= chat2["start"]
