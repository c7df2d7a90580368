"""Over the wire: with the standard OTEL_* variables set, a Runtime exports its runs' spans
over real OTLP/HTTP (protobuf) to a loopback receiver that decodes them; and an endpoint that
never answers, or refuses connections, costs the runs nothing and breaks nothing."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time

import pytest

from keel import Agent, KeelSettings, Runtime, tool
from keel.observability import Tracing
from keel.testing import MemoryStore, ScriptedModel, call
from tests.observability.otlp_receiver import BlackHole, Receiver, refusing_url

NO_MODELS = KeelSettings.from_environ({})


@tool(side_effects="read")
def ping() -> str:
    """Answer pong."""
    return "pong"


def desk() -> Agent[str]:
    return Agent(name="desk", model=ScriptedModel([call("ping"), "done"]), tools=[ping])


async def test_a_runtime_exports_its_runs_over_otlp_http_when_the_environment_says_where(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "refund-desk")
        runtime = Runtime(store=MemoryStore(), settings=NO_MODELS)  # no observer passed
        result = await runtime.run(desk(), "ping", thread="t-1")
        assert result.status == "completed"
        await runtime.close()  # exports what is left

    assert sorted(s["name"] for s in receiver.spans) == [
        "chat scripted",
        "chat scripted",
        "execute_tool ping",
        "invoke_agent desk",
        "keel.drive desk",
    ]
    spans = {s["name"]: s for s in receiver.spans}  # the chat span: the first call's
    spans["chat scripted"] = min(
        (s for s in receiver.spans if s["name"] == "chat scripted"), key=lambda s: s["start"]
    )
    assert receiver.requests[0]["content-type"] == "application/x-protobuf"
    run, drive = spans["invoke_agent desk"], spans["keel.drive desk"]
    assert {s["trace_id"] for s in receiver.spans} == {run["trace_id"]}
    assert run["parent_id"] is None
    assert drive["parent_id"] == run["span_id"]
    assert spans["chat scripted"]["parent_id"] == drive["span_id"]
    assert spans["execute_tool ping"]["parent_id"] == drive["span_id"]
    assert run["resource"]["service.name"] == "refund-desk"
    assert run["scope"] == "keel"
    assert run["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert run["attributes"]["gen_ai.conversation.id"] == "t-1"
    assert run["attributes"]["keel.run.id"] == result.run_id
    assert spans["chat scripted"]["attributes"]["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert spans["execute_tool ping"]["attributes"]["gen_ai.tool.name"] == "ping"
    # Content is off unless asked for.
    for span in receiver.spans:
        assert not [
            k for k in span["attributes"] if k.endswith((".messages", ".arguments", ".result"))
        ]
    assert run["start"] <= drive["start"] <= drive["end"] <= run["end"]


@pytest.mark.parametrize("endpoint", ["never answers", "refuses"])
async def test_an_endpoint_that_never_answers_or_refuses_costs_the_runs_nothing(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plain = Runtime(store=MemoryStore(), settings=NO_MODELS)  # made before the variables
    with BlackHole() as hole:
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            hole.url if endpoint == "never answers" else refusing_url(),
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1.5")  # seconds, for the Python SDK
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "5")  # export at once, and get stuck
        monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "16")  # and fill the queue
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "8")
        tracing = Tracing.from_environ()
        assert tracing is not None
        traced = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[tracing])

        off: list[float] = []
        on: list[float] = []
        with caplog.at_level(logging.WARNING, logger="keel.observability"):
            for _ in range(12):  # interleaved, so both see the same machine
                for runtime, times in ((plain, off), (traced, on)):
                    began = time.perf_counter()
                    result = await runtime.run(desk(), "ping")
                    times.append(time.perf_counter() - began)
                    assert result.status == "completed"
        assert not [r for r in caplog.records if r.name.startswith("keel")]  # no observer failed

        # No run waited for the exporter (whose every try waits up to 1.5 s), and tracing
        # adds no more than a generous bound to a run.
        assert max(on) < 1.2, on
        assert statistics.median(on) <= 3 * statistics.median(off) + 0.05, (on, off)

        await traced.close()
        await plain.close()
        began = time.perf_counter()
        await asyncio.to_thread(tracing.shutdown)  # gives up within the exporter's timeout
        assert time.perf_counter() - began < 15
