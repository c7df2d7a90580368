"""Serving the metrics (an ASGI app, a standalone exporter) and what is read at scrape time.

:class:`Watch` is a Prometheus collector bound to a runtime: queue depth, approvals waiting,
breaker states and runs whose driver died come from the store and the breaker board, which
are asynchronous and belong to the runtime's event loop. A scrape from another thread (the
standalone exporter, a WSGI server) asks that loop for a fresh reading and waits a bounded
time; a scrape on the loop itself (the ASGI app) has refreshed just before. Readings are
rate-limited, bounded in size, and a failure never fails a scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from keel.errors import ConfigurationError

if TYPE_CHECKING:
    from keel._runtime.runtime import Runtime
    from keel.observability._metrics import Metrics

__all__ = ["Exporter", "Watch", "asgi_app"]

_log = logging.getLogger("keel.observability")
_BREAKER_STATES = ("closed", "open", "half_open")


@dataclass(slots=True)
class _Reading:
    queued: dict[str, int] = field(default_factory=dict)
    awaiting: int = 0
    oldest_wait_s: float = 0.0
    interrupted: int = 0
    breakers: dict[str, str] = field(default_factory=dict)


class Watch(Collector):
    """The scrape-time collector of one runtime (made by :meth:`Metrics.watch`)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        namespace: str,
        max_scan: int,
        timeout_s: float,
        min_interval_s: float,
    ) -> None:
        if max_scan < 1 or timeout_s <= 0 or min_interval_s < 0:
            raise ConfigurationError(
                "watch needs max_scan >= 1, timeout_s > 0 and min_interval_s >= 0"
            )
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # bound on the first refresh, which runs on the runtime's loop
        self._thread = threading.get_ident() if self._loop is not None else None
        self._runtime = runtime
        self._prefix = f"{namespace}_"
        self._max_scan = max_scan
        self._timeout_s = timeout_s
        self._min_interval_s = min_interval_s
        self._reading = _Reading()
        self._read_at = float("-inf")
        self._errors: dict[str, int] = {}
        self._lock = threading.Lock()

    async def refresh(self) -> None:
        """Read the store and the breakers now (unless read less than ``min_interval_s``
        ago); what fails is counted and the last good values stay."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()
        now = time.monotonic()
        if now - self._read_at < self._min_interval_s:
            return
        self._read_at = now
        reading = _Reading()
        previous = self._reading
        ok_store = await self._guarded("store", self._read_store(reading))
        ok_breakers = await self._guarded("breakers", self._read_breakers(reading))
        if not ok_store:
            reading.queued, reading.awaiting = previous.queued, previous.awaiting
            reading.oldest_wait_s, reading.interrupted = (
                previous.oldest_wait_s,
                previous.interrupted,
            )
        if not ok_breakers:
            reading.breakers = previous.breakers
        self._reading = reading

    async def _guarded(self, source: str, reading: Awaitable[None]) -> bool:
        try:
            await asyncio.wait_for(reading, self._timeout_s)
        except Exception as exc:  # noqa: BLE001 - a scrape must never break anything
            with self._lock:
                self._errors[source] = self._errors.get(source, 0) + 1
            _log.debug("metrics: reading the %s failed (%s)", source, type(exc).__name__)
            return False
        return True

    async def _read_store(self, reading: _Reading) -> None:
        store = self._runtime.store
        now = time.time()
        for record in await store.list_runs(status="queued", limit=self._max_scan):
            reading.queued[record.agent] = reading.queued.get(record.agent, 0) + 1
        waiting = await store.list_runs(status="awaiting_approval", limit=self._max_scan)
        reading.awaiting = len(waiting)
        if waiting:  # newest first: the last one has waited longest
            reading.oldest_wait_s = max(0.0, now - min(r.updated_at for r in waiting))
        running = await store.list_runs(status="running", limit=self._max_scan)
        reading.interrupted = sum(
            1 for r in running if r.lease_expires_at is None or r.lease_expires_at < now
        )

    async def _read_breakers(self, reading: _Reading) -> None:
        for status in await self._runtime.breaker_statuses():
            reading.breakers[status.name] = status.state

    def _refresh_from_another_thread(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return
        if threading.get_ident() == self._thread:
            return  # on the loop itself: the ASGI app refreshed before asking
        future = asyncio.run_coroutine_threadsafe(self.refresh(), loop)
        try:
            future.result(self._timeout_s * 2 + 1)
        except Exception:  # noqa: BLE001 - the last reading is served instead
            future.cancel()
            with self._lock:
                self._errors["loop"] = self._errors.get("loop", 0) + 1

    def collect(self) -> Iterator[Metric]:
        """The metric families as last read (refreshed first when called off the loop)."""
        self._refresh_from_another_thread()
        p, r = self._prefix, self._reading
        queued = GaugeMetricFamily(
            p + "queue_depth",
            "Queued runs waiting for a driver (counted up to max_scan).",
            labels=["agent"],
        )
        for agent, count in sorted(r.queued.items()):
            queued.add_metric([agent], count)
        yield queued
        yield GaugeMetricFamily(
            p + "approvals_pending", "Runs waiting for a person's decision.", value=r.awaiting
        )
        yield GaugeMetricFamily(
            p + "approval_oldest_wait_seconds",
            "How long the longest-waiting run has waited for a person.",
            value=r.oldest_wait_s,
        )
        yield GaugeMetricFamily(
            p + "runs_interrupted",
            "Runs marked running whose lease expired: their driver died, a worker takes over.",
            value=r.interrupted,
        )
        breakers = GaugeMetricFamily(
            p + "breaker_state",
            "1 for the state each model's breaker is in.",
            labels=["model", "state"],
        )
        for name, state in sorted(r.breakers.items()):
            for candidate in _BREAKER_STATES:
                breakers.add_metric([name, candidate], 1 if state == candidate else 0)
        yield breakers
        errors = CounterMetricFamily(
            p + "scrape_errors", "Scrape-time readings that failed.", labels=["source"]
        )
        with self._lock:
            for source, count in sorted(self._errors.items()):
                errors.add_metric([source], count)
        yield errors


def asgi_app(metrics: Metrics) -> Callable[..., Awaitable[None]]:
    """An ASGI app answering every HTTP request with the metrics."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await metrics.refresh()
        headers = dict(scope.get("headers") or [])
        accept = headers.get(b"accept", b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        body = encoder(metrics.registry)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


class Exporter:
    """The standalone exporter: ``http://addr:port/metrics`` served from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, *, port: int, addr: str) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"port must be an int from 0 to 65535, got {port!r}")
        try:
            self._server, self._thread = start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {addr}:{port} ({exc.strerror or exc}); choose a free "
                "port, or 0 for any"
            ) from None
        self.addr = addr
        self.port: int = self._server.server_port
        """The port it listens on."""

    def __repr__(self) -> str:
        return f"Exporter(addr={self.addr!r}, port={self.port})"

    @property
    def url(self) -> str:
        """Where Prometheus scrapes it."""
        return f"http://{self.addr}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving."""
        with contextlib.suppress(Exception):
            self._server.shutdown()
            self._server.server_close()
        self._thread.join(timeout=5)
