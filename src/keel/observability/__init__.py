"""Observability of runs: OpenTelemetry traces, Prometheus metrics, structured logs and
health checks.

Everything here reads the events a run journals, through the runtime's observers
(``Runtime(observers=[...])``), never blocks or breaks a run, and exports nothing unless
configured::

    metrics = Metrics()
    runtime = Runtime(observers=[metrics, Logging()])  # Tracing() too, or OTEL_* variables
    configure_logging(level="INFO")

- :class:`Tracing`: every run an OpenTelemetry trace following the GenAI semantic conventions
  (``invoke_agent``, ``chat``, ``execute_tool`` spans and Keel's own for stretches of driving,
  checks and approvals). Needs the ``otel`` extra; on by default when an OTLP endpoint is set.
  See docs/guide/tracing.md.
- :class:`Metrics`, :class:`Logging`, :func:`configure_logging`: see
  docs/guide/metrics-and-logs.md.
- :func:`liveness`, :func:`readiness`, :class:`Probe`, :func:`check_health`: see
  docs/guide/health.md.
"""

from keel.observability._health import (
    HealthCheck,
    HealthReport,
    Probe,
    ProbeResult,
    check_health,
    liveness,
    readiness,
)
from keel.observability._logging import JsonFormatter, Logging, TextFormatter, configure_logging
from keel.observability._metrics import Metrics
from keel.observability._metrics_export import Exporter, Watch
from keel.observability._tracing import Tracing

__all__ = [
    "Exporter",
    "HealthCheck",
    "HealthReport",
    "JsonFormatter",
    "Logging",
    "Metrics",
    "Probe",
    "ProbeResult",
    "TextFormatter",
    "Tracing",
    "Watch",
    "check_health",
    "configure_logging",
    "liveness",
    "readiness",
]
