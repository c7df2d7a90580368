"""Structured logs: one record per meaningful event of a run, and formatters for them.

:class:`Logging` is an observer that writes to the ``keel.runs`` logger; every record (its
own and, inside a drive, those of Keel's other loggers such as ``keel.runtime``) carries
``run_id``, ``thread_id``, ``agent``, ``tenant``, ``step`` and, when an OpenTelemetry span is
current, ``trace_id``. A record never holds message content, tool arguments, results, or
error messages (which can quote them): error *codes* only.

The run's fields reach other loggers' records through a context variable the observer sets
as it sees the run's events; it is read only when a record is formatted, so a drive pays one
``ContextVar.set`` per batch, and a drive in its own task never sees another run's fields.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Sequence
from typing import IO, Any, Literal

from pydantic_core import to_json

from keel._core.eventbase import Event
from keel._core.events_checks import ChecksDecided
from keel._core.events_model import ModelFailed, ModelResponded, ModelSwitched
from keel._core.events_run import RunFinished, RunPaused, RunQueued, RunResumed, RunStarted
from keel._core.events_tools import (
    ApprovalRequested,
    CallDecided,
    ToolCallFinished,
    ToolCallInDoubt,
)
from keel._core.state import RunState
from keel.errors import ConfigurationError

__all__ = ["JsonFormatter", "Logging", "TextFormatter", "configure_logging"]

_RUN_FIELDS = ("run_id", "thread_id", "agent", "tenant", "step")
_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "keel_log_run", default=None
)

try:  # the otel extra: a record carries the current span's trace id
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - the extra is installed in development
    _trace = None  # type: ignore[assignment]


def _trace_id() -> str | None:
    if _trace is None:
        return None
    context = _trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's structured fields: the run's (its own, else the current drive's), the
    trace id, and what the event added (``extra={"keel": {...}}``)."""
    fields: dict[str, Any] = {}
    run = getattr(record, "keel_run", None) or _current.get()
    if run:
        fields.update(run)
    trace_id = _trace_id()
    if trace_id is not None:
        fields["trace_id"] = trace_id
    extra = getattr(record, "keel", None)
    if extra:
        fields.update(extra)
    return {k: v for k, v in fields.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and the fields."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _iso(self, created: float) -> str:
        whole = int(created)
        if whole != self._second:  # one strftime per second, not per record
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = whole
        return f"{self._second_text}.{int(created % 1 * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        data: dict[str, Any] = {
            "ts": self._iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(record_fields(record))
        if record.exc_info and record.exc_info[0] is not None:
            # The exception's type only: its text and traceback can quote what it handled.
            data["exc_type"] = record.exc_info[0].__name__
        return to_json(data, fallback=str).decode()


class TextFormatter(logging.Formatter):
    """A readable line: time, level, logger, message, then ``key=value`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one readable line."""
        fields = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{clock} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[0] is not None:
            line += f" ({record.exc_info[0].__name__})"
        return f"{line}  {fields}" if fields else line


def configure_logging(
    level: str | int = "INFO",
    format: Literal["auto", "json", "text"] = "auto",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send Keel's logs (the ``keel`` logger and its children) to ``stream`` (default:
    stderr) as JSON lines, or as readable lines (``auto``: readable on a terminal, JSON
    otherwise). Calling it again replaces the handler it installed; returns the handler."""
    if format not in ("auto", "json", "text"):
        raise ConfigurationError(f"format must be 'auto', 'json' or 'text', got {format!r}")
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if not isinstance(number, int):
            raise ConfigurationError(
                f"level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}"
            )
        level = number
    out = stream if stream is not None else sys.stderr
    if format == "auto":
        isatty = getattr(out, "isatty", None)
        format = "text" if callable(isatty) and isatty() else "json"
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    handler.set_name("keel.observability")
    logger = logging.getLogger("keel")
    for old in [h for h in logger.handlers if h.get_name() == "keel.observability"]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # one line per record, not one more through the root's handlers
    return handler


class Logging:
    """An observer writing one structured record per meaningful event to ``keel.runs``:
    runs started, finished, paused, queued and resumed; model calls that failed, retried or
    fell back; tool calls that failed or are in doubt; checks that denied or escalated;
    approvals requested and decided. Routine steps log at DEBUG."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger if logger is not None else logging.getLogger("keel.runs")

    def __repr__(self) -> str:
        return f"Logging(logger={self._log.name!r})"

    def observed(self, state: RunState, events: Sequence[Event]) -> None:
        """Log ``events`` (called by the runtime after each journal append)."""
        run = _current.get()
        if run is None or run["run_id"] != state.run_id or run["step"] != state.step:
            run = {
                "run_id": state.run_id,
                "thread_id": state.thread_id,
                "agent": state.agent,
                "tenant": state.tenant,
                "step": state.step,
            }
        _current.set(None if state.status not in ("running", "queued") else run)
        log = self._log
        if not log.isEnabledFor(logging.WARNING):  # cached by logging: cheap when it is off
            return
        for event in events:
            if type(event) not in _LOGGED:
                continue
            said = _said(event)
            if said is not None:
                level, message, fields = said
                if log.isEnabledFor(level):
                    fields["event"] = event.type
                    step = event.step_number
                    if step is not None:
                        fields["step"] = step
                    # makeRecord and handle, as log.log would, without its walk up the stack
                    # for the caller (always this line): a fifth of a record's cost.
                    extra = {"keel_run": run, "keel": fields}
                    log.handle(
                        log.makeRecord(log.name, level, __file__, 0, message, (), None, extra=extra)
                    )


_LOGGED: frozenset[type[Event]] = frozenset(
    {
        RunStarted,
        RunFinished,
        RunPaused,
        RunQueued,
        RunResumed,
        ModelFailed,
        ModelResponded,
        ModelSwitched,
        ToolCallFinished,
        ToolCallInDoubt,
        ChecksDecided,
        ApprovalRequested,
        CallDecided,
    }
)


def _said(event: Event) -> tuple[int, str, dict[str, Any]] | None:
    """What to log of ``event``: level, message and fields (names and codes only)."""
    info, warning = logging.INFO, logging.WARNING
    if isinstance(event, RunStarted):
        return info, "run queued" if event.queued else "run started", {"model": event.model}
    if isinstance(event, RunFinished):
        code = None if event.error is None else event.error.code
        level = info if event.status == "completed" else warning
        return level, f"run {event.status}", {"status": event.status, "error_code": code}
    if isinstance(event, RunPaused):
        return warning, "run paused", {"reason_code": event.reason.code}
    if isinstance(event, RunQueued):
        return info, "run queued again", {}
    if isinstance(event, RunResumed):
        return info, "run resumed", {}
    if isinstance(event, ModelFailed):
        fields = {
            "model": event.model,
            "error_code": event.error.code,
            "retryable": event.retryable,
        }
        return warning, "model call failed", fields
    if isinstance(event, ModelResponded):
        tried = [a for a in event.attempts if not a.ok]
        if not tried:
            return logging.DEBUG, "model answered", {"model": event.model, "cached": event.cached}
        models = {a.model for a in event.attempts}
        what = "model call fell back" if len(models) > 1 else "model call retried"
        codes = [a.code or "breaker_open" for a in tried]
        return (
            warning,
            what,
            {"model": event.model, "attempts": len(event.attempts), "codes": codes},
        )
    if isinstance(event, ModelSwitched):
        fields = {"model_index": event.model_index, "reason_code": event.reason.code}
        return warning, "model call fell back", fields
    if isinstance(event, ToolCallFinished):
        if event.error is None:
            return logging.DEBUG, "tool call finished", {"tool": event.call.name}
        return (
            warning,
            "tool call failed",
            {"tool": event.call.name, "error_code": event.error.code},
        )
    if isinstance(event, ToolCallInDoubt):
        fields = {"tool": event.call.name, "reason_code": event.reason.code}
        return warning, "tool call in doubt", fields
    if isinstance(event, ChecksDecided):
        if event.verdict not in ("deny", "escalate"):
            return None
        fields = {"point": event.point, "verdict": event.verdict, "check": event.deciding_check}
        return warning, f"check {'denied' if event.verdict == 'deny' else 'escalated'}", fields
    if isinstance(event, ApprovalRequested):
        kinds = sorted({p.kind for p in event.calls})
        return info, "approval requested", {"calls": len(event.calls), "kinds": kinds}
    if isinstance(event, CallDecided):
        return info, "approval decided", {"decision": event.decision}
    return None
