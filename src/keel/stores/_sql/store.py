"""The SQL store's public methods, shared by SQLite and PostgreSQL.

Each method checks its arguments, encodes what it writes (before any connection is touched),
builds its program (:mod:`.programs`) and hands it to the backend's executor
(:meth:`SQLStore._run`). The backends differ only in how they run programs and watch, and in
that a backend may commit the appends and starts of several callers together
(:meth:`SQLStore._write`: PostgreSQL does).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Self, TypeVar

from keel._core.events import Event, RunStatus
from keel._core.messages import Message
from keel.errors import ConfigurationError
from keel.ports import Change, Feedback, FeedbackQuery, Lease, RunQuery, RunRecord, ThreadHistory
from keel.stores._common import (
    check_append,
    check_idempotency_key,
    check_limit,
    check_ttl,
    notify_keys,
)
from keel.stores._history import check_feedback, check_feedback_query, filters_of
from keel.stores._keyring import Keyring
from keel.stores._signals import Signals
from keel.stores._sql.program import Row, Task
from keel.stores._sql.programs import Programs, Write
from keel.stores._sql.rotation import Rotation, Rotator, rotate

__all__ = ["SQLStore"]

T = TypeVar("T")


class SQLStore(abc.ABC):
    """A :class:`keel.ports.Store` over SQL; subclasses run the programs on a database."""

    _programs: Programs
    _signals: Signals

    @abc.abstractmethod
    async def _run(self, task: Task[T]) -> T:
        """Run ``task``'s program and return its result (a write: once it has committed)."""

    async def _write(self, task: Task[T], w: Write, written: Callable[[Row], T]) -> T:
        """Run ``task``, whose whole effect when allowed is writing ``w`` (an append, or a
        start that checks nothing else). A backend may commit it together with other callers'
        writes; ``written`` then makes the result from the row its group returned for it
        (``(run_id, lease_expires_at)``). By default the task runs on its own."""
        return await self._run(task)

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and files."""

    @property
    def keyring(self) -> Keyring | None:
        """The keys this store encrypts with (``None``: it writes plain JSON)."""
        return self._programs.keyring

    async def rotate_keys(self, *, encrypt_plain: bool = False, batch_size: int = 500) -> Rotation:
        """Re-encrypt every encrypted event body, thread message and run field with the
        keyring's first key (and, with ``encrypt_plain``, every plain one), ``batch_size``
        rows per transaction; what it did, counted.

        Safe to run again and while runs are being written: a value is rewritten only if it
        is still what was read. Raises :class:`keel.errors.ConfigurationError` without a
        keyring, and :class:`keel.errors.StoreError` for a value no key decrypts (nothing
        after it is rewritten; add its key and run again).
        """
        keyring = self._programs.keyring
        if keyring is None:
            raise ConfigurationError(
                "rotating keys needs the store's encryption keys; set KEEL_ENCRYPTION_KEYS to "
                "the new key followed by the old ones, comma-separated (or pass keyring=)"
            )
        check_limit(batch_size, "rotate_keys batch_size")
        return await rotate(
            self._run,
            Rotator(self._programs.sql),
            keyring,
            where=self._programs.where,
            encrypt_plain=encrypt_plain,
            batch_size=batch_size,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- the journal --------------------------------------------------------------------------

    async def start_run(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        record: RunRecord,
        owner: str | None,
        ttl_s: float,
        exclusive: bool = False,
        idempotency_key: str | None = None,
    ) -> Lease | None:
        """Create a run from its first events, leased to ``owner`` (fencing token 1), or
        unleased (queued) without one; with ``idempotency_key``, once per key and tenant. See
        :meth:`keel.ports.Journal.start_run`."""
        check_append(run_id, events, 0, record)
        check_ttl(ttl_s)
        check_idempotency_key(idempotency_key)
        w = Write.of(
            run_id,
            events,
            record,
            expected_seq=0,
            owner=owner,
            ttl_s=ttl_s,
            keys=notify_keys(run_id, record, queued=owner is None),
            keyring=self._programs.keyring,
            idempotency_key=idempotency_key,
        )
        programs = self._programs
        # A start that checks something (the thread, the key) is a transaction of its own.
        alone = exclusive or idempotency_key is not None
        task = Task(
            f"start run '{run_id}'",
            lambda: programs.start_run(w, exclusive=exclusive),
            write=True,
            atomic=alone or not programs.single_statement_writes,
            committed=lambda: programs.started(w),
        )
        if alone:
            return await self._run(task)

        def written(row: Row) -> Lease | None:
            if owner is None:
                return None
            return Lease(run_id=run_id, owner=owner, token=1, expires_at=float(row[1]))

        return await self._write(task, w, written)

    async def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int,
        record: RunRecord,
        thread_messages: Sequence[Message] = (),
        lease: Lease | None = None,
        release: bool = False,
    ) -> int:
        """Append ``events`` after event ``expected_seq``, upsert ``record``; return last seq.

        All or nothing: the events (seq ``expected_seq + 1`` on), the run's summary,
        ``thread_messages`` and, with ``release``, giving ``lease`` up. Raises, writing
        nothing, :class:`keel.errors.LeaseLostError` if ``lease`` is not the run's current
        lease, :class:`keel.errors.RunLeasedError` if there is no ``lease`` and another process
        holds an unexpired one, and :class:`keel.errors.JournalConflictError` if the journal
        does not hold exactly ``expected_seq`` events. Durable when it returns.
        """
        check_append(run_id, events, expected_seq, record, lease, release=release)
        w = Write.of(
            run_id,
            events,
            record,
            expected_seq=expected_seq,
            messages=thread_messages,
            lease=lease,
            release=release,
            keys=notify_keys(run_id, record, queued=release),
            keyring=self._programs.keyring,
        )
        programs = self._programs
        task = Task(
            f"append to run '{run_id}'",
            lambda: programs.append(w),
            write=True,
            atomic=not programs.single_statement_writes,
            committed=lambda: programs.appended(w),
        )
        return await self._write(task, w, lambda row: w.last_seq)

    async def load(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        """The run's events after ``after_seq``, in order; raises
        :class:`keel.errors.RunNotFoundError`."""
        programs = self._programs
        return await self._run(
            Task(f"load run '{run_id}'", lambda: programs.load(run_id, after_seq))
        )

    async def get_run(self, run_id: str) -> RunRecord:
        """The latest summary of a run, with its lease; raises
        :class:`keel.errors.RunNotFoundError`."""
        programs = self._programs
        return await self._run(Task(f"read run '{run_id}'", lambda: programs.get_run(run_id)))

    # --- leases and claims --------------------------------------------------------------------

    async def acquire_lease(
        self, run_id: str, *, owner: str, ttl_s: float, force: bool = False
    ) -> Lease:
        """Take the run's lease if it is free, expired or ``owner``'s own; ``force`` takes it
        from another owner. See :meth:`keel.ports.Leases.acquire_lease`."""
        check_ttl(ttl_s)
        programs = self._programs
        return await self._run(
            Task(
                f"acquire the lease on run '{run_id}'",
                lambda: programs.acquire_lease(run_id, owner, ttl_s, force),
                write=True,
            )
        )

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease:
        """Extend ``lease`` to ``ttl_s`` from now; :class:`keel.errors.LeaseLostError` if it is
        no longer current."""
        check_ttl(ttl_s)
        programs = self._programs
        return await self._run(
            Task(
                f"renew the lease on run '{lease.run_id}'",
                lambda: programs.renew_lease(lease, ttl_s),
                write=True,
            )
        )

    async def release_lease(self, lease: Lease) -> None:
        """Give ``lease`` up if it is still current; otherwise do nothing."""
        programs = self._programs
        await self._run(
            Task(
                f"release the lease on run '{lease.run_id}'",
                lambda: programs.release_lease(lease),
                write=True,
                atomic=True,
            )
        )

    async def claim_runs(
        self,
        *,
        owner: str,
        ttl_s: float,
        limit: int,
        agents: Collection[str] | None = None,
        run_ids: Collection[str] | None = None,
    ) -> list[Lease]:
        """Lease up to ``limit`` runs to advance now, oldest first; see
        :meth:`keel.ports.Leases.claim_runs`."""
        check_ttl(ttl_s)
        check_limit(limit, "claim_runs")
        wanted = None if agents is None else sorted(set(agents))
        ids = None if run_ids is None else sorted(set(run_ids))
        programs = self._programs
        return await self._run(
            Task(
                "claim runs",
                lambda: programs.claim_runs(owner, ttl_s, limit, wanted, ids),
                write=True,
            )
        )

    def watch(self, run_id: str | None) -> AbstractAsyncContextManager[Change]:
        """Register for changes of ``run_id`` (``None``: the queue); see
        :meth:`keel.ports.Watchable.watch`."""
        return self._signals.watch(run_id)

    # --- threads ------------------------------------------------------------------------------

    async def active_run(self, thread_id: str) -> RunRecord | None:
        """The run that holds the thread: its oldest run with ``holds_thread``, or ``None``."""
        programs = self._programs
        return await self._run(
            Task(f"read thread '{thread_id}'", lambda: programs.active_run(thread_id))
        )

    async def thread_history(self, thread_id: str, *, upto_seq: int | None = None) -> ThreadHistory:
        """The thread's messages up to ``upto_seq`` (all if ``None``) and its last seq."""
        programs = self._programs
        return await self._run(
            Task(f"read thread '{thread_id}'", lambda: programs.thread_history(thread_id, upto_seq))
        )

    # --- listing and deletion -----------------------------------------------------------------

    async def list_runs(
        self,
        query: RunQuery | None = None,
        *,
        thread_id: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        limit: int | None = 50,
        before: str | None = None,
    ) -> list[RunRecord]:
        """Runs newest first (``created_at``, then ``run_id``, descending) that match
        ``query``, ``thread_id`` and ``status`` (one or several); ``limit=None`` lists them
        all. ``before``: the ``cursor`` of the previous page's last run."""
        if limit is not None:
            check_limit(limit, "list_runs")
        filters = filters_of(query, thread_id=thread_id, status=status, before=before)
        programs = self._programs
        return await self._run(Task("list runs", lambda: programs.list_runs(filters, limit)))

    async def add_feedback(self, feedback: Feedback) -> None:
        """Record feedback on a run (its comment encrypted with the keyring, if any);
        :class:`keel.errors.RunNotFoundError` if the run does not exist."""
        check_feedback(feedback)
        programs = self._programs
        await self._run(
            Task(
                f"record feedback on run '{feedback.run_id}'",
                lambda: programs.add_feedback(feedback),
                write=True,
            )
        )

    async def list_feedback(
        self, query: FeedbackQuery | None = None, *, limit: int | None = 50
    ) -> list[Feedback]:
        """Feedback matching ``query``, newest first; ``limit=None`` lists all of it."""
        if limit is not None:
            check_limit(limit, "list_feedback")
        wanted = check_feedback_query(query)
        programs = self._programs
        return await self._run(Task("list feedback", lambda: programs.list_feedback(wanted, limit)))

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete runs with their events, leases and thread messages; return how many existed.

        Raises :class:`keel.errors.RunLeasedError`, deleting nothing, if one has a live lease.
        """
        ids = list(run_ids)
        programs = self._programs
        return await self._run(
            Task("delete runs", lambda: programs.delete_runs(ids), write=True, atomic=True)
        )

    async def delete_runs_before(self, before: float) -> int:
        """Delete runs created before ``before``, except queued, running or leased ones."""
        programs = self._programs
        return await self._run(
            Task(
                "delete old runs",
                lambda: programs.delete_runs_before(before),
                write=True,
                atomic=True,
            )
        )

    async def delete_thread(self, thread_id: str) -> int:
        """Delete the thread's messages and runs; return how many runs.

        Raises :class:`keel.errors.RunLeasedError`, deleting nothing, if a run has a live lease.
        The thread's message counter stays, so its numbers are never handed out again.
        """
        programs = self._programs
        return await self._run(
            Task(
                f"delete thread '{thread_id}'",
                lambda: programs.delete_thread(thread_id),
                write=True,
                atomic=True,
            )
        )
