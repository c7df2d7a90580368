"""The trace a run continues: the caller's current OpenTelemetry span, as a W3C carrier that
``RunStarted`` journals (``trace_context``), so that the run's spans join the caller's trace in
whichever process drives it (see :mod:`keel.observability`)."""

from __future__ import annotations

import sys

__all__ = ["caller_trace_context"]


def caller_trace_context() -> dict[str, str] | None:
    """The W3C trace context of the caller's current OpenTelemetry span, if it has one, for
    the run to continue its trace. Nothing is imported: a process that never imported
    OpenTelemetry has no current span."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        found = trace.get_current_span().get_span_context()
        if not found.is_valid:
            return None
        flags = int(found.trace_flags) & 0xFF
        carrier = {"traceparent": f"00-{found.trace_id:032x}-{found.span_id:016x}-{flags:02x}"}
        state = found.trace_state.to_header() if found.trace_state else ""
    except Exception:  # noqa: BLE001 - tracing never stands in the way of a run
        return None
    if state:
        carrier["tracestate"] = state
    return carrier
