"""A worker: claims runs from the queue and drives them, any number of them at once.

Claimable runs are queued runs that are first in their thread, and runs whose process died
(their lease expired). A worker claims as many as it has free slots (``concurrency``), drives
each in its own task, and when there is nothing to claim it sleeps until the store says the
queue changed (a submit, a decision, a run that ended) or ``poll_interval_s`` passes (leases
expire silently, so the worker looks again now and then). Any number of workers, in any number
of processes and hosts, share one store: claims are atomic.

Stopping is graceful: the worker stops claiming, lets the runs it drives go on for
``grace_s``, then cancels them; their leases are released, and another worker continues them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from keel._runtime.kernel import Kernel
from keel._runtime.running import Runs
from keel._runtime.waits import watching
from keel.errors import KeelError
from keel.ports import Lease

__all__ = ["Worker"]

_log = logging.getLogger("keel.worker")


class Worker:
    """Drives runs from the queue; see the module docstring.

    Args:
        concurrency: How many runs it drives at once.
        poll_interval_s: How often it looks for runs whose lease expired when nothing woke it.
        grace_s: How long runs under way may go on after :meth:`stop`.
    """

    def __init__(
        self,
        kernel: Kernel,
        runs: Runs,
        *,
        concurrency: int = 8,
        poll_interval_s: float = 1.0,
        grace_s: float = 10.0,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise KeelError(f"concurrency must be an int of at least 1, got {concurrency!r}")
        if not poll_interval_s > 0 or grace_s < 0:
            raise KeelError("poll_interval_s must be positive and grace_s 0 or more")
        self.k = kernel
        self.runs = runs
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.grace_s = grace_s
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._freed = asyncio.Event()
        #: How many runs this worker has driven to a stop.
        self.completed = 0

    def stop(self) -> None:
        """Stop claiming; :meth:`run` returns once the runs under way are done (or cancelled
        after ``grace_s``)."""
        self._stopping.set()

    async def run(self, *, until_idle: bool = False) -> None:
        """Claim and drive runs until :meth:`stop` (or, with ``until_idle``, until nothing is
        left to claim and nothing is under way)."""
        k = self.k
        try:
            async with watching(k.store, None) as changes:
                while not self._stopping.is_set():
                    claimed = await self._claim()
                    if until_idle and not claimed and not self._tasks:
                        return
                    if claimed and len(self._tasks) < self.concurrency:
                        continue  # there may be more
                    await self._idle(changes)
        finally:
            await self._drain()

    async def _claim(self) -> int:
        free = self.concurrency - len(self._tasks)
        if free <= 0 or not self.k.agents:
            return 0
        leases = await self.k.store.claim_runs(
            owner=self.k.driver_owner(),
            ttl_s=self.k.lease_ttl_s,
            limit=free,
            agents=list(self.k.agents),
        )
        for lease in leases:
            task = asyncio.create_task(self._drive(lease), name=f"keel-run-{lease.run_id}")
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return len(leases)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._freed.set()

    async def _drive(self, lease: Lease) -> None:
        try:
            record = await self.k.store.get_run(lease.run_id)
            agent = self.k.agents[record.agent]
            await self.runs.continue_claimed(agent, lease)
            self.completed += 1
        except asyncio.CancelledError:
            raise
        except KeelError as exc:
            _log.warning("run %s was not driven: %s", lease.run_id, exc.message)
        except Exception:  # noqa: BLE001 - one broken run must not stop the worker
            _log.exception("run %s failed in the worker", lease.run_id)

    async def _idle(self, changes: Any) -> None:
        """Sleep until the queue changes, a slot frees up, we are stopped, or the poll."""
        self._freed.clear()
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(self._freed.wait()),
        ]
        if changes is not None:
            waiters.append(asyncio.ensure_future(changes.wait(self.poll_interval_s)))
        else:
            waiters.append(asyncio.ensure_future(asyncio.sleep(self.poll_interval_s)))
        try:
            await asyncio.wait(
                waiters, timeout=self.poll_interval_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=self.grace_s)
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*pending, return_exceptions=True)
