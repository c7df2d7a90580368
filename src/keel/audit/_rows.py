"""How records sit in SQL rows, for both SQL backends: the same columns on SQLite and
PostgreSQL, with ``details`` as canonical JSON text (not JSONB, which would reorder keys and
normalise numbers) so that what is read back hashes the same as what was written."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from keel.audit._records import AuditRecord, canonical_json

__all__ = ["COLUMNS", "record_of", "row_of"]

# "user" is reserved in PostgreSQL: the column is user_name.
COLUMNS = (
    "seq",
    "at",
    "actor",
    "tenant",
    "user_name",
    "key_id",
    "action",
    "subject",
    "decision",
    "reason",
    "arguments_digest",
    "details",
    "prev_hash",
    "hash",
)


def row_of(record: AuditRecord) -> tuple[Any, ...]:
    """The column values of ``record``, in :data:`COLUMNS` order."""
    return (
        record.seq,
        record.at,
        record.actor,
        record.tenant,
        record.user,
        record.key_id,
        record.action,
        record.subject,
        record.decision,
        record.reason,
        record.arguments_digest,
        canonical_json(dict(record.details)),
        record.prev_hash,
        record.hash,
    )


def record_of(row: Sequence[Any]) -> AuditRecord:
    """The record a row holds. A row someone tampered with into something that is no longer
    JSON still gives a record (whose hash will not match), so verify can name it."""
    (seq, at, actor, tenant, user, key_id, action, subject, decision, reason, digest) = row[:11]
    details_text, prev_hash, digest_of_row = row[11:14]
    try:
        details = json.loads(details_text)
    except (TypeError, ValueError):
        details = {"unreadable": str(details_text)}
    if not isinstance(details, dict):
        details = {"unreadable": details}
    return AuditRecord(
        seq=int(seq),
        at=float(at),
        actor=actor,
        tenant=tenant,
        user=user,
        key_id=key_id,
        action=action,
        subject=subject,
        decision=decision,
        reason=reason,
        arguments_digest=digest,
        details=details,
        prev_hash=prev_hash,
        hash=digest_of_row,
    )
