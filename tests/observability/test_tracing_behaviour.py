"""Tracing's configuration, and how it behaves at the edges: when it is on, what a failure,
a refusal, a call in doubt or a pause looks like, how little it keeps, sampling, and that
neither a broken tracer nor a broken tool watcher ever breaks a run."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracerProvider, StatusCode

from keel import Agent, CheckResult, KeelSettings, Limits, RunContext, Runtime, check, tool
from keel.errors import ModelHTTPError
from keel.events import RunStarted
from keel.observability import Tracing
from keel.observability import _tracing as tracing_module
from keel.observability._tracing_setup import export_config
from keel.testing import MemoryStore, ScriptedModel, call
from tests.observability.tracing_scenario import memory_provider

NO_MODELS = KeelSettings.from_environ({})
ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@tool(side_effects="read")
def ping() -> str:
    """Answer pong."""
    return "pong"


def desk(*script: Any) -> Agent[str]:
    return Agent(name="desk", model=ScriptedModel(list(script)), tools=[ping])


def named(exporter: InMemorySpanExporter, name: str) -> Any:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_SERVICE_NAME": "desk"},
        {**ENDPOINT, "OTEL_SDK_DISABLED": "true"},
        {**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"},
        {**ENDPOINT, "OTEL_TRACES_EXPORTER": "console"},
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
    ],
)
def test_from_environ_gives_nothing_unless_an_otlp_http_endpoint_is_configured(
    environ: dict[str, str],
) -> None:
    assert Tracing.from_environ(environ) is None


def test_from_environ_reads_the_standard_variables() -> None:
    assert export_config(ENDPOINT) is not None
    base = export_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert base is not None
    assert base.endpoint == "http://collector:4318/v1/traces"
    own = export_config(
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:9999/custom"}
    )
    assert own is not None
    assert own.endpoint == "http://traces:9999/custom"  # used as it is
    assert export_config({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x"}) is not None

    tracing = Tracing.from_environ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing is not None
    assert tracing.capture_content is False
    tracing.shutdown()
    capture = {**ENDPOINT, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    tracing = Tracing.from_environ(capture)
    assert tracing is not None
    assert tracing.capture_content is True
    tracing.shutdown()
    tracing = Tracing.from_environ(capture, capture_content=False)
    assert tracing is not None
    assert tracing.capture_content is False
    tracing.shutdown()


def test_a_protocol_the_extra_does_not_bring_is_said_once_and_nothing_exported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="keel.observability"):
        assert Tracing.from_environ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) is None
    assert "http/protobuf" in caplog.text


def test_settings_the_sdk_refuses_turn_tracing_off_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "8")
    with caplog.at_level(logging.WARNING, logger="keel.observability"):
        assert Tracing.from_environ(ENDPOINT) is None
    assert "tracing is off" in caplog.text


def test_an_application_tracer_provider_is_used_rather_than_a_second_pipeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, exporter = memory_provider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    tracing = Tracing.from_environ(ENDPOINT)
    assert tracing is not None
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[tracing])
    assert asyncio.run(runtime.run(desk("hi"), "hi")).status == "completed"
    tracing.shutdown()  # not ours: flushed, left running
    assert {s.name for s in exporter.get_finished_spans()} >= {"invoke_agent desk"}
    provider.get_tracer("app").start_span("after").end()
    assert exporter.get_finished_spans()[-1].name == "after"


def test_without_the_otel_extra_tracing_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ImportError, match=r"keel-runtime\[otel\]"):
        Tracing()
    assert Tracing.from_environ(ENDPOINT) is None


def test_a_runtime_traces_nothing_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert Runtime(store=MemoryStore(), settings=NO_MODELS)._tracing is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    traced = Runtime(store=MemoryStore(), settings=NO_MODELS)
    assert traced._tracing is not None
    asyncio.run(traced.close())  # shuts the provider it made down
    mine = Tracing(NoOpTracerProvider())  # one passed in: no second one from the variables
    assert Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[mine])._tracing is None


# -- what runs look like ---------------------------------------------------------------------


async def test_a_model_failure_fails_the_chat_and_the_run_span() -> None:
    provider, exporter = memory_provider()
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[Tracing(provider)])
    bad = ModelHTTPError("bad request", status=400, model="acme:m")
    result = await runtime.run(desk(bad), "hi")
    assert result.status == "failed"
    chat = named(exporter, "chat m")  # the model the error names
    assert chat.attributes["gen_ai.provider.name"] == "acme"
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == "model_bad_request"
    assert chat.attributes["http.response.status_code"] == 400
    run = named(exporter, "invoke_agent desk")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["keel.run.status"] == "failed"
    assert run.attributes["error.type"] == "model_bad_request"


async def test_a_pause_ends_the_stretch_and_leaves_the_run_open() -> None:
    provider, exporter = memory_provider()
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[Tracing(provider)])
    down = ModelHTTPError("unavailable", status=503, model="acme:m")
    result = await runtime.run(desk(down), "hi")
    assert result.status == "paused"
    drive = named(exporter, "keel.drive desk")
    assert drive.attributes["keel.drive.outcome"] == "paused"
    assert drive.attributes["keel.pause.reason"] == "model_unavailable"
    assert [e.name for e in drive.events] == ["keel.paused"]
    assert not [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent")]


async def test_invalid_answers_and_the_switch_to_the_next_model_show_on_the_stretch() -> None:
    provider, exporter = memory_provider()
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[Tracing(provider)])
    first = ScriptedModel(["nope"] * 5, name="acme:first")
    agent = Agent(
        name="desk", model=[first, ScriptedModel(["42"], name="acme:second")], output_type=int
    )
    result = await runtime.run(agent, "a number")
    assert (result.status, result.output) == ("completed", 42)
    drive = named(exporter, "keel.drive desk")
    events = [(e.name, dict(e.attributes or {})) for e in drive.events]
    assert [name for name, _ in events] == [
        "keel.output_rejected",
        "keel.output_rejected",
        "keel.model_switched",
    ]
    assert events[-1][1] == {
        "keel.model.index": 1,
        "keel.model": "acme:second",
        "keel.switch.reason": "output_invalid",
    }
    assert "keel.output.error" not in events[0][1]  # content is off
    chats = [s.name for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    assert chats == ["chat first", "chat first", "chat first", "chat second"]


async def test_a_refused_tool_call_has_its_check_and_its_failed_call() -> None:
    provider, exporter = memory_provider()
    deny = check(
        lambda request: CheckResult.deny("not today"), name="no_ping", points=["tool_call"]
    )
    runtime = Runtime(
        store=MemoryStore(),
        settings=NO_MODELS,
        checks=[deny],
        observers=[Tracing(provider, capture_content=True)],
    )
    result = await runtime.run(desk(call("ping"), "ok"), "ping")
    assert result.status == "completed"
    checks = named(exporter, "keel.checks tool_call")
    assert checks.attributes["keel.checks.verdict"] == "deny"
    assert checks.attributes["keel.checks.decided_by"] == "no_ping"
    assert checks.attributes["keel.checks.reason"] == "not today"
    assert checks.events[0].attributes["keel.check.reason"] == "not today"
    refused = named(exporter, "execute_tool ping")
    assert refused.status.status_code is StatusCode.ERROR
    assert str(refused.attributes["error.type"]).startswith("check.")


async def test_a_call_whose_effect_is_in_doubt_says_so() -> None:
    @tool(side_effects="write", timeout_s=0.05)
    async def charge() -> str:
        """Charge a card (slowly)."""
        await asyncio.sleep(5)
        return "charged"

    provider, exporter = memory_provider()
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[Tracing(provider)])
    agent = Agent(name="desk", model=ScriptedModel([call("charge")]), tools=[charge])
    result = await runtime.run(agent, "charge")
    assert result.status == "awaiting_approval"
    span = named(exporter, "execute_tool charge")
    assert span.attributes["keel.tool.in_doubt"] is True
    assert span.attributes["error.type"] == "tool_timeout"
    assert span.status.status_code is StatusCode.ERROR


# -- what tracing keeps, and sampling ----------------------------------------------------------


def _start(run_id: str) -> tuple[Any, list[RunStarted]]:
    from keel._core.fold import start

    started = RunStarted(
        run_id=run_id, thread_id=run_id, agent="desk", model="m", input="x", limits=Limits()
    )
    return start(started), [started]


def test_the_runs_followed_at_once_are_bounded_and_shutdown_lets_go_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing_module, "MAX_RUNS", 2)
    provider, exporter = memory_provider()
    tracing = Tracing(provider)
    for number in range(3):
        tracing.observed(*_start(f"run-{number}"))
    drives = exporter.get_finished_spans()
    assert [dict(s.attributes or {})["keel.drive.outcome"] for s in drives] == ["unknown"]
    tracing.shutdown()
    assert len(exporter.get_finished_spans()) == 3
    tracing.observed(_start("run-9")[0], [])  # nothing to say: nothing done
    assert tracing.force_flush()


async def test_a_sampler_that_drops_runs_drops_all_of_them_quietly() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for tracer_provider in (provider, NoOpTracerProvider()):
        runtime = Runtime(
            store=MemoryStore(), settings=NO_MODELS, observers=[Tracing(tracer_provider)]
        )
        result = await runtime.run(desk(call("ping"), "done"), "ping")
        assert result.status == "completed"
    assert exporter.get_finished_spans() == ()


class ForeignTracer(trace.Tracer):
    """A tracer that is not the SDK's (a vendor's wrapper, say) over one that is."""

    def __init__(self, inner: trace.Tracer) -> None:
        self.inner = inner

    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.start_as_current_span(*args, **kwargs)


class ForeignProvider(trace.TracerProvider):
    def __init__(self, inner: TracerProvider) -> None:
        self.inner = inner

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return ForeignTracer(self.inner.get_tracer(*args, **kwargs))


async def test_a_tracer_that_is_not_the_sdks_gets_the_same_spans_in_the_same_tree() -> None:
    provider, exporter = memory_provider()
    runtime = Runtime(
        store=MemoryStore(), settings=NO_MODELS, observers=[Tracing(ForeignProvider(provider))]
    )
    result = await runtime.run(desk(call("ping"), "done"), "ping")
    assert result.status == "completed"
    drive = named(exporter, "keel.drive desk")
    tool_span = named(exporter, "execute_tool ping")
    chats = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert len(chats) == 2
    for span in [tool_span, *chats]:
        assert span.parent is not None
        assert span.parent.span_id == drive.context.span_id
        assert span.context.trace_id == drive.context.trace_id
    assert dict(tool_span.attributes or {})["gen_ai.tool.name"] == "ping"


async def test_the_sdks_limit_on_attribute_length_is_kept() -> None:
    from opentelemetry.sdk.trace import SpanLimits

    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_attribute_length=8))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtime = Runtime(
        store=MemoryStore(),
        settings=NO_MODELS,
        observers=[Tracing(provider, capture_content=True)],
    )
    await runtime.run(desk(call("ping"), "a long final answer"), "ping")
    spans = exporter.get_finished_spans()
    values = [v for s in spans for v in (s.attributes or {}).values() if isinstance(v, str)]
    assert values
    assert max(len(v) for v in values) <= 8


# -- nothing breaks a run ----------------------------------------------------------------------


class BrokenProvider(NoOpTracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("collector misconfigured")


class BrokenWatcher:
    """An observer whose tool watching fails on the way in, or on the way out."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.seen = 0

    def observed(self, state: object, events: object) -> None:
        self.seen += 1

    def tool_context(self, context: RunContext[Any]) -> Any:
        if self.where == "enter":
            raise RuntimeError("no context")

        @contextmanager
        def failing_exit() -> Iterator[None]:
            yield
            raise RuntimeError("no exit")

        return failing_exit()


@pytest.mark.parametrize("broken", ["tracer", "enter", "exit"])
async def test_a_broken_tracer_or_watcher_never_breaks_a_run(
    broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    observer: Any = Tracing(BrokenProvider()) if broken == "tracer" else BrokenWatcher(broken)
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[observer])
    with caplog.at_level(logging.WARNING, logger="keel.observability"):
        first = await runtime.run(desk(call("ping"), "done"), "ping")
        second = await runtime.run(desk(call("ping"), "done"), "ping")
    assert (first.status, second.status) == ("completed", "completed")
    assert first.messages[-2].content == "pong"  # the tool ran
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1  # once per kind of failure
    assert type(observer).__name__ in failures[0].getMessage()
