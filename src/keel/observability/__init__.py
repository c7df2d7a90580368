"""Observability: what Keel tells the outside world about its runs, from their journals.

- :class:`Tracing`: every run an OpenTelemetry trace following the GenAI semantic conventions
  (``invoke_agent``, ``chat``, ``execute_tool`` spans and Keel's own for stretches of driving,
  checks and approvals). Needs the ``otel`` extra. See docs/guide/tracing.md.

Everything here is an observer (``Runtime(observers=[...])``): it reads the events a process
journals, never blocks or breaks a run, and exports nothing unless configured.
"""

from keel.observability._tracing import Tracing

__all__ = ["Tracing"]
