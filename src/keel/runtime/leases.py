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
    """Renews one run's lease until stopped; use as an async context manager."""

    def __init__(self, store: Store, lease: Lease, *, ttl_s: float) -> None:
        self._store = store
        self.lease = lease
        self._ttl_s = ttl_s
        self.lost: LeaseLostError | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LeaseKeeper:
        self._task = asyncio.create_task(self._beat(), name=f"keel-lease-{self.lease.run_id}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _beat(self) -> None:
        interval = self._ttl_s / 3
        while self.lost is None:
            await asyncio.sleep(interval)
            try:
                self.lease = await self._store.renew_lease(self.lease, ttl_s=self._ttl_s)
            except LeaseLostError as exc:
                self.lost = exc
            except StoreError as exc:  # transient: try again on the next beat
                _log.warning("could not renew the lease on run %s: %s", self.lease.run_id, exc)

    async def release(self) -> None:
        """Stop renewing and give the lease up (unless it was lost)."""
        await self.__aexit__(None, None, None)
        if self.lost is None:
            with contextlib.suppress(StoreError):
                await self._store.release_lease(self.lease)
