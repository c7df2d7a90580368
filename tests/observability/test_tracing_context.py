"""The trace travels: into tools (an HTTP call a tool makes carries the ``traceparent`` of
the tool's span), from the caller into the journal, across the queue (a worker in another
runtime continues the submitter's trace), and into forks (a fork is traced as a run of its
own, its copied steps are not traced again)."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from keel import Agent, KeelSettings, Runtime, tool
from keel.events import RunStarted
from keel.observability import Tracing
from keel.testing import MemoryStore, Scripted, ScriptedModel, call
from tests.observability.tracing_scenario import memory_provider

NO_MODELS = KeelSettings.from_environ({})


class Headers:
    """A loopback HTTP server that keeps the ``traceparent`` of every request."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("traceparent"))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"


@pytest.fixture
def headers() -> Iterator[Headers]:
    found = Headers()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()
    thread.join(timeout=5)


def traceparent(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


async def test_a_tools_http_calls_carry_the_trace_of_its_span(headers: Headers) -> None:
    @tool(side_effects="read")
    async def fetch_async() -> str:
        """Fetch with an async client."""
        sent: dict[str, str] = {}
        propagate.inject(sent)  # what an instrumented client does
        async with httpx.AsyncClient() as client:
            return (await client.get(headers.url, headers=sent)).text

    @tool(side_effects="read")
    def fetch_sync() -> str:
        """Fetch from a plain function (it runs in a thread of its own)."""
        sent: dict[str, str] = {}
        propagate.inject(sent)
        request = urllib.request.Request(headers.url, headers=sent)
        with urllib.request.urlopen(request, timeout=5) as answer:
            return str(answer.read().decode())

    provider, exporter = memory_provider()
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[Tracing(provider)])
    model = ScriptedModel([[call("fetch_async"), call("fetch_sync")], "done"])
    agent = Agent(name="fetcher", model=model, tools=[fetch_async, fetch_sync])
    result = await runtime.run(agent, "fetch both")
    assert result.status == "completed"

    spans = {s.name: s for s in exporter.get_finished_spans()}
    expected = {
        traceparent(spans["execute_tool fetch_async"]),
        traceparent(spans["execute_tool fetch_sync"]),
    }
    assert set(headers.seen) == expected
    # Outside a tool, nothing is current: the runtime leaves the caller's context alone.
    assert propagate.get_global_textmap().fields  # the default W3C propagator
    outside: dict[str, str] = {}
    propagate.inject(outside)
    assert outside == {}


async def test_a_queued_run_continues_the_submitters_trace_in_the_worker(tmp_path: Path) -> None:
    db = str(tmp_path / "keel.db")
    web_provider, web_spans = memory_provider()
    worker_provider, worker_spans = memory_provider()

    @tool(side_effects="read")
    def ping() -> str:
        """Answer pong."""
        return "pong"

    def desk() -> Agent[str]:
        return Agent(name="desk", model=ScriptedModel([call("ping"), "done"]), tools=[ping])

    submitter = Runtime(store=db, settings=NO_MODELS, observers=[Tracing(web_provider)])
    with web_provider.get_tracer("web").start_as_current_span("POST /tickets") as request:
        run_id = await submitter.submit(desk(), "ping", thread="ticket-9")
    await submitter.close()
    assert web_spans.get_finished_spans()[0].name == "POST /tickets"
    assert len(web_spans.get_finished_spans()) == 1  # a queued run has no spans yet

    worker_runtime = Runtime(
        store=db, settings=NO_MODELS, agents=[desk()], observers=[Tracing(worker_provider)]
    )
    worker = worker_runtime.worker(poll_interval_s=0.05)
    await asyncio.wait_for(worker.run(until_idle=True), timeout=30)
    result = await worker_runtime.result(run_id)
    await worker_runtime.close()
    assert result.status == "completed"

    spans = worker_spans.get_finished_spans()
    wanted = request.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {wanted}
    run = next(s for s in spans if s.name == "invoke_agent desk")
    assert run.parent is not None
    assert run.parent.span_id == request.get_span_context().span_id
    drive = next(s for s in spans if s.name == "keel.drive desk")
    assert drive.attributes is not None
    assert drive.attributes["keel.drive.reason"] == "dequeued"
    assert drive.parent is not None
    assert drive.parent.span_id == run.context.span_id
    assert {s.name for s in spans} >= {"execute_tool ping", "chat scripted"}


async def test_a_fork_is_a_run_of_its_own_and_its_copied_steps_are_not_traced_again() -> None:
    provider, exporter = memory_provider()
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[Tracing(provider)])

    @tool(side_effects="read")
    def lookup(order: str) -> str:
        """Look an order up."""
        return f"order {order}: shipped"

    script: list[Scripted] = [call("lookup", order="1"), "shipped", "shipped yesterday"]
    agent = Agent(name="desk", model=ScriptedModel(script), tools=[lookup])
    source = await runtime.run(agent, "where is order 1?")
    before = len(exporter.get_finished_spans())
    forked = await runtime.fork(source.run_id, agent, at_step=1)
    assert forked.status == "completed"

    spans = exporter.get_finished_spans()[before:]
    assert sorted(s.name for s in spans) == [
        "chat scripted",
        "invoke_agent desk",
        "keel.drive desk",
    ]
    run = next(s for s in spans if s.name == "invoke_agent desk")
    assert run.attributes is not None
    assert run.attributes["keel.run.forked_from"] == source.run_id
    source_trace = exporter.get_finished_spans()[0].context.trace_id
    assert run.context.trace_id != source_trace
    drive = next(s for s in spans if s.name == "keel.drive desk")
    assert drive.attributes is not None
    assert drive.attributes["keel.drive.reason"] == "forked"


async def test_a_run_journals_the_callers_trace_context_and_only_that() -> None:
    store = MemoryStore()
    runtime = Runtime(store=store, settings=NO_MODELS)  # no tracing here: the journal still says
    caller = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "x")]),
    )
    agent = Agent(name="desk", model=ScriptedModel(["hi"]))
    with trace.use_span(NonRecordingSpan(caller)):
        traced = await runtime.submit(agent, "hi")
    untraced = await runtime.submit(agent, "hi")

    first = (await store.load(traced))[0]
    assert isinstance(first, RunStarted)
    assert first.trace_context == {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=x",
    }
    other = (await store.load(untraced))[0]
    assert isinstance(other, RunStarted)
    assert other.trace_context is None
