"""An in-memory journal store, for tests and ephemeral runs.

It keeps the event objects themselves (frozen dataclasses) rather than their encoding, so an
append costs a few dictionary operations. It follows the same contract as the SQLite and
PostgreSQL stores, down to the error types and messages; the contract suite in
``tests/stores`` runs over all of them. Lease times come from the injected
:class:`keel.ports.Clock`, so tests can expire a lease without sleeping.

One difference cannot be avoided without encoding: data that has no JSON form (a
``RunFinished.output`` holding an arbitrary object) is kept as it is here, where a durable store
rejects it, and a tuple comes back as a tuple here and as a list from a durable store. Pass
``check_json=True`` to round-trip every event and message through :mod:`keel._core.codec` on
append, as a durable store does: tests then fail on data that would not survive one.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType

from keel._core.codec import decode_event, decode_message, encode_event, encode_message
from keel._core.events import Event, RunStatus
from keel._core.messages import Message
from keel.errors import (
    JournalConflictError,
    RunExistsError,
    RunLeasedError,
    RunNotFoundError,
    ThreadBusyError,
    ThreadChangedError,
)
from keel.ports import (
    Change,
    Clock,
    Feedback,
    Lease,
    RunQuery,
    RunRecord,
    SystemClock,
    ThreadHistory,
)
from keel.stores._common import (
    LeaseState,
    check_append,
    check_idempotency_key,
    check_limit,
    check_ttl,
    closed_error,
    granted_token,
    lease_lost,
    notify_keys,
    refusal,
    started_after,
)
from keel.stores._history import filters_of
from keel.stores._memory_history import MemoryFeedback
from keel.stores._signals import QUEUE, Signals

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Run:
    record: RunRecord
    events: list[Event]
    #: Insertion order: a thread's runs go first come, first served, whatever their clocks.
    number: int = 0
    lease_owner: str | None = None
    lease_token: int = 0
    lease_expires_at: float | None = None

    def state(self) -> LeaseState:
        return LeaseState(
            last_seq=len(self.events),
            owner=self.lease_owner,
            token=self.lease_token,
            expires_at=self.lease_expires_at,
        )

    def view(self) -> RunRecord:
        """The record with what is known of its lease."""
        record = self.record
        if record.lease_owner == self.lease_owner and record.lease_expires_at == (
            self.lease_expires_at
        ):
            return record
        return dataclasses.replace(
            record, lease_owner=self.lease_owner, lease_expires_at=self.lease_expires_at
        )

    def lease(self) -> Lease:
        assert self.lease_owner is not None
        assert self.lease_expires_at is not None
        return Lease(
            run_id=self.record.run_id,
            owner=self.lease_owner,
            token=self.lease_token,
            expires_at=self.lease_expires_at,
        )


@dataclass(slots=True)
class _Thread:
    # The highest sequence number ever given to a message of the thread: kept when messages
    # are deleted, so that a number is never handed out twice.
    last_seq: int = 0
    messages: list[tuple[int, str, Message]] = field(default_factory=list)  # seq, run_id, msg


class MemoryStore(MemoryFeedback):
    """A :class:`keel.ports.Store` that keeps everything in this process's memory.

    Args:
        clock: The clock that lease times are measured by; the system clock by default.
        check_json: Round-trip every appended event and message through its JSON encoding, so
            that data a durable store would reject (or return changed) fails here too. Meant
            for tests; it makes appends a few times slower.

    Safe to share between threads and tasks: every method holds a lock for its whole work, so
    two writers racing with the same ``expected_seq`` see exactly one success. Nothing survives
    the object; use :class:`keel.stores.SQLiteStore` for durable runs.
    """

    def __init__(self, *, clock: Clock | None = None, check_json: bool = False) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._check_json = check_json
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._threads: dict[str, _Thread] = {}
        # The runs that hold each thread (holds_thread), so thread checks never scan all runs.
        self._holders: dict[str, set[str]] = {}
        self._feedback: dict[str, list[Feedback]] = {}
        # Idempotency keys: (tenant or "", key) -> run id, and back, to forget them on deletion.
        self._keys: dict[tuple[str, str], str] = {}
        self._key_of: dict[str, tuple[str, str]] = {}
        self._numbers = itertools.count(1)
        self._signals = Signals()
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryStore(runs={len(self._runs)})"

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
        events = self._copy_events(events)
        key = None if idempotency_key is None else (record.tenant or "", idempotency_key)
        with self._lock:
            self._check_open()
            earlier = None if key is None else self._runs.get(self._keys.get(key, ""))
            if key is not None and earlier is not None and earlier.record.run_id != run_id:
                raise RunExistsError(
                    key[1],
                    run_id=earlier.record.run_id,
                    agent=earlier.record.agent,
                    tenant=record.tenant,
                )
            if exclusive and (holder := self._holder(record.thread_id, but=run_id)) is not None:
                raise ThreadBusyError(record.thread_id, active_run_id=holder.run_id)
            expected = started_after(events)
            if exclusive and expected is not None:
                thread = self._threads.get(record.thread_id)
                actual = 0 if thread is None else thread.last_seq
                if actual != expected:
                    raise ThreadChangedError(record.thread_id, expected=expected, actual=actual)
            existing = self._runs.get(run_id)
            if existing is not None:
                raise JournalConflictError(run_id, expected=0, actual=len(existing.events))
            run = _Run(
                record=_stored(record, len(events)), events=list(events), number=next(self._numbers)
            )
            if owner is not None:
                run.lease_owner = owner
                run.lease_token = 1
                run.lease_expires_at = self._clock.now() + ttl_s
            self._runs[run_id] = run
            self._index(run.record)
            if key is not None:
                self._keys[key] = run_id
                self._key_of[run_id] = key
            lease = run.lease() if owner is not None else None
        self._signals.notify(*notify_keys(run_id, record, queued=owner is None))
        return lease

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
        With ``release``, give ``lease`` up in the same step.

        Raises, changing nothing: :class:`keel.errors.LeaseLostError` if ``lease`` is not the
        run's current lease; :class:`keel.errors.RunLeasedError` if there is no ``lease`` and
        another process holds an unexpired one; :class:`keel.errors.JournalConflictError` if the
        journal does not hold exactly ``expected_seq`` events.
        """
        check_append(run_id, events, expected_seq, record, lease, release=release)
        events = self._copy_events(events)
        messages = self._copy_messages(thread_messages)
        with self._lock:
            self._check_open()
            run = self._runs.get(run_id)
            current = (  # the common case, checked without building anything
                run is not None
                and lease is not None
                and run.lease_token == lease.token
                and run.lease_owner == lease.owner
                and len(run.events) == expected_seq
            )
            if not current:
                state = None if run is None else run.state()
                error = refusal(
                    run_id,
                    expected_seq=expected_seq,
                    lease=lease,
                    state=state,
                    now=self._clock.now(),
                )
                if error is not None:
                    raise error
            created = run is None
            if run is None:
                run = self._runs[run_id] = _Run(
                    record=record, events=[], number=next(self._numbers)
                )
            run.events.extend(events)
            last_seq = len(run.events)
            previous = run.record
            run.record = _stored(record, last_seq)
            if created or previous.holds_thread != record.holds_thread:
                self._index(run.record)
            if messages:
                thread = self._threads.setdefault(record.thread_id, _Thread())
                thread.messages.extend(
                    (seq, run_id, message)
                    for seq, message in enumerate(messages, thread.last_seq + 1)
                )
                thread.last_seq += len(messages)
            if release:
                run.lease_owner = None
                run.lease_expires_at = None
        if self._signals.watched:
            self._signals.notify(*notify_keys(run_id, record, queued=release))
        return last_seq

    async def acquire_lease(
        self, run_id: str, *, owner: str, ttl_s: float, force: bool = False
    ) -> Lease:
        """Take the run's lease if it is free, expired or ``owner``'s own; ``force`` takes it
        from another owner. See :meth:`keel.ports.Leases.acquire_lease`."""
        check_ttl(ttl_s)
        with self._lock:
            self._check_open()
            run = self._runs.get(run_id)
            if run is None:
                raise RunNotFoundError(run_id)
            now = self._clock.now()
            run.lease_token = granted_token(run_id, run.state(), owner=owner, force=force, now=now)
            run.lease_owner = owner
            run.lease_expires_at = now + ttl_s
            return run.lease()

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease:
        """Extend ``lease`` to ``ttl_s`` from now; :class:`keel.errors.LeaseLostError` if it is
        no longer current."""
        check_ttl(ttl_s)
        with self._lock:
            self._check_open()
            run = self._runs.get(lease.run_id)
            state = None if run is None else run.state()
            if run is None or state is None or not state.is_current(lease):
                raise lease_lost(lease, state)
            run.lease_expires_at = self._clock.now() + ttl_s
            return run.lease()

    async def release_lease(self, lease: Lease) -> None:
        """Give ``lease`` up if it is still current; otherwise do nothing."""
        with self._lock:
            self._check_open()
            run = self._runs.get(lease.run_id)
            released = run is not None and run.state().is_current(lease)
            if run is not None and released:
                run.lease_owner = None
                run.lease_expires_at = None
        if released:
            self._signals.notify(lease.run_id, QUEUE)

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
        wanted = None if agents is None else set(agents)
        with self._lock:
            self._check_open()
            now = self._clock.now()
            pool = (
                self._runs.values()
                if run_ids is None
                else [self._runs[r] for r in set(run_ids) if r in self._runs]
            )
            candidates = [
                run
                for run in pool
                if run.record.status in ("running", "queued")
                and (wanted is None or run.record.agent in wanted)
                and run.state().holder(now) is None
                and (run.record.status == "running" or self._first_in_thread(run))
            ]
            candidates.sort(key=lambda r: (r.record.created_at, r.record.run_id))
            leases = []
            for run in candidates[:limit]:
                run.lease_token += 1
                run.lease_owner = owner
                run.lease_expires_at = now + ttl_s
                leases.append(run.lease())
            return leases

    def watch(self, run_id: str | None) -> AbstractAsyncContextManager[Change]:
        """Register for changes of ``run_id`` (``None``: the queue); see
        :meth:`keel.ports.Watchable.watch`."""
        return self._signals.watch(run_id)

    async def load(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        """The run's events after ``after_seq``, in order; raises
        :class:`keel.errors.RunNotFoundError`."""
        with self._lock:
            self._check_open()
            run = self._runs.get(run_id)
            if run is None:
                raise RunNotFoundError(run_id)
            return run.events[max(0, after_seq) :]

    async def get_run(self, run_id: str) -> RunRecord:
        """The latest summary of a run; raises :class:`keel.errors.RunNotFoundError`."""
        with self._lock:
            self._check_open()
            run = self._runs.get(run_id)
            if run is None:
                raise RunNotFoundError(run_id)
            return run.view()

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
        ``query``, ``thread_id`` and ``status``; ``before``: the previous page's last
        ``cursor``. See :meth:`keel.ports.Admin.list_runs`."""
        if limit is not None:
            check_limit(limit)
        filters = filters_of(query, thread_id=thread_id, status=status, before=before)
        return self._select(filters.matches, newest_first=True, limit=limit)

    async def active_run(self, thread_id: str) -> RunRecord | None:
        """The run that holds the thread: its oldest run with ``holds_thread``, or ``None``."""
        with self._lock:
            self._check_open()
            return self._holder(thread_id)

    async def thread_history(self, thread_id: str, *, upto_seq: int | None = None) -> ThreadHistory:
        """The thread's messages up to ``upto_seq`` (all if ``None``) and its last seq."""
        with self._lock:
            self._check_open()
            thread = self._threads.get(thread_id)
            if thread is None:
                return ThreadHistory(messages=[], last_seq=0)
            return ThreadHistory(
                messages=[
                    message
                    for seq, _, message in thread.messages
                    if upto_seq is None or seq <= upto_seq
                ],
                last_seq=thread.last_seq,
            )

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete runs with their events, leases and thread messages; return how many existed.

        Raises :class:`keel.errors.RunLeasedError`, deleting nothing, if one has a live lease.
        """
        with self._lock:
            self._check_open()
            deleted = self._delete({run_id for run_id in run_ids if run_id in self._runs})
        self._signals.notify(QUEUE)
        return deleted

    async def delete_runs_before(self, before: float) -> int:
        """Delete runs created before ``before``, except ``queued``, ``running`` or leased
        ones."""
        now = self._clock.now()
        with self._lock:
            self._check_open()
            deleted = self._delete(
                {
                    run_id
                    for run_id, run in self._runs.items()
                    if run.record.created_at < before
                    and run.record.status not in ("running", "queued")
                    and run.state().holder(now) is None
                }
            )
        self._signals.notify(QUEUE)
        return deleted

    async def delete_thread(self, thread_id: str) -> int:
        """Delete the thread's messages and runs; return how many runs.

        Raises :class:`keel.errors.RunLeasedError`, deleting nothing, if a run has a live lease.
        The thread's message counter stays, so its numbers are never handed out again.
        """
        with self._lock:
            self._check_open()
            ids = {
                run_id for run_id, run in self._runs.items() if run.record.thread_id == thread_id
            }
            deleted = self._delete(ids)
            thread = self._threads.get(thread_id)
            if thread is not None:
                # The counter stays, so that the thread's numbers are never handed out again.
                thread.messages.clear()
        return deleted

    async def close(self) -> None:
        """Drop everything. Closing twice is fine; any other use afterwards raises."""
        with self._lock:
            self._closed = True
            self._runs.clear()
            self._threads.clear()
            self._holders.clear()
            self._feedback.clear()
            self._keys.clear()
            self._key_of.clear()

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error("MemoryStore")

    def _copy_events(self, events: Sequence[Event]) -> Sequence[Event]:
        if not self._check_json:
            return events
        return [decode_event(encode_event(event)) for event in events]

    def _copy_messages(self, messages: Sequence[Message]) -> Sequence[Message]:
        if not self._check_json:
            return messages
        return [decode_message(encode_message(message)) for message in messages]

    def _select(
        self, keep: Callable[[RunRecord], bool], *, newest_first: bool, limit: int | None
    ) -> list[RunRecord]:
        with self._lock:
            self._check_open()
            records = [run.view() for run in self._runs.values() if keep(run.record)]
        records.sort(key=lambda r: (r.created_at, r.run_id), reverse=newest_first)
        return records if limit is None else records[:limit]

    def _index(self, record: RunRecord) -> None:
        """Keep ``_holders`` in step with a run's ``holds_thread``; with the lock held."""
        holders = self._holders.setdefault(record.thread_id, set())
        if record.holds_thread:
            holders.add(record.run_id)
        else:
            holders.discard(record.run_id)
            if not holders:
                del self._holders[record.thread_id]

    def _holder(self, thread_id: str, *, but: str | None = None) -> RunRecord | None:
        """The first-come run holding the thread; with the lock held."""
        found = [
            self._runs[run_id]
            for run_id in self._holders.get(thread_id, ())
            if run_id != but and run_id in self._runs
        ]
        first = min(found, key=lambda r: r.number, default=None)
        return None if first is None else first.view()

    def _first_in_thread(self, run: _Run) -> bool:
        """Whether no earlier run holds the thread of this queued run; with the lock held."""
        for run_id in self._holders.get(run.record.thread_id, ()):
            other = self._runs.get(run_id)
            if other is not None and other.number < run.number:
                return False
        return True

    def _delete(self, run_ids: set[str]) -> int:
        """Called with the lock held: check every lease first, then delete."""
        now = self._clock.now()
        for run_id in sorted(run_ids):
            holder = self._runs[run_id].state().holder(now)
            if holder is not None:
                raise RunLeasedError(run_id, owner=holder[0], expires_at=holder[1])
        for run_id in run_ids:
            self._feedback.pop(run_id, None)
            key = self._key_of.pop(run_id, None)
            if key is not None:
                del self._keys[key]
            record = self._runs.pop(run_id).record
            holders = self._holders.get(record.thread_id)
            if holders is not None:
                holders.discard(run_id)
                if not holders:
                    del self._holders[record.thread_id]
        if run_ids:
            for thread in self._threads.values():
                thread.messages = [item for item in thread.messages if item[1] not in run_ids]
        return len(run_ids)


def _stored(record: RunRecord, last_seq: int) -> RunRecord:
    """The record as kept: its position set, lease fields left to the run."""
    if (
        record.last_seq == last_seq
        and record.lease_owner is None
        and record.lease_expires_at is None
    ):
        return record
    return dataclasses.replace(record, last_seq=last_seq, lease_owner=None, lease_expires_at=None)
