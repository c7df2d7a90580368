"""The webhooks component: finds the events to tell, keeps them in the outbox, delivers them.

Finding events never depends on this process having seen them happen. Deliveries are
derived from the journal: the deliverer looks at runs whose journal grew past what the outbox
noted (``Outbox.changed_runs``), reads the new events and writes one delivery per event and
endpoint, and its note, in one transaction. Runs this process drives are looked at as soon as
their events are journaled (the component is also an observer: it is told, and wakes up);
every ``scan_interval_s`` the runs table is scanned for the rest: runs that other processes
drove, and runs whose events were journaled just before a crash. A delivery's id is fixed by
its run, event and endpoint, so two deliverers that find one event make one delivery.

Sending: due deliveries are leased (``Outbox.claim``), so replicas never send one at once; a
deliverer that dies mid-send loses its lease and the delivery is sent again when it expires
(at least once: receivers drop repeats by ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx

from keel._core.eventbase import Event
from keel._core.events import ApprovalRequested, RunFinished, RunPaused
from keel._core.state import RunState
from keel._side_location import beside
from keel.errors import ConfigurationError, RunNotFoundError, UsageError
from keel.ports import Clock, Store
from keel.webhooks._config import Webhook
from keel.webhooks._events import deliveries_for, payload
from keel.webhooks._open import open_outbox
from keel.webhooks._outbox import Changed, Delivery, DeliveryStatus, Outbox
from keel.webhooks._sending import Outcome, backoff_s, send

if TYPE_CHECKING:
    from keel._runtime.runtime import Runtime

__all__ = ["Webhooks"]

_log = logging.getLogger("keel.webhooks")
_TOLD = (RunFinished, ApprovalRequested, RunPaused)
_PAGE = 500
_MIN_WAIT_S = 0.05


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class Webhooks:
    """Signed webhooks on run events, delivered at least once from a durable outbox.

    Args:
        endpoints: Where to send what (:class:`Webhook`); names must differ.
        outbox: Where deliveries are kept: an :class:`Outbox`, a location
            (:func:`open_outbox`), or ``None``: beside the runtime's store.
        max_attempts: Attempts before a delivery is given up as ``dead``.
        backoff_s: The wait after the first failed attempt; it doubles after each one.
        max_backoff_s: The longest wait between attempts (and the most ``Retry-After`` is
            honoured for).
        timeout_s: How long one attempt may take.
        scan_interval_s: How often the runs table is scanned for events this process did
            not see journaled (runs of other processes, or from before a crash).
        overlap_s: How far before the latest change seen a scan looks again: covers clocks of
            processes that disagree, and writes that took long to commit.
        concurrency: Deliveries sent at once.
        keep_delivered_s: How long delivered deliveries stay listable.

    Pass it to the runtime as an observer (``Runtime(observers=[webhooks])``) so that runs of
    this process are told at once, then ``await webhooks.start(runtime)`` (or ``async with
    webhooks.running(runtime)``) to deliver in the background until :meth:`stop`.
    """

    def __init__(
        self,
        endpoints: Sequence[Webhook],
        *,
        outbox: Outbox | str | os.PathLike[str] | None = None,
        max_attempts: int = 10,
        backoff_s: float = 5.0,
        max_backoff_s: float = 3600.0,
        timeout_s: float = 10.0,
        scan_interval_s: float = 10.0,
        overlap_s: float = 300.0,
        concurrency: int = 8,
        keep_delivered_s: float = 7 * 86400.0,
    ) -> None:
        chosen = list(endpoints)
        if not all(isinstance(e, Webhook) for e in chosen):
            raise ConfigurationError(
                "endpoints must be Webhook objects, e.g. Webhook('https://example.com/hooks', "
                "secret=keel.webhooks.new_secret())"
            )
        names = [e.name for e in chosen]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ConfigurationError(
                f"two webhooks are named {', '.join(map(repr, doubled))}; give them distinct "
                "names (Webhook(..., name='billing'))"
            )
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be 1 or more, got {max_attempts!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be 1 or more, got {concurrency!r}")
        self.endpoints: dict[str, Webhook] = {e.name: e for e in chosen}
        self._outbox_arg = outbox
        self.max_attempts = max_attempts
        self._backoff_s = _positive("backoff_s", backoff_s)
        self._max_backoff_s = _positive("max_backoff_s", max_backoff_s)
        self._timeout_s = _positive("timeout_s", timeout_s)
        self._scan_s = _positive("scan_interval_s", scan_interval_s)
        self._overlap_s = _positive("overlap_s", overlap_s)
        self._keep_s = _positive("keep_delivered_s", keep_delivered_s)
        self._concurrency = concurrency
        self._lease_s = 3 * self._timeout_s + 30.0
        self._store: Store | None = None
        self._clock: Clock | None = None
        self._outbox: Outbox | None = None
        self._owns_outbox = False
        self._client: httpx.AsyncClient | None = None
        self._owner = ""
        self._hints: set[str] = set()
        self._last_scan: float | None = None
        self._nudge = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Webhooks(endpoints={sorted(self.endpoints)}, outbox={self._outbox!r})"

    @property
    def outbox(self) -> Outbox:
        """The outbox (once started)."""
        if self._outbox is None:
            raise UsageError("the webhooks are not started: await webhooks.start(runtime) first")
        return self._outbox

    # -- the observer -------------------------------------------------------------------------

    def observed(self, state: RunState, events: Sequence[Event]) -> None:
        """Told by the runtime of journaled events: a run that may have something to tell is
        looked at now, not at the next scan. No I/O here."""
        # Only while started: hints of a deliverer that never runs would pile up, and the
        # scan finds those runs anyway.
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if any(isinstance(event, _TOLD) for event in events):
            self._hints.add(state.run_id)
            loop.call_soon_threadsafe(self._nudge.set)

    # -- starting and stopping ----------------------------------------------------------------

    async def start(self, runtime: Runtime, *, background: bool = True) -> None:
        """Open the outbox beside ``runtime``'s store and, with ``background``, deliver until
        :meth:`stop` (without: call :meth:`run_once` yourself)."""
        if self._outbox is not None:
            return
        self._store = runtime.store
        self._clock = runtime.clock
        self._owner = f"{runtime.owner}:webhooks:{secrets.token_hex(4)}"
        arg = self._outbox_arg
        if isinstance(arg, Outbox):
            self._outbox = arg
        else:
            location, schema = (
                (os.fspath(arg), runtime.settings.db_schema)
                if arg is not None
                else beside(runtime.store, "the webhook outbox")
            )
            self._outbox = open_outbox(location, schema=schema, store=runtime.store)
            self._owns_outbox = True
        self._client = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False)
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        if background:
            self._task = asyncio.create_task(self._run(), name="keel-webhooks")

    async def stop(self) -> None:
        """Stop delivering (attempts under way finish first) and close what was opened."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._outbox is not None and self._owns_outbox:
            await self._outbox.aclose()
        self._outbox = None
        self._loop = None

    @asynccontextmanager
    async def running(self, runtime: Runtime) -> AsyncIterator[Webhooks]:
        """Deliver in the background for the block's duration."""
        await self.start(runtime)
        try:
            yield self
        finally:
            await self.stop()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
                wait = await self._idle_for()
            except Exception as exc:  # noqa: BLE001 - a failing pass must not end delivery
                _log.warning("webhook delivery failed (%s); trying again", exc)
                wait = min(self._scan_s, 5.0)
            await self._wait(wait)

    async def _idle_for(self) -> float:
        clock = self._bound()[1]
        scan_in = self._scan_s - (clock.monotonic() - (self._last_scan or 0.0))
        due = await self.outbox.next_due(self.endpoints)
        due_in = math.inf if due is None else due - clock.now()
        return max(_MIN_WAIT_S, min(scan_in, due_in))

    async def _wait(self, seconds: float) -> None:
        clock = self._bound()[1]
        waits = [
            asyncio.ensure_future(self._nudge.wait()),
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(clock.sleep(seconds)),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            self._nudge.clear()

    def _bound(self) -> tuple[Store, Clock, Outbox]:
        if self._store is None or self._clock is None or self._outbox is None:
            raise UsageError("the webhooks are not started: await webhooks.start(runtime) first")
        return self._store, self._clock, self._outbox

    # -- one pass -----------------------------------------------------------------------------

    async def run_once(self, *, scan: bool | None = None) -> list[Delivery]:
        """Find new events (the runs this process was told of; with ``scan``, or when a scan
        is due, every changed run) and make one attempt of each due delivery; return the
        deliveries attempted, as they now stand."""
        await self.discover(scan=scan)
        return await self.deliver_due()

    async def discover(self, *, scan: bool | None = None) -> int:
        """Write the deliveries of events not looked at yet; return how many were new."""
        store, clock, outbox = self._bound()
        now = clock.now()
        horizon = await outbox.cursor(now) - self._overlap_s
        new = 0
        hinted, self._hints = self._hints, set()
        if hinted:
            for changed in await outbox.changed_runs(run_ids=hinted, limit=len(hinted)):
                new += await self._look(changed, store, outbox, horizon, now)
        due = self._last_scan is None or clock.monotonic() - self._last_scan >= self._scan_s
        if scan or (scan is None and due):
            self._last_scan = clock.monotonic()
            latest = None
            while True:
                page = await outbox.changed_runs(since=horizon, limit=_PAGE)
                for changed in page:
                    new += await self._look(changed, store, outbox, horizon, now)
                    latest = max(latest or changed.updated_at, changed.updated_at)
                if len(page) < _PAGE:
                    break
            if latest is not None:
                await outbox.advance_cursor(latest)
            await outbox.forget_runs(horizon)
            await outbox.prune(delivered_before=now - self._keep_s)
        return new

    async def _look(
        self, changed: Changed, store: Store, outbox: Outbox, horizon: float, now: float
    ) -> int:
        try:
            record = await store.get_run(changed.run_id)
            events = await store.load(changed.run_id, after_seq=changed.seen)
        except RunNotFoundError:
            return await outbox.record(changed, changed.last_seq, ())  # deleted: nothing to tell
        made = deliveries_for(
            record,
            events,
            changed.seen + 1,
            list(self.endpoints.values()),
            horizon=horizon,
            now=now,
        )
        return await outbox.record(changed, changed.seen + len(events), made)

    async def deliver_due(self) -> list[Delivery]:
        """Make one attempt of each delivery due now (that no other deliverer holds)."""
        _, clock, outbox = self._bound()
        claimed = await outbox.claim(
            owner=self._owner,
            endpoints=self.endpoints,
            now=clock.now(),
            lease_s=self._lease_s,
            limit=4 * self._concurrency,
        )
        room = asyncio.Semaphore(self._concurrency)

        async def attempt(delivery: Delivery) -> Delivery:
            async with room:
                return await self._attempt(delivery)

        return list(await asyncio.gather(*(attempt(d) for d in claimed)))

    async def _attempt(self, delivery: Delivery) -> Delivery:
        store, clock, outbox = self._bound()
        endpoint = self.endpoints[delivery.endpoint]
        try:
            journal = await store.load(delivery.run_id)
        except RunNotFoundError:
            outcome = Outcome("fail", error="the run was deleted before its webhook was sent")
        else:
            now = clock.now()
            assert self._client is not None  # set by start
            outcome = await send(
                self._client,
                endpoint,
                delivery.id,
                payload(delivery, journal),
                timestamp=int(now),
                now=now,
            )
        return await self._settle(delivery, outcome, clock.now(), outbox)

    async def _settle(
        self, delivery: Delivery, outcome: Outcome, now: float, outbox: Outbox
    ) -> Delivery:
        status: DeliveryStatus
        next_at = None
        error = outcome.error
        if outcome.result == "delivered":
            status = "delivered"
        elif outcome.result == "retry" and delivery.attempts < self.max_attempts:
            status = "pending"
            wait = backoff_s(delivery.attempts, base_s=self._backoff_s, max_s=self._max_backoff_s)
            if outcome.wait_s is not None:  # the endpoint said when: honour it, within reason
                wait = min(outcome.wait_s, self._max_backoff_s)
            next_at = now + wait
            _log.info(
                "webhook %s to %s failed (attempt %d of %d: %s); next attempt in %.0fs",
                delivery.id,
                delivery.endpoint,
                delivery.attempts,
                self.max_attempts,
                error,
                wait,
            )
        else:
            status = "dead"
            if outcome.result == "retry":
                error = f"{error} (gave up after {delivery.attempts} attempts)"
            _log.warning(
                "webhook %s (%s of run %s) to %s is dead: %s; retry it with keel webhooks retry %s",
                delivery.id,
                delivery.event_type,
                delivery.run_id,
                delivery.endpoint,
                error,
                delivery.id,
            )
        kept = await outbox.finish(
            delivery,
            owner=self._owner,
            status=status,
            now=now,
            next_attempt_at=next_at,
            http_status=outcome.http_status,
            error=error,
        )
        if not kept:
            _log.info("webhook %s: the lease was lost; another deliverer has it", delivery.id)
        return dataclasses.replace(
            delivery,
            status=status,
            next_attempt_at=delivery.next_attempt_at if next_at is None else next_at,
            last_status=outcome.http_status,
            last_error=error,
            delivered_at=now if status == "delivered" else None,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
