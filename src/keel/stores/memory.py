"""An in-memory journal store, for tests and ephemeral runs.

It keeps the event objects themselves (frozen dataclasses) rather than their encoding, so an
append costs a few dictionary operations. It follows the same contract as the SQLite store, down
to the error types and messages; the contract suite in ``tests/stores`` runs over both.

One difference cannot be avoided without encoding: data that has no JSON form (a
``RunFinished.output`` holding an arbitrary object) is kept as it is here, where a durable store
rejects it, and a tuple comes back as a tuple here and as a list from a durable store.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from types import TracebackType

from keel.core.events import Event, RunStatus
from keel.core.messages import Message
from keel.errors import JournalConflictError, RunNotFoundError
from keel.ports import RunRecord
from keel.stores._common import check_append, check_limit, closed_error

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`keel.ports.Store` that keeps everything in this process's memory.

    Safe to share between threads and tasks: every method holds a lock for its whole work, so
    two writers racing with the same ``expected_seq`` see exactly one success. Nothing survives
    the object; use :class:`keel.stores.SQLiteStore` for durable runs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, list[Event]] = {}
        self._runs: dict[str, RunRecord] = {}
        self._threads: dict[str, list[Message]] = {}
        self._closed = False

    async def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int,
        record: RunRecord,
        thread_messages: Sequence[Message] = (),
    ) -> int:
        """Append ``events`` after event ``expected_seq``, upsert ``record``; return last seq.

        Raises :class:`keel.errors.JournalConflictError` and changes nothing if the journal
        does not hold exactly ``expected_seq`` events.
        """
        check_append(run_id, events, expected_seq, record)
        with self._lock:
            self._check_open()
            journal = self._events.get(run_id)
            actual = 0 if journal is None else len(journal)
            if actual != expected_seq:
                raise JournalConflictError(run_id, expected=expected_seq, actual=actual)
            if journal is None:
                journal = self._events[run_id] = []
            journal.extend(events)
            last_seq = len(journal)
            if record.last_seq != last_seq:
                record = dataclasses.replace(record, last_seq=last_seq)
            self._runs[run_id] = record
            if thread_messages:
                self._threads.setdefault(record.thread_id, []).extend(thread_messages)
            return last_seq

    async def load(self, run_id: str) -> list[Event]:
        """All events of a run, in order; raises :class:`keel.errors.RunNotFoundError`."""
        with self._lock:
            self._check_open()
            journal = self._events.get(run_id)
            if journal is None:
                raise RunNotFoundError(run_id)
            return list(journal)

    async def get_run(self, run_id: str) -> RunRecord:
        """The latest summary of a run; raises :class:`keel.errors.RunNotFoundError`."""
        with self._lock:
            self._check_open()
            record = self._runs.get(run_id)
            if record is None:
                raise RunNotFoundError(run_id)
            return record

    async def list_runs(
        self,
        *,
        thread_id: str | None = None,
        status: RunStatus | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Runs newest first (``created_at``, then ``run_id``, descending), optionally filtered."""
        check_limit(limit)
        with self._lock:
            self._check_open()
            runs = [
                record
                for record in self._runs.values()
                if (thread_id is None or record.thread_id == thread_id)
                and (status is None or record.status == status)
            ]
        runs.sort(key=lambda record: (record.created_at, record.run_id), reverse=True)
        return runs[:limit]

    async def thread_messages(self, thread_id: str) -> list[Message]:
        """The messages appended to a thread across its runs, in order; ``[]`` if none."""
        with self._lock:
            self._check_open()
            return list(self._threads.get(thread_id, ()))

    async def close(self) -> None:
        """Drop everything. Closing twice is fine; any other use afterwards raises."""
        with self._lock:
            self._closed = True
            self._events.clear()
            self._runs.clear()
            self._threads.clear()

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error("MemoryStore")
