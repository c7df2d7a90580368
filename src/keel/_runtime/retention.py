"""Retention: deleting runs, old runs and whole threads, with everything derived from them."""

from __future__ import annotations

from collections.abc import Iterable

from keel._runtime.kernel import Kernel
from keel.errors import UsageError

__all__ = ["Retention"]


class Retention:
    """Deletion of one runtime's runs."""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel

    async def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete runs and everything derived from them; return how many existed."""
        return await self.k.store.delete_runs(list(run_ids))

    async def delete_runs_older_than(self, seconds: float) -> int:
        """Delete runs created more than ``seconds`` ago (except queued and running ones)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise UsageError(f"seconds must be a number of 0 or more, got {seconds!r}")
        return await self.k.store.delete_runs_before(self.k.clock.now() - seconds)

    async def delete_thread(self, thread_id: str) -> int:
        """Delete a thread's conversation and all its runs; return how many runs."""
        return await self.k.store.delete_thread(thread_id)
