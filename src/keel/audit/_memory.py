"""The in-memory audit log: for tests and examples; gone when the process ends."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from keel.audit._log import AuditLog, Snapshot
from keel.audit._records import GENESIS_HASH, AuditEntry, AuditHead, AuditRecord, chain

__all__ = ["MemoryAuditLog"]


class _ListSnapshot:
    def __init__(self, records: list[AuditRecord], head: AuditHead) -> None:
        self._records = records
        self._head = head

    async def head(self) -> AuditHead:
        return self._head

    async def page(self, after_seq: int, limit: int) -> list[AuditRecord]:
        return _after(self._records, after_seq, limit)

    async def seq_of(self, digest: str) -> int | None:
        return next((r.seq for r in self._records if r.hash == digest), None)


def _after(records: list[AuditRecord], after_seq: int, limit: int) -> list[AuditRecord]:
    start = bisect.bisect_right(records, after_seq, key=lambda r: r.seq)
    return records[start : start + limit]


class MemoryAuditLog(AuditLog):
    """An :class:`keel.audit.AuditLog` held in this process's memory."""

    def __init__(self, *, clock: Callable[[], float] | None = None, page_size: int = 1000) -> None:
        super().__init__(clock=clock, page_size=page_size)
        self._records: list[AuditRecord] = []
        self._stored_head = AuditHead(0, GENESIS_HASH)

    def __repr__(self) -> str:
        return f"MemoryAuditLog(records={len(self._records)})"

    async def _write(self, entries: list[AuditEntry], at: float) -> list[AuditRecord]:
        made = chain(self._stored_head, entries, at)
        self._records.extend(made)
        self._stored_head = AuditHead(made[-1].seq, made[-1].hash)
        return made

    async def _page(self, after_seq: int, limit: int) -> list[AuditRecord]:
        return _after(self._records, after_seq, limit)

    async def _head(self) -> AuditHead:
        return self._stored_head

    def _snapshot(self) -> AbstractAsyncContextManager[Snapshot]:
        return self._view()

    @asynccontextmanager
    async def _view(self) -> AsyncIterator[Snapshot]:
        # Records are never changed in place, so a copy of the list is a snapshot.
        yield _ListSnapshot(list(self._records), self._stored_head)

    async def _close(self) -> None:
        return None
