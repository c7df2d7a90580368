"""The spans of one run in one process, made from its journaled events after the fact.

Every span gets its start and end from the events (``at``, ``latency_ms``), never from when
it is made. The tree of a run::

    invoke_agent {agent}            the run, start to end; exported by whoever sees it end
    ├── keel.drive {agent}          one stretch of driving in one process (start/resume → stop)
    │   ├── chat {model}            a model call; with retries or a fallback, one child each
    │   │   └── chat {model}        ... per attempt
    │   ├── execute_tool {tool}     a tool call: live while the tool runs (the current span)
    │   └── keel.checks {point}     the checks (policies, guardrails) at one point
    └── keel.approval {tool}        a person's decision, from the request to the decision

The run-level span's ids are derived from the run (or taken from the caller's trace context,
journaled with ``RunStarted``), so the spans of every process that drives the run, at any
time, hang in one tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from keel._core.eventbase import ErrorInfo, Event
from keel._core.events import (
    ApprovalRequested,
    CallDecided,
    CancelRequested,
    ChecksDecided,
    ModelFailed,
    ModelResponded,
    ModelSwitched,
    OutputRejected,
    RunDequeued,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
)
from keel._core.messages import AssistantMessage, Attempt, SystemMessage
from keel._core.state import RunState
from keel.observability import _tracing_attrs as a
from keel.observability._tracing_emit import Emitter, SpanLike

__all__ = ["RunTrace"]

_MESSAGE_CHARS = 512
_W3C = TraceContextTextMapPropagator()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _caller(state: RunState) -> SpanContext | None:
    """The caller's span journaled with the run, if valid."""
    carrier = state.trace_context
    if not carrier:
        return None
    found = trace.get_current_span(_W3C.extract(carrier)).get_span_context()
    return found if found.is_valid else None


def _error(span: SpanLike, error: ErrorInfo, **more: Any) -> None:
    span.set_attributes({a.ERROR_TYPE: error.code, **more})
    span.set_status(Status(StatusCode.ERROR, error.message[:_MESSAGE_CHARS]))


class RunTrace:
    """Spans of one run in this process (see the module docstring)."""

    def __init__(self, tracer: Tracer, emitter: Emitter, state: RunState, *, capture: bool) -> None:
        self.tracer = tracer
        self.emitter = emitter
        self.capture = capture
        self.run_id = state.run_id
        self.agent = state.agent
        #: When the latest event seen here happened.
        self.last_at = state.updated_at
        self._caller = _caller(state)
        self.run_name = f"invoke_agent {state.agent}"
        if self._caller is not None:
            parent = self._caller
            trace_id, flags, trace_state = parent.trace_id, parent.trace_flags, parent.trace_state
        else:
            trace_id = a.derived_id(state.run_id, "trace", 128)
            flags, trace_state = self._root_flags(trace_id), None
        self._trace_id = trace_id
        self.span_id = a.derived_id(state.run_id, "run", 64)
        #: The run-level span, as its children name it (whichever process exports it).
        self.run_span = SpanContext(
            trace_id, self.span_id, is_remote=True, trace_flags=flags, trace_state=trace_state
        )
        self._common = {
            "keel.run.id": state.run_id,
            a.AGENT_NAME: state.agent,
            a.CONVERSATION_ID: state.thread_id,
        }
        self.stretch: SpanLike | None = None
        #: Live ``execute_tool`` spans by call id, with their start (seconds).
        self.tools: dict[str, tuple[SpanLike, float]] = {}

    def _root_flags(self, trace_id: int) -> TraceFlags:
        """Whether the tracer's sampler keeps a run whose trace begins with it (every process
        asks alike: samplers decide by trace id)."""
        sampler = getattr(self.tracer, "sampler", None)
        if sampler is None:
            return TraceFlags(TraceFlags.SAMPLED)
        result = sampler.should_sample(Context(), trace_id, self.run_name)
        sampled = result.decision.is_sampled()
        return TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)

    # -- the parts ---------------------------------------------------------------------------------

    @property
    def parent(self) -> SpanContext:
        """Where a step's span hangs: the stretch under way here, else the run."""
        return self.stretch.get_span_context() if self.stretch is not None else self.run_span

    def _span(
        self,
        name: str,
        start: float,
        attributes: dict[str, Any],
        *,
        parent: SpanContext | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        span_id: int | None = None,
        root: bool = False,
    ) -> SpanLike:
        """A span of this run's trace under ``parent`` (default :attr:`parent`; ``root``:
        none), emitted when it ends (``None`` attributes are left out then)."""
        return self.emitter.start(
            name,
            trace_of=self.run_span,
            parent=None if root else (self.parent if parent is None else parent),
            kind=kind,
            start_ns=_ns(start),
            attributes={**self._common, **attributes},
            span_id=span_id,
        )

    def _note(self, name: str, at: float, attributes: dict[str, Any]) -> None:
        """A span event on the stretch under way (nothing when none is)."""
        if self.stretch is not None:
            found = {k: v for k, v in attributes.items() if v is not None}
            self.stretch.add_event(name, found, timestamp=_ns(at))

    def observe(self, state: RunState, events: Sequence[Event]) -> None:
        """Make the spans of ``events``, just journaled; ``state`` is the run after them."""
        if isinstance(events[0], RunStarted):
            events = events[:1]  # a fork's copied steps are its source's, traced there
        for event in events:
            handle = _HANDLERS.get(type(event))
            if handle is not None:
                handle(self, state, event)
        self.last_at = state.updated_at
        if state.status != "running":
            self.stop(state.status, state.updated_at)

    # -- stretches and the run ---------------------------------------------------------------------

    def begin(self, reason: str, at: float) -> None:
        """A stretch of driving starts here."""
        if self.stretch is not None:
            self.stretch.end(_ns(at))
        self.stretch = self._span(
            f"keel.drive {self.agent}",
            at,
            {"keel.drive.reason": reason},
            parent=self.run_span,
        )

    def stop(self, outcome: str, at: float) -> None:
        """The run stopped here (it ended, waits, or is no longer followed here): the stretch
        and what is left of it end."""
        for span, _ in self.tools.values():
            span.set_attribute("keel.tool.abandoned", True)
            span.end(_ns(at))
        self.tools.clear()
        if self.stretch is not None:
            self.stretch.set_attribute("keel.drive.outcome", outcome)
            self.stretch.end(_ns(at))
        self.stretch = None

    def started(self, state: RunState, event: RunStarted) -> None:
        if not event.queued:
            self.begin("forked" if event.forked_from else "started", event.at)

    def dequeued(self, state: RunState, event: RunDequeued) -> None:
        self.begin("dequeued", event.at)

    def resumed(self, state: RunState, event: RunResumed) -> None:
        self.begin("resumed", event.at)

    def paused(self, state: RunState, event: RunPaused) -> None:
        if self.stretch is not None:
            self.stretch.set_attribute("keel.pause.reason", event.reason.code)
        self._note("keel.paused", event.at, {"keel.pause.reason": event.reason.code})

    def cancel_requested(self, state: RunState, event: CancelRequested) -> None:
        self._note("keel.cancel_requested", event.at, {"keel.cancel.reason": event.reason.code})

    def finished(self, state: RunState, event: RunFinished) -> None:
        """The run ended: its span, with the ids every process derived for it."""
        provider, model = a.model_parts(state.model)
        attributes: dict[str, Any] = {
            a.OPERATION: "invoke_agent",
            a.PROVIDER: provider,
            a.REQUEST_MODEL: model,
            "keel.run.status": event.status,
            "keel.run.steps": state.step,
            "keel.run.tool_calls": state.tool_calls,
            "keel.run.cost_usd": state.cost_usd,
            "keel.tenant": state.tenant,
            "keel.run.forked_from": state.forked_from,
            **a.usage_attributes(state.usage),
        }
        if self.capture:
            attributes[a.INPUT_MESSAGES] = a.text_json("user", [state.input])
            if state.output is not None:
                attributes[a.OUTPUT_MESSAGES] = a.text_json(
                    "assistant", [a.value_text(state.output)]
                )
            first = state.messages[0] if state.messages else None
            if isinstance(first, SystemMessage):
                attributes[a.SYSTEM_INSTRUCTIONS] = a.instructions_json(first.content)
        span = self._span(
            self.run_name,
            state.started_at,
            attributes,
            parent=self._caller,
            span_id=self.span_id,
            root=self._caller is None,
        )
        if event.error is not None:
            _error(span, event.error)
        span.end(_ns(event.at))

    # -- model calls -------------------------------------------------------------------------------

    def _chat(
        self,
        *,
        step: int,
        requested: str,
        at: float,
        latency_ms: float,
        attempts: tuple[Attempt, ...],
        attributes: dict[str, Any],
    ) -> SpanLike:
        provider, model = a.model_parts(requested)
        start = at - latency_ms / 1000
        span = self._span(
            f"chat {model}",
            start,
            {
                a.OPERATION: "chat",
                a.PROVIDER: provider,
                a.REQUEST_MODEL: model,
                "keel.step": step,
                "keel.model.requested": requested,
                "keel.attempts": len(attempts) or None,
                **attributes,
            },
            kind=SpanKind.CLIENT,
        )
        if len(attempts) > 1:
            self._attempts(span, start, at, attempts)
        return span

    def _attempts(
        self, chat: SpanLike, start: float, end: float, attempts: tuple[Attempt, ...]
    ) -> None:
        """One child span per attempt (retries, fallbacks), laid end to end as they ran."""
        parent = chat.get_span_context()
        at = start
        for number, attempt in enumerate(attempts, 1):
            at += attempt.waited_ms / 1000
            provider, model = a.model_parts(attempt.model)
            span = self._span(
                f"chat {model}",
                min(at, end),
                {
                    a.OPERATION: "chat",
                    a.PROVIDER: provider,
                    a.REQUEST_MODEL: model,
                    "keel.model": attempt.model,
                    "keel.attempt": number,
                    "keel.attempt.waited_ms": attempt.waited_ms or None,
                    "keel.attempt.skipped": attempt.skipped or None,
                },
                parent=parent,
                kind=SpanKind.CLIENT,
            )
            if not attempt.ok:
                code = attempt.code or "circuit_open"
                _error(span, ErrorInfo(code=code, message=attempt.message or code))
            at += attempt.latency_ms / 1000
            span.end(_ns(min(at, end)))

    def model_responded(self, state: RunState, event: ModelResponded) -> None:
        requested = event.attempts[0].model if event.attempts else event.model
        _, served = a.model_parts(event.model)
        attributes: dict[str, Any] = {
            a.RESPONSE_MODEL: served,
            a.FINISH_REASONS: [event.finish_reason] if event.finish_reason else None,
            "keel.model": event.model,
            "keel.model.fallback": event.model != requested or None,
            "keel.cached": event.cached or None,
            "keel.route": event.route,
            "keel.cost_usd": event.cost_usd,
            **a.usage_attributes(event.usage),
        }
        if self.capture:
            attributes[a.OUTPUT_MESSAGES] = a.output_json(event.message, event.finish_reason)
            sent = _sent_before(state, event.message)
            if sent is not None:
                attributes[a.INPUT_MESSAGES] = a.input_json(sent)
        span = self._chat(
            step=event.step,
            requested=requested,
            at=event.at,
            latency_ms=event.latency_ms,
            attempts=event.attempts,
            attributes=attributes,
        )
        span.end(_ns(event.at))

    def model_failed(self, state: RunState, event: ModelFailed) -> None:
        requested = event.attempts[0].model if event.attempts else event.model
        span = self._chat(
            step=event.step,
            requested=requested,
            at=event.at,
            latency_ms=event.latency_ms,
            attempts=event.attempts,
            attributes={"keel.model": event.model, "keel.retryable": event.retryable},
        )
        _error(span, event.error, **({a.HTTP_STATUS: event.status} if event.status else {}))
        span.end(_ns(event.at))

    def model_switched(self, state: RunState, event: ModelSwitched) -> None:
        model = state.models[event.model_index] if event.model_index < len(state.models) else None
        attributes = {
            "keel.model.index": event.model_index,
            "keel.model": model,
            "keel.switch.reason": event.reason.code,
        }
        self._note("keel.model_switched", event.at, attributes)

    def output_rejected(self, state: RunState, event: OutputRejected) -> None:
        attributes = {
            "keel.step": event.step,
            "keel.output.withheld_by": event.withheld,
            "keel.output.error": event.error if self.capture else None,
        }
        self._note("keel.output_rejected", event.at, attributes)

    # -- tools -------------------------------------------------------------------------------------

    def tool_started(self, state: RunState, event: ToolCallStarted) -> None:
        """A call is about to run: its span starts now, and is current while the tool runs."""
        call = event.call
        earlier = self.tools.pop(call.id, None)
        if earlier is not None:
            earlier[0].end(_ns(event.at))
        span = self._span(
            f"execute_tool {call.name}",
            event.at,
            {
                a.OPERATION: "execute_tool",
                a.TOOL_NAME: call.name,
                a.TOOL_CALL_ID: call.id,
                a.TOOL_TYPE: "function",
                "keel.step": event.step,
                "keel.tool.attempt": event.attempt,
                "keel.tool.idempotency_key": event.idempotency_key,
                a.TOOL_ARGUMENTS: call.arguments if self.capture else None,
            },
        )
        self.tools[call.id] = (span, event.at)

    def tool_finished(self, state: RunState, event: ToolCallFinished) -> None:
        call = event.call
        live = self.tools.pop(call.id, None)
        attributes: dict[str, Any] = {
            "keel.tool.attempts": event.attempts if event.attempts > 1 else None,
            "keel.tool.result_chars": event.result_chars,
            a.TOOL_RESULT: event.result if self.capture else None,
        }
        if live is None:  # refused before it ran, or started in another process
            start = event.at - event.latency_ms / 1000
            span = self._span(
                f"execute_tool {call.name}",
                start,
                {
                    a.OPERATION: "execute_tool",
                    a.TOOL_NAME: call.name,
                    a.TOOL_CALL_ID: call.id,
                    a.TOOL_TYPE: "function",
                    "keel.step": event.step,
                    a.TOOL_ARGUMENTS: call.arguments if self.capture else None,
                },
            )
        else:
            span, start = live
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if event.error is not None:
            _error(span, event.error)
        span.end(_ns(start + event.latency_ms / 1000))

    def tool_in_doubt(self, state: RunState, event: ToolCallInDoubt) -> None:
        live = self.tools.pop(event.call.id, None)
        if live is None:
            return
        span = live[0]
        span.set_attribute("keel.tool.in_doubt", True)
        _error(span, event.reason)
        span.end(_ns(event.at))

    # -- checks and people -------------------------------------------------------------------------

    def checks(self, state: RunState, event: ChecksDecided) -> None:
        span = self._span(
            f"keel.checks {event.point}",
            event.at,
            {
                "keel.step": event.step,
                "keel.checks.point": event.point,
                "keel.checks.subject": event.subject,
                "keel.checks.verdict": event.verdict,
                "keel.checks.checks": [r.check for r in event.results] or None,
                "keel.checks.decided_by": event.deciding_check or None,
                "keel.checks.reason": event.reason if self.capture else None,
            },
        )
        for record in event.results:
            found = {"keel.check.name": record.check, "keel.check.verdict": record.verdict}
            if self.capture and record.reason:
                found["keel.check.reason"] = record.reason
            span.add_event("keel.check", found, timestamp=_ns(event.at))
        span.end(_ns(event.at))

    def approval_requested(self, state: RunState, event: ApprovalRequested) -> None:
        attributes = {
            "keel.approval.calls": [p.call.id for p in event.calls],
            "keel.approval.kinds": [p.kind for p in event.calls],
        }
        self._note("keel.approval_requested", event.at, attributes)

    def call_decided(self, state: RunState, event: CallDecided) -> None:
        """A person decided: the span covers the wait, from the request to the decision."""
        since = state.pending_since or event.at
        call = state.awaiting.get(event.call_id)
        name = call.name if call is not None else event.call_id
        span = self._span(
            f"keel.approval {name}",
            min(since, event.at),
            {
                a.TOOL_CALL_ID: event.call_id,
                a.TOOL_NAME: None if call is None else call.name,
                "keel.approval.decision": event.decision,
                "keel.approval.by": event.by,
                "keel.approval.wait_ms": round(max(event.at - since, 0.0) * 1000, 3),
                "keel.approval.reason": event.reason if self.capture else None,
            },
            parent=self.run_span,
        )
        span.end(_ns(event.at))


def _sent_before(state: RunState, message: AssistantMessage) -> list[Any] | None:
    """The messages a model was sent for the turn that answered ``message`` (``None`` if a
    later event of the batch replaced that answer)."""
    messages = state.messages
    for index in range(len(messages) - 1, -1, -1):
        if messages[index] is message:
            return list(messages[:index])
    return None


_HANDLERS: dict[type[Event], Callable[[RunTrace, RunState, Any], None]] = {
    RunStarted: RunTrace.started,
    RunDequeued: RunTrace.dequeued,
    RunResumed: RunTrace.resumed,
    RunPaused: RunTrace.paused,
    CancelRequested: RunTrace.cancel_requested,
    RunFinished: RunTrace.finished,
    ModelResponded: RunTrace.model_responded,
    ModelFailed: RunTrace.model_failed,
    ModelSwitched: RunTrace.model_switched,
    OutputRejected: RunTrace.output_rejected,
    ToolCallStarted: RunTrace.tool_started,
    ToolCallFinished: RunTrace.tool_finished,
    ToolCallInDoubt: RunTrace.tool_in_doubt,
    ChecksDecided: RunTrace.checks,
    ApprovalRequested: RunTrace.approval_requested,
    CallDecided: RunTrace.call_decided,
}
"""What each kind of event makes (kinds not listed make nothing)."""
