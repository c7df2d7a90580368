"""``Tracing``: every run an OpenTelemetry trace, following the GenAI semantic conventions.

::

    from keel.observability import Tracing

    runtime = Runtime(observers=[Tracing()])       # the global tracer provider
    # or nothing at all: with OTEL_EXPORTER_OTLP_ENDPOINT set and the otel extra installed,
    # every Runtime traces by default (Tracing.from_environ()).

It is an observer (:mod:`keel._runtime.observers`): it reads the events each process journals
and makes spans of them after the fact, with the start and end times the events recorded, so
it never waits for anything and cannot hold a run up; the SDK's batch span processor exports
in the background. One thing is live: while a tool runs, its ``execute_tool`` span is the
current span, so that an instrumented HTTP client (or ``opentelemetry.propagate.inject``)
sends the trace on. What the spans are: :mod:`keel.observability._tracing_spans`.

Message content (inputs, answers, tool arguments and results) is recorded only with
``capture_content=True`` (or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` for
:meth:`Tracing.from_environ`); what is recorded is what the journal holds, with the secrets
the runtime knows already masked.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from keel._core.eventbase import Event
from keel._core.events import RunStarted
from keel._core.state import RunState
from keel._tools import RunContext
from keel.observability._tracing_setup import export_config, owned_provider, require_otel

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext, Tracer, TracerProvider

    from keel.observability._tracing_emit import Emitter
    from keel.observability._tracing_spans import RunTrace

__all__ = ["Tracing"]

_log = logging.getLogger("keel.observability")

#: Runs followed at once in one process; past it the least recent is let go (its open spans
#: end), so that runs taken over by other processes cannot pile up here.
MAX_RUNS = 10_000
_SCOPE = "keel"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keel-runtime")
    except PackageNotFoundError:  # pragma: no cover - a source checkout not installed
        return ""


class Tracing:
    """Turns the runs this process journals into OpenTelemetry spans.

    Args:
        tracer_provider: Where the spans go (``None``: OpenTelemetry's global provider).
        capture_content: Record message content too: inputs, answers, the agent's
            instructions, tool arguments and results, checks' reasons. Off by default.

    Raises ``ImportError`` naming the extra when OpenTelemetry is not installed.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, capture_content: bool = False
    ) -> None:
        require_otel()
        self._provider = tracer_provider
        self.capture_content = capture_content
        self._owns_provider = False
        self._tracer: Tracer | None = None
        self._emitter: Emitter | None = None
        self._runs: OrderedDict[str, RunTrace] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Tracing(capture_content={self.capture_content})"

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, capture_content: bool | None = None
    ) -> Tracing | None:
        """The tracing the standard ``OTEL_*`` variables configure, or ``None``.

        ``None`` unless an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or
        ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``) and the otel extra is installed; also
        ``None`` with ``OTEL_SDK_DISABLED=true``, ``OTEL_TRACES_EXPORTER=none`` or a protocol
        other than ``http/protobuf``. Spans go to the application's tracer provider when it set
        one up globally (the OpenTelemetry SDK's), else to one of Keel's own exporting over
        OTLP/HTTP in the background, with ``OTEL_SERVICE_NAME`` (default ``keel``).
        ``capture_content`` defaults to ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.
        """
        env = os.environ if environ is None else environ
        config = export_config(env)
        if config is None:
            return None
        try:
            require_otel()
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
        except ImportError:
            return None
        capture = config.capture_content if capture_content is None else capture_content
        current = trace.get_tracer_provider()
        if isinstance(current, SDKTracerProvider):
            return cls(current, capture_content=capture)  # the application's own pipeline
        try:
            provider = owned_provider(config, env)
        except ImportError:  # the SDK without the OTLP/HTTP exporter
            return None
        except Exception as exc:  # noqa: BLE001 - e.g. OTEL_BSP_* the SDK refuses
            _log.warning("tracing is off: the OTEL_* settings were refused (%s)", exc)
            return None
        tracing = cls(provider, capture_content=capture)
        tracing._owns_provider = True
        return tracing

    # -- the observer -------------------------------------------------------------------------

    def observed(self, state: RunState, events: Sequence[Event]) -> None:
        """Make the spans of events just journaled (see the module docstring)."""
        if not events:
            return
        from keel.observability._tracing_spans import RunTrace

        run_id = state.run_id
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                if state.status == "queued" and isinstance(events[0], RunStarted):
                    return  # accepted into the queue: its spans begin where it is driven
                tracer, emitter = self._pipeline()
                run = RunTrace(tracer, emitter, state, capture=self.capture_content)
                self._runs[run_id] = run
                if len(self._runs) > MAX_RUNS:
                    _, oldest = self._runs.popitem(last=False)
                    oldest.stop("unknown", oldest.last_at)
            else:
                self._runs.move_to_end(run_id)
            try:
                run.observe(state, events)
            finally:
                if state.status != "running":  # it ended, or waits: nothing open here
                    self._runs.pop(run_id, None)

    def tool_context(self, context: RunContext[Any]) -> AbstractContextManager[object] | None:
        """While the tool runs, its ``execute_tool`` span is the current span."""
        with self._lock:
            run = self._runs.get(context.run_id)
            live = None if run is None else run.tools.get(context.tool_call_id)
        if live is None:
            return None
        # The span is made when the call ends; meanwhile its context is current, so that
        # what the tool starts or sends on (traceparent) hangs under it.
        return _Current(live[0].get_span_context())

    # -- the pipeline ---------------------------------------------------------------------------

    def _pipeline(self) -> tuple[Tracer, Emitter]:
        tracer, emitter = self._tracer, self._emitter
        if tracer is not None and emitter is not None:
            return tracer, emitter
        from opentelemetry import trace

        from keel.observability._tracing_emit import emitter_for

        provider = self._provider if self._provider is not None else trace.get_tracer_provider()
        tracer = provider.get_tracer(_SCOPE, _version())
        emitter = emitter_for(tracer)
        if isinstance(tracer, trace.ProxyTracer):
            return tracer, emitter  # no global provider yet: ask again next time
        self._tracer, self._emitter = tracer, emitter
        return tracer, emitter

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every span ended so far (blocks up to ``timeout_millis``); whether it did."""
        provider = self._provider
        flush = getattr(provider, "force_flush", None)
        return bool(flush(timeout_millis)) if callable(flush) else True

    def shutdown(self) -> None:
        """Let go of the runs followed here and, for a provider :meth:`from_environ` made,
        export what is left and shut it down (blocks up to the exporter's timeout)."""
        with self._lock:
            runs, self._runs = list(self._runs.values()), OrderedDict()
        for run in runs:
            run.stop("unknown", run.last_at)
        if self._owns_provider:
            shutdown = getattr(self._provider, "shutdown", None)
            if callable(shutdown):
                shutdown()


class _Current(AbstractContextManager[object]):
    """A span context made current (``use_span`` without its generator and its error
    handling, which a context that records nothing does not need)."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: SpanContext) -> None:
        self._span = span
        self._token: object = None

    def __enter__(self) -> object:
        from opentelemetry import context, trace

        self._token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(self._span)))
        return None

    def __exit__(self, *exc_info: object) -> None:
        from opentelemetry import context

        context.detach(self._token)  # type: ignore[arg-type]
