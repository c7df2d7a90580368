"""Argument checks shared by every store, so that all backends reject the same mistakes with
the same messages (the contract suite runs one set of tests over all of them)."""

from __future__ import annotations

from collections.abc import Sequence

from keel.core.events import Event
from keel.errors import StoreError
from keel.ports import RunRecord

__all__ = ["check_append", "check_limit", "closed_error"]


def check_append(
    run_id: str, events: Sequence[Event], expected_seq: int, record: RunRecord
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


def check_limit(limit: int) -> None:
    """Raise ``ValueError`` for a ``list_runs`` limit below 1."""
    if limit < 1:
        raise ValueError(f"list_runs limit must be at least 1, got {limit}")


def closed_error(store: str) -> StoreError:
    """The error for using a store after ``close()``."""
    return StoreError(f"{store} is closed; create a new store to keep using the journal")
