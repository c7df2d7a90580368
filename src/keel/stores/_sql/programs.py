"""The store's logic, written once: every operation as a program over the statements.

The programs decide; the statements do the atomic work. An append is a conditional write whose
row count says whether it was allowed; only when it was refused does the program read the run's
state to say why (:func:`keel.stores._common.refusal`: the lease first, then the position). A
backend that can fuse an append's statements into one round trip (PostgreSQL) overrides
:meth:`Programs.write_new` and :meth:`Programs.write_advance`; everything else is shared.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from keel._core.codec import encode_event, encode_message
from keel._core.events import Event
from keel._core.messages import Message
from keel.errors import (
    JournalConflictError,
    RunExistsError,
    RunLeasedError,
    RunNotFoundError,
    StoreError,
    ThreadBusyError,
    ThreadChangedError,
)
from keel.ports import Feedback, FeedbackQuery, Lease, RunRecord, ThreadHistory
from keel.stores._common import (
    QUEUE_KEY,
    LeaseState,
    decode_events,
    decode_thread_history,
    lease_lost,
    refusal,
    started_after,
)
from keel.stores._history import Filters
from keel.stores._keyring import Keyring
from keel.stores._sealed import open_record, seal, seal_record
from keel.stores._sql.history_sql import HistorySQL, encode_tools
from keel.stores._sql.program import (
    Program,
    Row,
    execute,
    execute_many,
    fetch,
    fetch_one,
    notify,
)
from keel.stores._sql.statements import (
    KEY_COLUMNS,
    MAX_SEQ,
    RECORD_COLUMNS,
    RUN_COLUMNS,
    Statements,
)

__all__ = ["Programs", "Write", "record_of"]

# A write refused for a reason that was gone when checked (a lease expired in between) is
# tried again; after this many tries the run is too contended and the caller retries.
_TRIES = 3


@dataclass(slots=True, kw_only=True)
class Write:
    """An append or a start, encoded once, before any connection is touched."""

    run_id: str
    record: RunRecord
    expected_seq: int
    lease: Lease | None = None
    release: bool = False
    owner: str | None = None
    ttl_s: float = 0.0
    history_seq: int | None = None
    idempotency_key: str | None = None
    types: list[str] = field(default_factory=list)
    ats: list[float] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    keys: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        run_id: str,
        events: Sequence[Event],
        record: RunRecord,
        *,
        expected_seq: int,
        messages: Sequence[Message] = (),
        keyring: Keyring | None = None,
        **options: Any,
    ) -> Write:
        """Encode ``events``, ``messages`` and ``record``, encrypting the bodies and the
        record's content fields with ``keyring`` if given."""
        return cls(
            run_id=run_id,
            record=seal_record(keyring, record),
            expected_seq=expected_seq,
            history_seq=started_after(events) if expected_seq == 0 else None,
            types=[event.type for event in events],
            ats=[float(event.at) for event in events],
            bodies=[seal(keyring, encode_event(event).decode()) for event in events],
            messages=[seal(keyring, encode_message(message).decode()) for message in messages],
            **options,
        )

    @property
    def last_seq(self) -> int:
        return self.expected_seq + len(self.bodies)

    def params(self) -> dict[str, Any]:
        """The run's row and everything its statements name."""
        params = {column: getattr(self.record, column) for column in RUN_COLUMNS}
        params["tools"] = encode_tools(self.record.tools)
        params["last_seq"] = self.last_seq
        params["expected_seq"] = self.expected_seq
        params["owner"] = self.owner
        params["ttl"] = float(self.ttl_s)
        params["release"] = self.release
        if self.lease is not None:
            params["lease_token"] = self.lease.token
            params["lease_owner"] = self.lease.owner
        return params

    def event_rows(self) -> list[dict[str, Any]]:
        return [
            {"run_id": self.run_id, "seq": seq, "type": kind, "at": at, "body": body}
            for seq, (kind, at, body) in enumerate(
                zip(self.types, self.ats, self.bodies, strict=True), self.expected_seq + 1
            )
        ]


def record_of(row: Row, keyring: Keyring | None = None, where: str = "") -> RunRecord:
    """A run record from a row of ``RECORD_COLUMNS``, its encrypted fields decrypted."""
    values = dict(zip(RECORD_COLUMNS, row, strict=True))
    values["holds_thread"] = bool(values["holds_thread"])
    values["tools"] = tuple(json.loads(values["tools"]))
    return open_record(keyring, RunRecord(**values), where)


class Programs:
    """Every store operation, as programs over one dialect's rendered statements.

    Args:
        sql: The statements, rendered for the dialect.
        where: Names the database in errors ("in 'keel.db'").
        lock_thread: A statement taking a transaction-long lock on ``:key`` (PostgreSQL's
            advisory lock), so that checking a thread and starting a run in it is one step;
            ``None`` where every write transaction excludes the others anyway (SQLite).
        keyring: Decrypts what is read (the store encrypts what it writes with it,
            :meth:`Write.of`); ``None``: nothing is encrypted, and reading an encrypted value
            raises :class:`keel.errors.StoreError`.
    """

    #: Whether an append or a start is one statement (then it needs no transaction).
    single_statement_writes = False

    def __init__(
        self,
        sql: Statements,
        *,
        where: str,
        lock_thread: str | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.sql = sql
        self.where = where
        self.lock_thread = lock_thread
        self.keyring = keyring
        self.history = HistorySQL(sql.render, where=where, keyring=keyring)

    # --- the journal --------------------------------------------------------------------------

    def write_new(self, w: Write) -> Program[Row | None]:
        """Insert a new run with its events and messages; its row, or ``None`` if it exists."""
        sql = self.sql
        statement = sql.insert_run if w.owner is None else sql.insert_leased_run
        row = yield from fetch_one(statement, w.params())
        if row is None:
            return None
        yield from execute_many(sql.insert_event, w.event_rows())
        yield from self.write_messages(w)
        yield from notify(*w.keys)
        return row

    def write_advance(self, w: Write) -> Program[bool]:
        """Advance an existing run from ``expected_seq``; whether the lease and position let
        it."""
        sql = self.sql
        params = w.params()
        statement = sql.advance_run if w.lease is None else sql.advance_leased_run
        stored = yield from fetch_one(statement, params)
        if stored is None:
            return False
        record = w.record
        # The indexed columns are written only when they changed (see statements._KEYS).
        if any(stored[i] != getattr(record, name) for i, name in enumerate(KEY_COLUMNS)):
            yield from execute(sql.update_run_keys, params)
        yield from execute_many(sql.insert_event, w.event_rows())
        yield from self.write_messages(w)
        yield from notify(*w.keys)
        return True

    def write_messages(self, w: Write) -> Program[None]:
        if not w.messages:
            return
        thread_id, count = w.record.thread_id, len(w.messages)
        row = yield from fetch_one(
            self.sql.reserve_thread_seqs, {"thread_id": thread_id, "count": count}
        )
        assert row is not None
        first = int(row[0]) - count + 1
        yield from execute_many(
            self.sql.insert_thread_message,
            [
                {"thread_id": thread_id, "seq": seq, "run_id": w.run_id, "body": body}
                for seq, body in enumerate(w.messages, first)
            ],
        )

    def append(self, w: Write) -> Program[int]:
        for _ in range(_TRIES):
            if w.expected_seq == 0:
                # A new run has no lease yet, so no lease can be current for it.
                written = w.lease is None and (yield from self.write_new(w)) is not None
            else:
                written = yield from self.write_advance(w)
            if written:
                return w.last_seq
            state, now = yield from self.state(w.run_id)
            error = refusal(
                w.run_id, expected_seq=w.expected_seq, lease=w.lease, state=state, now=now
            )
            if error is not None:
                raise error
        raise StoreError(
            f"append to run '{w.run_id}' {self.where} was refused {_TRIES} times for reasons "
            "that were gone when checked; the run is contended, retry"
        )

    def appended(self, w: Write) -> Program[tuple[int] | None]:
        """After a lost connection: whether the events after ``expected_seq`` are ours."""
        rows = yield from fetch(
            self.sql.appended_bodies,
            {"run_id": w.run_id, "after_seq": w.expected_seq, "count": len(w.bodies)},
        )
        return (w.last_seq,) if [row[0] for row in rows] == w.bodies else None

    def start_run(self, w: Write, *, exclusive: bool) -> Program[Lease | None]:
        sql, thread_id = self.sql, w.record.thread_id
        if w.idempotency_key is not None:
            yield from self.refuse_used_key(w)
        if exclusive:
            if self.lock_thread is not None:
                yield from fetch(self.lock_thread, {"key": f"thread:{thread_id}"})
            holder = yield from fetch_one(
                sql.other_holder, {"thread_id": thread_id, "run_id": w.run_id}
            )
            if holder is not None:
                raise ThreadBusyError(thread_id, active_run_id=holder[0])
            if w.history_seq is not None:
                row = yield from fetch_one(sql.thread_last_seq, {"thread_id": thread_id})
                actual = 0 if row is None else int(row[0])
                if actual != w.history_seq:
                    raise ThreadChangedError(thread_id, expected=w.history_seq, actual=actual)
        row = yield from self.write_new(w)
        if row is None:
            state, _ = yield from self.state(w.run_id)
            raise JournalConflictError(
                w.run_id, expected=0, actual=0 if state is None else state.last_seq
            )
        if w.idempotency_key is not None:
            yield from self.keep_key(w)
        if w.owner is None:
            return None
        return Lease(run_id=w.run_id, owner=w.owner, token=1, expires_at=float(row[0]))

    def refuse_used_key(self, w: Write) -> Program[None]:
        """Raise ``RunExistsError`` if another run was created with ``w``'s key. Its own run
        (a start retried after its commit was lost) goes on, to be refused as a conflict and
        recognised by :meth:`started`."""
        assert w.idempotency_key is not None
        row = yield from fetch_one(self.sql.select_run_key, _key_params(w))
        if row is not None and row[0] != w.run_id:
            raise RunExistsError(
                w.idempotency_key, run_id=row[0], agent=row[1], tenant=w.record.tenant
            )

    def keep_key(self, w: Write) -> Program[None]:
        """Record ``w``'s key for its new run, in the start's transaction; if a concurrent
        start committed the key first, raise ``RunExistsError`` (the start is rolled back)."""
        params = _key_params(w)
        if (yield from fetch_one(self.sql.insert_run_key, params)) is not None:
            return
        yield from self.refuse_used_key(w)
        raise StoreError(
            f"the idempotency key of run '{w.run_id}' {self.where} was taken and released "
            "while the run started; retry"
        )

    def started(self, w: Write) -> Program[tuple[Lease | None] | None]:
        """After a lost connection: whether the run is the one this start wrote."""
        if (yield from self.appended(w)) is None:
            return None
        state, _ = yield from self.state(w.run_id)
        if state is None:
            return None
        if w.owner is None:
            return (None,) if state.token == 0 else None
        if state.owner != w.owner or state.token != 1 or state.expires_at is None:
            return None
        return (Lease(run_id=w.run_id, owner=w.owner, token=1, expires_at=state.expires_at),)

    def state(self, run_id: str) -> Program[tuple[LeaseState | None, float]]:
        """The run's position and lease (``None``: no such run), and the store's time."""
        row = yield from fetch_one(self.sql.run_state, {"run_id": run_id})
        if row is None:
            now = yield from fetch_one(self.sql.select_now, {})
            assert now is not None
            return None, float(now[0])
        last_seq, owner, token, expires_at, now_s = row
        return LeaseState(int(last_seq), owner, int(token), expires_at), float(now_s)

    def load(self, run_id: str, after_seq: int) -> Program[list[Event]]:
        params = {"run_id": run_id, "after_seq": after_seq}
        if after_seq <= 0:
            rows = yield from fetch(self.sql.select_events, params)
            return decode_events(rows, run_id, where=self.where, keyring=self.keyring)
        rows = yield from fetch(self.sql.select_events_after, params)
        if not rows:
            raise RunNotFoundError(run_id)
        found = [row for row in rows if row[0] is not None]
        if not found:
            return []
        return decode_events(found, run_id, where=self.where, keyring=self.keyring)

    def get_run(self, run_id: str) -> Program[RunRecord]:
        row = yield from fetch_one(self.sql.select_run, {"run_id": run_id})
        if row is None:
            raise RunNotFoundError(run_id)
        return record_of(row, self.keyring, self.where)

    # --- threads ------------------------------------------------------------------------------

    def active_run(self, thread_id: str) -> Program[RunRecord | None]:
        row = yield from fetch_one(self.sql.active_run, {"thread_id": thread_id})
        return None if row is None else record_of(row, self.keyring, self.where)

    def thread_history(self, thread_id: str, upto_seq: int | None) -> Program[ThreadHistory]:
        bound = MAX_SEQ if upto_seq is None else upto_seq
        rows = yield from fetch(
            self.sql.thread_history, {"thread_id": thread_id, "upto_seq": bound}
        )
        return decode_thread_history(rows, thread_id, where=self.where, keyring=self.keyring)

    # --- leases and claims --------------------------------------------------------------------

    def acquire_lease(self, run_id: str, owner: str, ttl_s: float, force: bool) -> Program[Lease]:
        params = {"run_id": run_id, "owner": owner, "ttl": float(ttl_s), "force": force}
        for _ in range(_TRIES):
            row = yield from fetch_one(self.sql.acquire_lease, params)
            if row is not None:
                token, expires_at = row
                return Lease(run_id=run_id, owner=owner, token=int(token), expires_at=expires_at)
            state, now = yield from self.state(run_id)
            if state is None:
                raise RunNotFoundError(run_id)
            holder = state.holder(now)
            if holder is not None and holder[0] != owner:
                raise RunLeasedError(run_id, owner=holder[0], expires_at=holder[1])
            # Released or expired between the two statements: try again.
        raise StoreError(
            f"the lease on run '{run_id}' {self.where} changed hands {_TRIES} times while "
            "being acquired; retry"
        )

    def renew_lease(self, lease: Lease, ttl_s: float) -> Program[Lease]:
        params = {
            "run_id": lease.run_id,
            "token": lease.token,
            "owner": lease.owner,
            "ttl": float(ttl_s),
        }
        row = yield from fetch_one(self.sql.renew_lease, params)
        if row is None:
            state, _ = yield from self.state(lease.run_id)
            raise lease_lost(lease, state)
        return Lease(run_id=lease.run_id, owner=lease.owner, token=lease.token, expires_at=row[0])

    def release_lease(self, lease: Lease) -> Program[None]:
        params = {"run_id": lease.run_id, "token": lease.token, "owner": lease.owner}
        if (yield from execute(self.sql.release_lease, params)) == 1:
            yield from notify(lease.run_id, QUEUE_KEY)

    def claim_runs(
        self,
        owner: str,
        ttl_s: float,
        limit: int,
        agents: list[str] | None,
        run_ids: list[str] | None,
    ) -> Program[list[Lease]]:
        statement = self.sql.claim[agents is not None, run_ids is not None]
        params = {
            "owner": owner,
            "ttl": float(ttl_s),
            "limit": limit,
            "agents": agents,
            "run_ids": run_ids,
        }
        rows = yield from fetch(statement, params)
        rows.sort(key=lambda row: (row[3], row[0]))
        return [
            Lease(run_id=run_id, owner=owner, token=int(token), expires_at=float(expires_at))
            for run_id, token, expires_at, _ in rows
        ]

    # --- listing and deletion -----------------------------------------------------------------

    def list_runs(self, filters: Filters, limit: int | None) -> Program[list[RunRecord]]:
        return (
            yield from self.history.list_runs(
                filters, limit, lambda row: record_of(row, self.keyring, self.where)
            )
        )

    def add_feedback(self, feedback: Feedback) -> Program[None]:
        yield from self.history.add_feedback(feedback)

    def list_feedback(self, query: FeedbackQuery, limit: int | None) -> Program[list[Feedback]]:
        return (yield from self.history.list_feedback(query, limit))

    def delete_runs(self, run_ids: Sequence[str]) -> Program[int]:
        ids = sorted(set(run_ids))
        if not ids:
            return 0
        rows = yield from fetch(self.sql.lock_runs, {"run_ids": ids})
        _refuse_leased(rows)
        return (yield from self._delete([row[0] for row in rows]))

    def delete_runs_before(self, before: float) -> Program[int]:
        rows = yield from fetch(self.sql.lock_old_runs, {"before": before})
        return (yield from self._delete([row[0] for row in rows]))

    def delete_thread(self, thread_id: str) -> Program[int]:
        rows = yield from fetch(self.sql.lock_thread_runs, {"thread_id": thread_id})
        _refuse_leased(rows)
        deleted = yield from self._delete([row[0] for row in rows])
        # The counter (threads.last_seq) stays, so the numbers are never handed out again.
        yield from execute(self.sql.delete_thread_messages, {"thread_id": thread_id})
        return deleted

    def _delete(self, run_ids: list[str]) -> Program[int]:
        """Delete runs and what derives from them: children first (foreign keys)."""
        if not run_ids:
            return 0
        params = {"run_ids": run_ids}
        yield from execute(self.sql.delete_thread_messages_of_runs, params)
        yield from execute(self.sql.delete_events_of_runs, params)
        yield from execute(self.sql.delete_run_tools_of_runs, params)
        yield from execute(self.sql.delete_feedback_of_runs, params)
        yield from execute(self.sql.delete_run_keys_of_runs, params)
        deleted = yield from execute(self.sql.delete_runs, params)
        yield from notify(QUEUE_KEY)
        return deleted


def _key_params(w: Write) -> dict[str, Any]:
    # No tenant is a tenant of its own: "" (a tenant is never empty).
    return {
        "tenant": w.record.tenant or "",
        "idempotency_key": w.idempotency_key,
        "run_id": w.run_id,
    }


def _refuse_leased(rows: list[Row]) -> None:
    """Raise ``RunLeasedError`` for the first of ``(run_id, owner, expires_at, now)`` rows
    whose lease is live."""
    for run_id, owner, expires_at, now in rows:
        if owner is not None and expires_at is not None and expires_at > now:
            raise RunLeasedError(run_id, owner=owner, expires_at=expires_at)
