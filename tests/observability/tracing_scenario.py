"""The run the span-tree tests trace, shared by the test and the process that resumes it.

An agent refunds an order. Its first model call fails once with a retryable error (HTTP 500)
and is retried; the refund needs a person's approval; after it, the refund runs and the next
model call falls back: the primary model keeps failing (503, retried, then given up) and the
backup answers. A check looks at every tool call. The models decide from what they are sent,
so any process that continues the run gets the same answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from keel import Agent, Check, CheckRequest, CheckResult, check, tool
from keel.errors import ModelHTTPError
from keel.messages import ModelRequest, ToolResultMessage
from keel.resilience import Retrying, RetryPolicy
from keel.testing import FunctionModel, Scripted, call

PRIMARY = "acme:big-model"
BACKUP = "acme:small-model"
FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.001)


@tool(side_effects="write", requires_approval=True)
def refund(order: str, amount_usd: float) -> str:
    """Refund an order."""
    return f"refunded {amount_usd:.2f} USD on order {order}"


def _refunded(request: ModelRequest) -> bool:
    return any(isinstance(m, ToolResultMessage) for m in request.messages)


class Primary:
    """Fails once with a 500, then asks for the refund; after the refund it is down (503)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: ModelRequest) -> Scripted:
        self.calls += 1
        if _refunded(request):
            return ModelHTTPError("service unavailable", status=503, model=PRIMARY)
        if self.calls == 1:
            return ModelHTTPError("internal server error", status=500, model=PRIMARY)
        return call("refund", order="1042", amount_usd=30.0)


def backup(request: ModelRequest) -> Scripted:
    return "Order 1042 is refunded." if _refunded(request) else "I cannot help with that."


def limit(request: CheckRequest) -> CheckResult:
    """Refunds up to 100 USD may go on (to a person)."""
    amount = float((request.arguments or {}).get("amount_usd", 0))
    return CheckResult.allow() if amount <= 100 else CheckResult.deny("over the limit")


def agent() -> Agent[str]:
    primary = Retrying(FunctionModel(Primary(), name=PRIMARY), FAST)
    return Agent(
        name="desk",
        model=[primary, FunctionModel(backup, name=BACKUP)],
        tools=[refund],
        instructions="You handle refunds.",
    )


def checks() -> list[Check]:
    return [check(limit, name="refund_limit", points=["tool_call"])]


def memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A tracer provider keeping every span in memory, exported as it ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def record(span: ReadableSpan) -> dict[str, Any]:
    """A span as plain data (what a worker process writes, what the tests compare)."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": {
            k: list(v) if isinstance(v, tuple) else v for k, v in span.attributes.items()
        }
        if span.attributes
        else {},
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
        "resource": dict(span.resource.attributes),
    }


def write_spans(spans: Sequence[ReadableSpan], path: Path) -> None:
    path.write_text(json.dumps([record(s) for s in spans]))
