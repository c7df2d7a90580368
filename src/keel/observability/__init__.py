"""Observability of runs: Prometheus metrics, structured logs and health checks.

Everything here reads the events a run journals, through the runtime's observers, and can
never block or break a run; nothing is exported unless configured::

    metrics = Metrics()
    runtime = Runtime(observers=[metrics, Logging()])
    configure_logging(level="INFO")

See docs/guide/metrics-and-logs.md and docs/guide/health.md.
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
    "Watch",
    "check_health",
    "configure_logging",
    "liveness",
    "readiness",
]
