"""The metric families Keel exports, and label children cached so that an event costs a dict
lookup and an increment, not a label validation.

Cardinality is bounded twice: labels are only names the code or the operator defines (agent,
model, tool, check, error code, status...), never run, thread, user or tenant ids; and each
family keeps at most ``max_children`` label combinations, folding any further one into
``other`` (a tool that makes up error codes cannot blow up the time-series database).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Families", "Family"]

OTHER = "other"

_LATENCY_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RUN_S = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_WAIT_S = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
_HUMAN_S = (1, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600)
_STEPS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89)


class Family:
    """One metric family with its children cached by label values (see the module doc)."""

    __slots__ = ("_children", "_max", "_metric", "_width")

    def __init__(self, metric: Any, width: int, max_children: int) -> None:
        self._metric = metric
        self._width = width
        self._max = max_children
        self._children: dict[tuple[str, ...], Any] = {}
        if width == 0:  # an unlabelled family is its own (only) child
            self._children[()] = metric

    def child(self, *values: str) -> Any:
        """The child for ``values`` (``other`` for every label once the family is full)."""
        child = self._children.get(values)
        if child is None:
            if len(self._children) >= self._max:
                values = (OTHER,) * self._width
                child = self._children.get(values)
            if child is None:
                child = self._metric.labels(*values)
                self._children[values] = child
        return child


class Families:
    """Every family of one :class:`keel.observability.Metrics`, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, namespace: str, max_children: int) -> None:
        self.registry = registry
        self.namespace = namespace
        self._max = max_children

        def counter(name: str, doc: str, *labels: str) -> Family:
            metric = Counter(name, doc, labels, namespace=namespace, registry=registry)
            return Family(metric, len(labels), max_children)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Family:
            metric = Histogram(
                name, doc, labels, namespace=namespace, registry=registry, buckets=buckets
            )
            return Family(metric, len(labels), max_children)

        def gauge(name: str, doc: str, *labels: str) -> Family:
            metric = Gauge(name, doc, labels, namespace=namespace, registry=registry)
            return Family(metric, len(labels), max_children)

        self.runs_started = counter(
            "runs_started", "Runs started or accepted into the queue.", "agent"
        )
        self.runs_finished = counter(
            "runs_finished", "Runs that ended, by final status.", "agent", "status"
        )
        self.runs_paused = counter(
            "runs_paused", "Runs paused (a limit, an outage), by reason code.", "agent", "reason"
        )
        self.runs_resumed = counter(
            "runs_resumed",
            "Runs a driver continued (after a pause, the queue or a crash).",
            "agent",
        )
        self.run_duration = histogram(
            "run_duration_seconds",
            "From a run's start to its end.",
            _RUN_S,
            "agent",
            "status",
        )
        self.run_steps = histogram(
            "run_steps", "Model turns per finished run.", _STEPS, "agent", "status"
        )
        self.model_calls = counter(
            "model_calls",
            "Model calls, by outcome (ok, error, cached).",
            "agent",
            "model",
            "outcome",
        )
        self.model_latency = histogram(
            "model_call_duration_seconds",
            "Latency of each model attempt.",
            _LATENCY_S,
            "model",
            "outcome",
        )
        self.tokens = counter(
            "tokens",
            "Tokens by kind (input, output, cached_input, reasoning).",
            "agent",
            "model",
            "kind",
        )
        self.cost = counter("cost_usd", "What model calls cost, in US dollars.", "agent", "model")
        self.retries = counter(
            "model_retries", "Model attempts that retried the same model.", "agent", "model"
        )
        self.fallbacks = counter(
            "model_fallbacks",
            "Moves to another model of a fallback chain (reason: error or invalid_output).",
            "agent",
            "model",
            "reason",
        )
        self.cache_hits = counter(
            "model_cache_hits", "Model calls answered from the response cache.", "agent", "model"
        )
        self.output_rejections = counter(
            "output_rejections",
            "Final answers sent back (reason: schema or check).",
            "agent",
            "reason",
        )
        self.tool_calls = counter(
            "tool_calls", "Tool calls, by outcome (ok, error).", "agent", "tool", "outcome"
        )
        self.tool_latency = histogram(
            "tool_call_duration_seconds", "Latency of tool calls.", _LATENCY_S, "tool", "outcome"
        )
        self.tool_retries = counter("tool_retries", "Extra tries of tool calls.", "tool")
        self.tool_in_doubt = counter(
            "tool_calls_in_doubt",
            "Started calls that did not come back and are not safe to repeat.",
            "agent",
            "tool",
        )
        self.errors = counter(
            "errors", "Errors by kind (run, model, tool) and stable code.", "kind", "code"
        )
        self.check_decisions = counter(
            "check_decisions",
            "Outcomes of checks (guardrails, policies) at each point, by deciding check.",
            "point",
            "verdict",
            "check",
        )
        self.interventions = counter(
            "human_interventions",
            "Decisions asked of a person (kind: approval, interrupted, escalated).",
            "agent",
            "kind",
        )
        self.decisions = counter(
            "approval_decisions",
            "Decisions people made (approve, reject, edit, done).",
            "decision",
        )
        self.approval_wait = histogram(
            "approval_wait_seconds",
            "From a request for a decision to the decision (both seen by this process).",
            _HUMAN_S,
        )
        self.queue_wait = histogram(
            "queue_wait_seconds",
            "From a run's acceptance into the queue to a driver claiming it.",
            _WAIT_S,
            "agent",
        )
        self.takeovers = counter(
            "lease_takeovers", "Runs continued after their previous driver died.", "agent"
        )
        self.probe_ok = gauge(
            "health_probe_ok", "1 if the probe's answer passed at the last check.", "agent", "probe"
        )
        self.probe_latency = gauge(
            "health_probe_duration_seconds",
            "How long the probe took at the last check.",
            "agent",
            "probe",
        )
        self.health_ok = gauge(
            "health_ok", "1 if every probe of the agent passed at the last check.", "agent"
        )
