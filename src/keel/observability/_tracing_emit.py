"""Spans described bit by bit, and handed over finished.

Keel's spans are made after the fact, from journaled events: by the time one is made, its
start, its parent and (soon) its end are known. Starting a live SDK span for each costs tens
of microseconds that buy nothing here (a sampler call, a lock, context bookkeeping, attribute
cleaning), which is more than an agent step costs on its own. So a span is first a
:class:`Draft` (ids chosen at once, so children can name their parent), and when it ends an
:class:`Emitter` hands it over:

- :class:`SDKEmitter`, for the OpenTelemetry SDK's tracers: a finished ``ReadableSpan``
  straight to the tracer's span processors (``on_end``), as the SDK would on ``end()``. The
  span processors' ``on_start`` is not called: these spans are finished when they are made.
  A trace the sampler dropped makes nothing.
- :class:`APIEmitter`, for any other tracer: ``start_span`` and ``end`` with the recorded
  times, asking the SDK's id generator (when it is one) for the draft's ids.

See docs/decisions/0032-spans-are-made-finished.md.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, Tracer

from keel.observability._tracing_setup import forced_ids, install_forced_ids

__all__ = ["APIEmitter", "Draft", "Emitter", "SDKEmitter", "SpanLike", "emitter_for"]

_UNSET = Status(StatusCode.UNSET)


class SpanLike(Protocol):
    """What Keel does with a span between making it and ending it."""

    def get_span_context(self) -> SpanContext: ...

    def set_attribute(self, key: str, value: Any) -> None: ...

    def set_attributes(self, attributes: dict[str, Any]) -> None: ...

    def set_status(self, status: Status) -> None: ...

    def add_event(self, name: str, attributes: dict[str, Any], *, timestamp: int) -> None: ...

    def end(self, end_time: int) -> None: ...


class Emitter(Protocol):
    """Makes spans of one trace for one tracing pipeline."""

    def start(
        self,
        name: str,
        *,
        trace_of: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start_ns: int,
        attributes: dict[str, Any],
        span_id: int | None = None,
    ) -> SpanLike:
        """A span in ``trace_of``'s trace (its id, flags and state) under ``parent`` (a root
        span without), with ``span_id`` when given."""
        ...


class Draft:
    """A span being described; emitted when :meth:`end` is called (once)."""

    __slots__ = (
        "_emitter",
        "attributes",
        "context",
        "events",
        "kind",
        "name",
        "parent",
        "start_ns",
        "status",
    )

    def __init__(
        self,
        emitter: SDKEmitter,
        name: str,
        *,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start_ns: int,
        attributes: dict[str, Any],
    ) -> None:
        self._emitter: SDKEmitter | None = emitter
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.start_ns = start_ns
        self.attributes = attributes
        self.events: list[tuple[str, dict[str, Any], int]] = []
        self.status: Status | None = None

    def get_span_context(self) -> SpanContext:
        return self.context

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)

    def set_status(self, status: Status) -> None:
        self.status = status

    def add_event(self, name: str, attributes: dict[str, Any], *, timestamp: int) -> None:
        self.events.append((name, attributes, timestamp))

    def end(self, end_time: int) -> None:
        """Hand the span over, ending at ``end_time``; later calls do nothing."""
        emitter, self._emitter = self._emitter, None
        if emitter is not None:
            emitter.emit(self, max(end_time, self.start_ns))


class SDKEmitter:
    """Finished spans straight to an SDK tracer's span processors."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry.sdk.trace import Event, ReadableSpan

        self._readable = ReadableSpan
        self._event = Event
        self._processor = tracer.span_processor
        self._resource = tracer.resource
        self._scope = getattr(tracer, "_instrumentation_scope", None)
        self._info = getattr(tracer, "instrumentation_info", None)
        self._new_id = tracer.id_generator.generate_span_id
        limits = getattr(tracer, "_span_limits", None)
        #: Only when a limit on attribute values is set are attributes bounded (a cost).
        self._limits = limits if getattr(limits, "max_attribute_length", None) else None

    def start(
        self,
        name: str,
        *,
        trace_of: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start_ns: int,
        attributes: dict[str, Any],
        span_id: int | None = None,
    ) -> Draft:
        context = SpanContext(
            trace_of.trace_id,
            self._new_id() if span_id is None else span_id,
            is_remote=False,
            trace_flags=trace_of.trace_flags,
            trace_state=trace_of.trace_state,
        )
        return Draft(
            self,
            name,
            context=context,
            parent=parent,
            kind=kind,
            start_ns=start_ns,
            attributes=attributes,
        )

    def emit(self, draft: Draft, end_ns: int) -> None:
        if not draft.context.trace_flags.sampled:
            return  # the SDK would have made a non-recording span: nothing to export
        attributes: Any = {k: v for k, v in draft.attributes.items() if v is not None}
        if self._limits is not None:
            from opentelemetry.attributes import BoundedAttributes

            attributes = BoundedAttributes(
                self._limits.max_span_attributes,
                attributes,
                immutable=True,
                max_value_len=self._limits.max_attribute_length,
            )
        events = [self._event(name, found, timestamp) for name, found, timestamp in draft.events]
        span = self._readable(
            draft.name,
            context=draft.context,
            parent=draft.parent,
            resource=self._resource,
            attributes=attributes,
            events=events,
            kind=draft.kind,
            instrumentation_info=self._info,
            instrumentation_scope=self._scope,
            start_time=draft.start_ns,
            end_time=end_ns,
            status=_UNSET if draft.status is None else draft.status,
        )
        self._processor.on_end(span)


class APIEmitter:
    """Any other tracer: a live span from ``start_span``, with the draft's start time.

    Its ids are the tracer's, except where the SDK's id generator can be told (the run-level
    span's derived ids); children hang under the spans' real contexts.
    """

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        install_forced_ids(tracer)

    def start(
        self,
        name: str,
        *,
        trace_of: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start_ns: int,
        attributes: dict[str, Any],
        span_id: int | None = None,
    ) -> SpanLike:
        context = Context()
        if parent is not None:
            context = trace.set_span_in_context(NonRecordingSpan(parent), Context())
        forcing = (
            contextlib.nullcontext()
            if span_id is None
            else forced_ids(trace_of.trace_id if parent is None else None, span_id)
        )
        with forcing:
            return _Live(
                self._tracer.start_span(
                    name,
                    context=context,
                    kind=kind,
                    attributes={k: v for k, v in attributes.items() if v is not None},
                    start_time=start_ns,
                )
            )


class _Live:
    """A live span, as :class:`SpanLike` (``None`` attributes left out, as drafts do)."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def get_span_context(self) -> SpanContext:
        return self._span.get_span_context()

    def set_attribute(self, key: str, value: Any) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self._span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def set_status(self, status: Status) -> None:
        self._span.set_status(status)

    def add_event(self, name: str, attributes: dict[str, Any], *, timestamp: int) -> None:
        self._span.add_event(name, attributes, timestamp=timestamp)

    def end(self, end_time: int) -> None:
        self._span.end(end_time)


def emitter_for(tracer: Tracer) -> Emitter:
    """The quickest emitter that serves ``tracer``."""
    try:
        from opentelemetry.sdk.trace import Tracer as SDKTracer
    except ImportError:  # pragma: no cover - the API without the SDK
        return APIEmitter(tracer)
    if isinstance(tracer, SDKTracer) and hasattr(tracer, "span_processor"):
        enabled = getattr(getattr(tracer, "_tracer_config", None), "is_enabled", True)
        if enabled:
            return SDKEmitter(tracer)
    return APIEmitter(tracer)
