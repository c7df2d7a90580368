"""Keeping a run's lease alive while this process advances it.

A :class:`LeaseKeeper` renews the lease every third of its time to live in a background task.
If a renewal finds the lease taken over (the process stalled past its expiry and another one
took the run), the keeper records the loss: the driver checks :attr:`LeaseKeeper.lost` before
every effect and stops, and the store refuses its appends anyway (the fencing token is stale).
A renewal that fails for another reason (the database is briefly unreachable) is retried on the
next beat; the lease only matters again when someone else tries to take it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

from keel.errors import LeaseLostError, StoreError
from keel.ports import Lease, Store

__all__ = ["LeaseKeeper", "new_owner_id"]

_log = logging.getLogger("keel.runtime")


def new_owner_id() -> str:
    """An id for this process's runtime: host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseKeeper:
    """Renews one run's lease until stopped; use as an async context manager.

    Each beat is a timer (``call_later``) that starts the renewal only when it is due: most runs
    end before their first renewal, and a timer costs far less to set and cancel than a task.
    """

    def __init__(self, store: Store, lease: Lease, *, ttl_s: float) -> None:
        self._store = store
        self.lease = lease
        self._ttl_s = ttl_s
        self.lost: LeaseLostError | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._stopped = False

    async def __aenter__(self) -> LeaseKeeper:
        self._schedule()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal

    def _schedule(self) -> None:
        if not self._stopped and self.lost is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._ttl_s / 3, self._due)

    def _due(self) -> None:
        self._renewal = asyncio.create_task(self._renew(), name=f"keel-lease-{self.lease.run_id}")

    async def _renew(self) -> None:
        try:
            self.lease = await self._store.renew_lease(self.lease, ttl_s=self._ttl_s)
        except LeaseLostError as exc:
            self.lost = exc
        except StoreError as exc:  # transient: try again on the next beat
            _log.warning("could not renew the lease on run %s: %s", self.lease.run_id, exc)
        self._schedule()

    async def release(self) -> None:
        """Stop renewing and give the lease up (unless it was lost)."""
        await self.__aexit__(None, None, None)
        if self.lost is None:
            with contextlib.suppress(StoreError):
                await self._store.release_lease(self.lease)
