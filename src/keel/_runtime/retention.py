"""Retention: deleting runs, old runs, whole threads and a user's runs, with everything
derived from them. Each deletion is recorded in the audit log when the runtime keeps one."""

from __future__ import annotations

from collections.abc import Iterable

from keel._runtime.auditing import Auditor
from keel._runtime.inputs import check_principal
from keel._runtime.kernel import Kernel
from keel.errors import UsageError
from keel.ports import RunQuery

__all__ = ["Retention"]


class Retention:
    """Deletion of one runtime's runs."""

    def __init__(self, kernel: Kernel, auditor: Auditor | None = None) -> None:
        self.k = kernel
        self._auditor = auditor

    async def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete runs and everything derived from them; return how many existed."""
        wanted = list(run_ids)
        deleted = await self.k.store.delete_runs(wanted)
        if self._auditor is not None:
            for run_id in wanted:
                # The store says how many of the batch existed, not which.
                details = {"batch_size": len(wanted), "batch_deleted": deleted}
                await self._auditor.record("run.deleted", run_id, details=details)
        return deleted

    async def delete_runs_older_than(self, seconds: float) -> int:
        """Delete runs created more than ``seconds`` ago (except queued and running ones)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise UsageError(f"seconds must be a number of 0 or more, got {seconds!r}")
        before = self.k.clock.now() - seconds
        deleted = await self.k.store.delete_runs_before(before)
        if self._auditor is not None:
            await self._auditor.record(
                "runs.deleted", "runs", details={"created_before": before, "count": deleted}
            )
        return deleted

    async def delete_thread(self, thread_id: str) -> int:
        """Delete a thread's conversation and all its runs; return how many runs."""
        deleted = await self.k.store.delete_thread(thread_id)
        if self._auditor is not None:
            await self._auditor.record("thread.deleted", thread_id, details={"runs": deleted})
        return deleted

    async def delete_user_data(self, user: str, *, tenant: str | None = None) -> int:
        """Delete every run for ``user`` (of ``tenant`` only, when given), with their events,
        thread messages and feedback; return how many runs."""
        checked = check_principal(tenant, user)
        assert checked.user is not None
        query = RunQuery(user=checked.user, tenant=checked.tenant)
        run_ids = [r.run_id for r in await self.k.store.list_runs(query, limit=None)]
        # One batch: the store refuses it whole (RunLeasedError) if a run is being driven.
        deleted = await self.k.store.delete_runs(run_ids) if run_ids else 0
        if self._auditor is not None:
            await self._auditor.record(
                "user.deleted",
                checked.user,
                tenant=checked.tenant,
                details={"runs": deleted},
            )
        return deleted
