"""The audit log's interface, :class:`AuditLog`, with what every backend shares: validating
entries, serializing appends within the process, stamping them with the clock, paging, and
verification over a consistent snapshot."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol, Self

from keel.audit._records import AuditEntry, AuditHead, AuditRecord
from keel.audit._verify import AuditVerification, Walker, check_anchor, outcome, parse_head
from keel.errors import ConfigurationError, StoreError

__all__ = ["MAX_PAGE", "AuditLog", "Snapshot"]

# The most records one call of records() returns.
MAX_PAGE = 10_000


class Snapshot(Protocol):
    """One consistent view of a log, for verification: appends made meanwhile (by this or
    another process) are not seen, so the head and the records agree."""

    async def head(self) -> AuditHead:
        """The head the log keeps."""
        ...

    async def page(self, after_seq: int, limit: int) -> list[AuditRecord]:
        """Up to ``limit`` records with ``seq > after_seq``, in ``seq`` order."""
        ...

    async def seq_of(self, digest: str) -> int | None:
        """The ``seq`` of the record whose hash is ``digest``, if any."""
        ...


class AuditLog(ABC):
    """An append-only, hash-chained log of governance actions (see :mod:`keel.audit`).

    There is no way to change or remove a record through this interface. Appends are safe
    from any number of coroutines (they take turns on an ``asyncio.Lock``) and, for SQLite
    and PostgreSQL, from any number of processes (they take turns on the database's lock), so
    the chain never forks.

    Args:
        clock: Gives ``at`` of new records, in unix seconds (``time.time`` by default).
        page_size: How many records :meth:`verify` reads at a time.
    """

    def __init__(self, *, clock: Callable[[], float] | None = None, page_size: int = 1000) -> None:
        if not 1 <= page_size <= MAX_PAGE:
            raise ConfigurationError(
                f"page_size must be between 1 and {MAX_PAGE}, got {page_size!r}; the default "
                "is 1000"
            )
        self._clock = clock or time.time
        self._page_size = page_size
        self._append_lock = asyncio.Lock()
        self._closed = False

    async def append(self, entry: AuditEntry) -> AuditRecord:
        """Add one record for ``entry`` at the end of the chain and return it, committed."""
        (record,) = await self.append_many([entry])
        return record

    async def append_many(self, entries: Iterable[AuditEntry]) -> list[AuditRecord]:
        """Add records for ``entries``, in order, in one transaction (all or none), all
        stamped with the same ``at``; return them committed."""
        batch = list(entries)
        for entry in batch:
            if not isinstance(entry, AuditEntry):
                raise ConfigurationError(
                    f"an audit log appends AuditEntry objects, got {type(entry).__name__}; "
                    "e.g. AuditEntry(actor='runtime', action='policy.decided', subject=run_id)"
                )
        if not batch:
            return []
        async with self._append_lock:
            self._check_open()
            return await self._write(batch, self._clock())

    async def records(self, since_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        """Up to ``limit`` records with ``seq > since_seq``, oldest first. Page through the
        log by passing the last ``seq`` seen as ``since_seq``."""
        if since_seq < 0 or not 1 <= limit <= MAX_PAGE:
            raise ConfigurationError(
                f"records() takes since_seq >= 0 and 1 <= limit <= {MAX_PAGE}, got "
                f"since_seq={since_seq!r}, limit={limit!r}"
            )
        self._check_open()
        return await self._page(since_seq, limit)

    async def head(self) -> AuditHead:
        """The last record's ``seq`` and ``hash`` as the log keeps them (``0`` and 64 zeros
        when empty). Keep it somewhere else to anchor the log: see :meth:`verify`."""
        self._check_open()
        return await self._head()

    async def verify(
        self, *, expected_head: AuditHead | tuple[int, str] | str | None = None
    ) -> AuditVerification:
        """Check every record against its hash and the one before it, and the end of the
        chain against the head the log keeps; the first problem found is reported.

        Args:
            expected_head: A head kept outside the database (``SEQ:HASH`` as ``keel audit
                head`` prints it, an :class:`AuditHead`, or a bare hash): the log must
                still contain that record, unchanged. Without it, someone able to write to
                the database can rewrite the records and the head together unnoticed.
        """
        anchor = None if expected_head is None else parse_head(expected_head)
        self._check_open()
        async with self._snapshot() as snapshot:
            stored = await snapshot.head()
            walker = Walker()
            while True:
                page = await snapshot.page(walker.last.seq, self._page_size)
                for record in page:
                    elsewhere = None
                    if walker.needs_lookup(record):
                        elsewhere = await snapshot.seq_of(record.prev_hash)
                    finding = walker.feed(record, elsewhere)
                    if finding is not None:
                        return outcome(walker, finding)
                if len(page) < self._page_size:
                    break
            finding = walker.end(stored)
            if finding is None and isinstance(anchor, AuditHead):
                found = await snapshot.page(anchor.seq - 1, 1) if anchor.seq > 0 else []
                at_anchor = found[0] if found and found[0].seq == anchor.seq else None
                finding = check_anchor(anchor, walker.last, at_anchor)
            elif finding is None and isinstance(anchor, str):
                finding = check_anchor(anchor, walker.last, await snapshot.seq_of(anchor))
            return outcome(walker, finding)

    async def aclose(self) -> None:
        """Close the log's connections; closing twice is fine, any other use afterwards
        raises :class:`keel.errors.StoreError`."""
        async with self._append_lock:
            if self._closed:
                return
            self._closed = True
        await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{type(self).__name__} is closed; open a new one to use it")

    # --- what each backend provides ---------------------------------------------------------

    @abstractmethod
    async def _write(self, entries: list[AuditEntry], at: float) -> list[AuditRecord]:
        """Under the backend's own lock (other processes'), read the head, build the records
        with :func:`keel.audit._records.chain`, store them and the new head, commit."""

    @abstractmethod
    async def _page(self, after_seq: int, limit: int) -> list[AuditRecord]:
        """Records with ``seq > after_seq``, in order."""

    @abstractmethod
    async def _head(self) -> AuditHead:
        """The stored head."""

    @abstractmethod
    def _snapshot(self) -> AbstractAsyncContextManager[Snapshot]:
        """A consistent read-only view of the log."""

    @abstractmethod
    async def _close(self) -> None:
        """Release connections."""
