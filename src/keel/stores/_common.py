"""Rules shared by every store, so that all backends reject the same mistakes and refuse the
same writes with the same errors (the contract suite runs one set of tests over all of them).

:func:`refusal` is the one place that decides, from a run's current position and lease, why a
write was refused: each store reads that state inside (or, for PostgreSQL, right after) the
write that touched no row, and hands it here.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from keel._core.codec import decode_event, decode_message
from keel._core.events import FINISHED, Event, RunStarted, RunStatus
from keel._core.messages import Message
from keel.errors import (
    ConfigurationError,
    JournalConflictError,
    LeaseLostError,
    RunLeasedError,
    RunNotFoundError,
    StoreError,
)
from keel.ports import Lease, RunRecord, ThreadHistory
from keel.stores._keyring import Keyring
from keel.stores._sealed import described, unseal

__all__ = [
    "LeaseState",
    "check_append",
    "check_idempotency_key",
    "check_limit",
    "check_ttl",
    "closed_error",
    "decode_events",
    "decode_thread_history",
    "granted_token",
    "lease_lost",
    "notify_keys",
    "refusal",
    "started_after",
    "statuses",
]

#: The key under which queue watchers are registered (see keel.stores._signals).
QUEUE_KEY = "\x00queue"


@dataclass(frozen=True, slots=True)
class LeaseState:
    """A run's journal position and lease as stored: ``owner is None`` means nobody holds it.

    ``token`` survives a release (it is the last token handed out), so the next holder gets a
    higher one.
    """

    last_seq: int
    owner: str | None
    token: int
    expires_at: float | None

    def holder(self, now: float) -> tuple[str, float] | None:
        """``(owner, expires_at)`` if the lease is held and unexpired at ``now``."""
        if self.owner is None or self.expires_at is None or self.expires_at <= now:
            return None
        return self.owner, self.expires_at

    def is_current(self, lease: Lease) -> bool:
        """Whether ``lease`` is the run's current lease (expired or not: nobody took over)."""
        return self.owner is not None and self.token == lease.token and self.owner == lease.owner


def check_append(
    run_id: str,
    events: Sequence[Event],
    expected_seq: int,
    record: RunRecord,
    lease: Lease | None = None,
    *,
    release: bool = False,
) -> None:
    """Raise ``ValueError`` for an append no store could honour."""
    if not events:
        raise ValueError(
            f"append to run '{run_id}' got no events; an append stores at least one event"
        )
    if expected_seq < 0:
        raise ValueError(
            f"append to run '{run_id}' got expected_seq={expected_seq}; it is the number of "
            "events the journal holds, so 0 for a new run and never negative"
        )
    if record.run_id != run_id:
        raise ValueError(
            f"append to run '{run_id}' got the record of run '{record.run_id}'; "
            "pass the summary of the run being appended to"
        )
    if lease is not None and lease.run_id != run_id:
        raise ValueError(
            f"append to run '{run_id}' got the lease of run '{lease.run_id}'; "
            "pass the lease of the run being appended to"
        )
    if release and lease is None:
        raise ValueError(
            f"append to run '{run_id}' got release=True without a lease; release gives up "
            "the lease the append is made under, so pass that lease"
        )


def check_idempotency_key(key: str | None) -> None:
    """Raise ``ValueError`` for an idempotency key that is not a non-empty string (the
    runtime checks its length and characters, with advice, before it gets here)."""
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError(f"an idempotency key must be a non-empty str or None, got {key!r}")


def check_limit(limit: int, where: str = "list_runs") -> None:
    """Raise :class:`keel.errors.ConfigurationError` for a ``limit`` below 1."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(
            f"{where} limit must be at least 1, got {limit!r}; pass a positive whole number"
            + (" (or None for all runs)" if where == "list_runs" else "")
        )


def check_ttl(ttl_s: float) -> None:
    """Raise :class:`keel.errors.ConfigurationError` for a lease duration that is not a
    positive number of seconds."""
    if isinstance(ttl_s, bool) or not (
        isinstance(ttl_s, int | float) and math.isfinite(ttl_s) and ttl_s > 0
    ):
        raise ConfigurationError(
            f"a lease's ttl_s must be a positive, finite number of seconds, got {ttl_s!r}; "
            "pass how long the holder may go without renewing, e.g. ttl_s=30"
        )


def granted_token(run_id: str, state: LeaseState, *, owner: str, force: bool, now: float) -> int:
    """The fencing token ``owner`` gets by acquiring the run's lease, or ``RunLeasedError``.

    Another owner's unexpired lease refuses, unless ``force``. The same owner re-acquiring its
    own unexpired lease keeps the token (it is a renewal); anything else (a free or expired
    lease, or a forced take-over, even by the same owner) hands out a new token, which fences
    out every lease handed out before it.
    """
    holder = state.holder(now)
    if holder is None or force:
        return state.token + 1
    holder_owner, expires_at = holder
    if holder_owner != owner:
        raise RunLeasedError(run_id, owner=holder_owner, expires_at=expires_at)
    return state.token


def lease_lost(lease: Lease, state: LeaseState | None) -> LeaseLostError:
    """The error for writing under ``lease`` when ``state`` (``None``: no such run) says it is
    not current."""
    current = None if state is None or state.owner is None else state.token
    return LeaseLostError(lease.run_id, token=lease.token, current=current)


def refusal(
    run_id: str,
    *,
    expected_seq: int,
    lease: Lease | None,
    state: LeaseState | None,
    now: float,
) -> StoreError | None:
    """Why an append to ``run_id`` is refused given the run's ``state`` (``None``: no such
    run), or ``None`` if it is allowed.

    The lease is checked before the position: a writer whose lease was taken over must learn
    that it has to stop, not that it should reload and retry.
    """
    if lease is not None:
        if state is None or not state.is_current(lease):
            return lease_lost(lease, state)
    elif state is not None and (holder := state.holder(now)) is not None:
        owner, expires_at = holder
        return RunLeasedError(run_id, owner=owner, expires_at=expires_at)
    actual = 0 if state is None else state.last_seq
    if actual != expected_seq:
        return JournalConflictError(run_id, expected=expected_seq, actual=actual)
    return None


def decode_events(
    rows: Sequence[tuple[Any, ...]], run_id: str, *, where: str, keyring: Keyring | None = None
) -> list[Event]:
    """Decode a run's ``(seq, body)`` rows; ``RunNotFoundError`` if there are none.

    ``where`` names the database in the error for a body that is not a valid event; an
    encrypted body is decrypted with ``keyring`` first (:func:`keel.stores._sealed.unseal`).
    """
    if not rows:
        raise RunNotFoundError(run_id)
    events: list[Event] = []
    for seq, body in rows:
        text = unseal(keyring, body, described("event {} of run '{}' {}", seq, run_id, where))
        try:
            events.append(decode_event(text))
        except ValidationError as exc:
            raise StoreError(
                f"event {seq} of run '{run_id}' {where} is not a valid Keel event "
                f"({exc.error_count()} errors); the data was edited or corrupted"
            ) from exc
    return events


def decode_thread_history(
    rows: Sequence[tuple[Any, ...]],
    thread_id: str,
    *,
    where: str,
    keyring: Keyring | None = None,
) -> ThreadHistory:
    """Decode the rows of a thread-history query, ``(last_seq, seq, body)``, decrypting
    encrypted bodies with ``keyring``.

    ``seq`` and ``body`` are ``NULL`` in the one row of a thread with no message left, and an
    unknown thread has no row at all.
    """
    if not rows:
        return ThreadHistory(messages=[], last_seq=0)
    messages: list[Message] = []
    for _, seq, body in rows:
        if body is None:
            continue
        what = described("message {} of thread '{}' {}", seq, thread_id, where)
        text = unseal(keyring, body, what)
        try:
            messages.append(decode_message(text))
        except ValidationError as exc:
            raise StoreError(
                f"message {seq} of thread '{thread_id}' {where} is not a valid Keel message "
                f"({exc.error_count()} errors); the data was edited or corrupted"
            ) from exc
    return ThreadHistory(messages=messages, last_seq=int(rows[0][0]))


def closed_error(store: str) -> StoreError:
    """The error for using a store after ``close()``."""
    return StoreError(f"{store} is closed; create a new store to keep using the journal")


def started_after(events: Sequence[Event]) -> int | None:
    """The thread message a new run's history ends at (``RunStarted.history_seq``), if set."""
    first = events[0] if events else None
    return first.history_seq if isinstance(first, RunStarted) else None


def statuses(status: RunStatus | Collection[RunStatus] | None) -> frozenset[str] | None:
    """A ``list_runs`` status filter as a set (``None``: no filter)."""
    if status is None:
        return None
    if isinstance(status, str):
        return frozenset((status,))
    return frozenset(status)


def notify_keys(run_id: str, record: RunRecord, *, queued: bool = False) -> tuple[str, ...]:
    """Whom a write to a run wakes: the run's watchers, and the queue's when the run became
    claimable (queued, unleased, or its lease was given up: ``queued``) or ended (the next run
    of its thread may go)."""
    if queued or record.status == "queued" or record.status in FINISHED or not record.holds_thread:
        return (run_id, QUEUE_KEY)
    return (run_id,)
