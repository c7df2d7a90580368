"""Prometheus metrics of runs, updated from the events each run journals.

:class:`Metrics` is an observer (``Runtime(observers=[metrics])``): each journaled event moves
a counter or a histogram, through label children cached by :class:`Families`. What is not an
event (the queue's depth, approvals waiting, breakers, runs whose driver died) is read when
Prometheus scrapes, by a collector bound to a runtime with :meth:`Metrics.watch`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from keel._core.eventbase import Event
from keel._core.events_checks import ChecksDecided
from keel._core.events_model import ModelFailed, ModelResponded, ModelSwitched, OutputRejected
from keel._core.events_run import RunDequeued, RunFinished, RunPaused, RunResumed, RunStarted
from keel._core.events_tools import (
    ApprovalRequested,
    CallDecided,
    ToolCallFinished,
    ToolCallInDoubt,
)
from keel._core.messages import Attempt
from keel._core.state import RunState
from keel.errors import ConfigurationError

if TYPE_CHECKING:
    from keel._runtime.runtime import Runtime
    from keel.observability._metrics_export import Exporter, Watch

__all__ = ["Metrics"]

_Handler = Callable[[RunState, Any], None]
#: How many requests for a decision are remembered to time the decision (oldest forgotten).
_REMEMBERED_REQUESTS = 4096


def _import_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:  # pragma: no cover - the extra is installed in development
        raise ConfigurationError(
            "keel.observability.Metrics needs prometheus-client; install the metrics extra: "
            "pip install 'keel-runtime[metrics]'"
        ) from None
    return prometheus_client


class Metrics:
    """Prometheus metrics of runs; an observer (``Runtime(observers=[metrics])``).

    Args:
        registry: The ``prometheus_client.CollectorRegistry`` to register in (default: a new
            one of its own, so that several runtimes in one process do not collide; pass
            ``prometheus_client.REGISTRY`` to join the process's default registry).
        namespace: The prefix of every metric name.
        max_children: The most label combinations a metric keeps; further ones are counted
            under ``other``.

    Every metric and its labels are listed in docs/guide/metrics-and-logs.md. No label carries
    a run, thread, user or tenant id.
    """

    def __init__(
        self, registry: Any = None, namespace: str = "keel", *, max_children: int = 500
    ) -> None:
        prometheus = _import_prometheus()
        if not isinstance(namespace, str) or not namespace.replace("_", "").isalnum():
            raise ConfigurationError(
                f"namespace must be letters, digits and underscores, got {namespace!r}"
            )
        if isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 1:
            raise ConfigurationError(f"max_children must be a positive int, got {max_children!r}")
        from keel.observability._metrics_families import Families

        self.registry = prometheus.CollectorRegistry() if registry is None else registry
        self.namespace = namespace
        self.families = Families(self.registry, namespace, max_children)
        self._watches: list[Watch] = []
        self._requested: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._handlers: dict[type[Event], _Handler] = {
            RunStarted: self._run_started,
            RunDequeued: self._run_dequeued,
            RunResumed: self._run_resumed,
            RunPaused: self._run_paused,
            RunFinished: self._run_finished,
            ModelResponded: self._model_responded,
            ModelFailed: self._model_failed,
            ModelSwitched: self._model_switched,
            OutputRejected: self._output_rejected,
            ToolCallFinished: self._tool_finished,
            ToolCallInDoubt: self._tool_in_doubt,
            ChecksDecided: self._checks_decided,
            ApprovalRequested: self._approval_requested,
            CallDecided: self._call_decided,
        }

    def __repr__(self) -> str:
        return f"Metrics(namespace={self.namespace!r})"

    # -- the observer ----------------------------------------------------------------------

    def observed(self, state: RunState, events: Sequence[Event]) -> None:
        """Count ``events`` (called by the runtime after each journal append)."""
        handlers = self._handlers
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(state, event)

    # -- scraping --------------------------------------------------------------------------

    def watch(
        self,
        runtime: Runtime,
        *,
        max_scan: int = 1000,
        timeout_s: float = 2.0,
        min_interval_s: float = 1.0,
    ) -> Watch:
        """Also export what ``runtime``'s store and breakers say at scrape time: queue depth,
        approvals waiting (and the oldest wait), breaker states and runs whose driver died.

        Call it from the event loop the runtime runs on (a scrape from another thread asks
        that loop). Each scrape reads at most ``max_scan`` runs per status, waits at most
        ``timeout_s``, and reads again at most every ``min_interval_s`` (scrapes in between
        see the last reading). A failed reading never fails a scrape: it counts in
        ``keel_scrape_errors_total`` and the last good values stay.
        """
        from keel.observability._metrics_export import Watch

        watch = Watch(
            runtime,
            namespace=self.namespace,
            max_scan=max_scan,
            timeout_s=timeout_s,
            min_interval_s=min_interval_s,
        )
        self.registry.register(watch)
        self._watches.append(watch)
        return watch

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format (scrape-time readings as last refreshed)."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    async def refresh(self) -> None:
        """Read the watched runtimes now (what the ASGI app does before each scrape)."""
        for watch in self._watches:
            await watch.refresh()

    def asgi_app(self) -> Any:
        """An ASGI app serving the metrics; mount it at ``/metrics``."""
        from keel.observability._metrics_export import asgi_app

        return asgi_app(self)

    def wsgi_app(self) -> Any:
        """A WSGI app serving the metrics; mount it at ``/metrics``."""
        from prometheus_client import make_wsgi_app

        return make_wsgi_app(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> Exporter:
        """Serve the metrics on ``http://addr:port/metrics`` from a background thread (port 0:
        any free port, see ``Exporter.port``); ``close()`` the exporter to stop."""
        from keel.observability._metrics_export import Exporter

        return Exporter(self.registry, port=port, addr=addr)

    def record_probe(self, agent: str, probe: str, *, ok: bool, latency_s: float) -> None:
        """Record a semantic health probe's outcome (what ``check_health`` calls)."""
        self.families.probe_ok.child(agent, probe).set(1 if ok else 0)
        self.families.probe_latency.child(agent, probe).set(latency_s)

    def record_health(self, agent: str, *, ok: bool) -> None:
        """Record whether every probe of ``agent`` passed."""
        self.families.health_ok.child(agent).set(1 if ok else 0)

    # -- runs ------------------------------------------------------------------------------

    def _run_started(self, state: RunState, event: RunStarted) -> None:
        self.families.runs_started.child(state.agent).inc()

    def _run_dequeued(self, state: RunState, event: RunDequeued) -> None:
        self._claimed(state)

    def _claimed(self, state: RunState) -> None:
        # From when it last entered the queue (accepted, or queued again after a pause or a
        # decision), as journaled: right whichever process queued it.
        waited = state.queue_wait_s
        if waited is not None:
            self.families.queue_wait.child(state.agent).observe(waited)

    def _run_resumed(self, state: RunState, event: RunResumed) -> None:
        self._claimed(state)
        self.families.runs_resumed.child(state.agent).inc()
        # A resume after the previous driver died, when the event says so (see the guide).
        if getattr(event, "taken_over", False):
            self.families.takeovers.child(state.agent).inc()

    def _run_paused(self, state: RunState, event: RunPaused) -> None:
        self.families.runs_paused.child(state.agent, event.reason.code).inc()

    def _run_finished(self, state: RunState, event: RunFinished) -> None:
        f = self.families
        agent, status = state.agent, event.status
        f.runs_finished.child(agent, status).inc()
        f.run_duration.child(agent, status).observe(max(0.0, event.at - state.started_at))
        f.run_steps.child(agent, status).observe(state.step)
        if event.error is not None:
            f.errors.child("run", event.error.code).inc()

    # -- model calls -----------------------------------------------------------------------

    def _model_responded(self, state: RunState, event: ModelResponded) -> None:
        f = self.families
        agent, model = state.agent, event.model
        if event.cached:
            f.model_calls.child(agent, model, "cached").inc()
            f.cache_hits.child(agent, model).inc()
        else:
            f.model_calls.child(agent, model, "ok").inc()
            if event.attempts:
                self._attempts(agent, event.attempts)
            else:
                f.model_latency.child(model, "ok").observe(event.latency_ms / 1000)
        usage = event.usage
        tokens = f.tokens
        if usage.input_tokens:
            tokens.child(agent, model, "input").inc(usage.input_tokens)
        if usage.output_tokens:
            tokens.child(agent, model, "output").inc(usage.output_tokens)
        if usage.cached_input_tokens:
            tokens.child(agent, model, "cached_input").inc(usage.cached_input_tokens)
        if usage.reasoning_tokens:
            tokens.child(agent, model, "reasoning").inc(usage.reasoning_tokens)
        if event.cost_usd:
            f.cost.child(agent, model).inc(event.cost_usd)

    def _model_failed(self, state: RunState, event: ModelFailed) -> None:
        f = self.families
        f.model_calls.child(state.agent, event.model, "error").inc()
        if event.attempts:
            self._attempts(state.agent, event.attempts)
        else:
            f.model_latency.child(event.model, "error").observe(event.latency_ms / 1000)
            f.errors.child("model", event.error.code).inc()

    def _attempts(self, agent: str, attempts: tuple[Attempt, ...]) -> None:
        """Each try of one call: its latency, its error, and whether it was a retry of the
        same model or a fallback to another."""
        f = self.families
        previous: str | None = None
        for attempt in attempts:
            model = attempt.model
            if previous is not None:
                if model == previous:
                    f.retries.child(agent, model).inc()
                else:
                    f.fallbacks.child(agent, model, "error").inc()
            previous = model
            if attempt.skipped:
                f.errors.child("model", attempt.code or "breaker_open").inc()
                continue
            outcome = "ok" if attempt.code is None else "error"
            f.model_latency.child(model, outcome).observe(attempt.latency_ms / 1000)
            if attempt.code is not None:
                f.errors.child("model", attempt.code).inc()

    def _model_switched(self, state: RunState, event: ModelSwitched) -> None:
        models = state.models
        index = event.model_index
        model = models[index] if 0 <= index < len(models) else state.model
        self.families.fallbacks.child(state.agent, model, "invalid_output").inc()

    def _output_rejected(self, state: RunState, event: OutputRejected) -> None:
        reason = "schema" if event.withheld is None else "check"
        self.families.output_rejections.child(state.agent, reason).inc()

    # -- tools, checks, people -------------------------------------------------------------

    def _tool_finished(self, state: RunState, event: ToolCallFinished) -> None:
        f = self.families
        tool = event.call.name
        error = event.error
        outcome = "ok" if error is None else "error"
        f.tool_calls.child(state.agent, tool, outcome).inc()
        f.tool_latency.child(tool, outcome).observe(event.latency_ms / 1000)
        if error is not None:
            f.errors.child("tool", error.code).inc()
        if event.attempts > 1:
            f.tool_retries.child(tool).inc(event.attempts - 1)

    def _tool_in_doubt(self, state: RunState, event: ToolCallInDoubt) -> None:
        self.families.tool_in_doubt.child(state.agent, event.call.name).inc()

    def _checks_decided(self, state: RunState, event: ChecksDecided) -> None:
        check = event.deciding_check or "none"
        self.families.check_decisions.child(event.point, event.verdict, check).inc()

    def _approval_requested(self, state: RunState, event: ApprovalRequested) -> None:
        requested = self._requested
        for pending in event.calls:
            self.families.interventions.child(state.agent, pending.kind).inc()
            requested[(state.run_id, pending.call.id)] = event.at
        while len(requested) > _REMEMBERED_REQUESTS:
            requested.popitem(last=False)

    def _call_decided(self, state: RunState, event: CallDecided) -> None:
        self.families.decisions.child(event.decision).inc()
        # When this call's request was seen here; else when the run last asked, as journaled
        # (the request may have been made by another process).
        asked = self._requested.pop((state.run_id, event.call_id), None)
        since = asked if asked is not None else (state.pending_since or None)
        if since is not None and event.at >= since:
            self.families.approval_wait.child().observe(event.at - since)
