"""A tamper-evident audit log: an append-only record of governance actions (policy
decisions, approvals, budget and configuration changes, deletions, key rotations) in which
every record holds the hash of the one before it.

::

    log = open_audit_log("keel.db")          # or "memory", "postgresql://...", schema=...
    await log.append(AuditEntry(actor="runtime", action="approval.decided",
                                subject=run_id, user="alice", decision="approved"))
    result = await log.verify(expected_head="41:9f2c...")   # ok, or the first bad record

A record's ``hash`` is SHA-256 over the canonical JSON (sorted keys, no whitespace, a
version field) of all its other fields, ``prev_hash`` included; the first record's
``prev_hash`` is 64 zeros. Tool arguments are recorded as :func:`digest_arguments`, never as
themselves. :meth:`AuditLog.verify` names the first bad record and the kind of problem:

- ``modified``: a record's content no longer matches its hash (or the chain was rewritten
  up to the head, or the anchored record has another hash);
- ``deleted``: a ``seq`` is missing (the first missing one is named);
- ``inserted``: two records claim the same predecessor (the earlier one was slipped in), a
  record with a valid hash follows no record of the log (forged), or records lie beyond the
  head the log keeps;
- ``reordered``: a record follows another record of the log than the one before it;
- ``truncated``: the log ends before its head (or the anchored head) says.

The log keeps its head (last ``seq`` and hash) in a row of its own, updated with every
append, which catches records removed from the end. Someone who can write to the database
can still rewrite records and head together: keep the head somewhere else too (``keel audit
head``, e.g. in a ticket, a log shipper or object storage with retention) and pass it to
``verify(expected_head=...)`` (``keel audit verify --expect-head``).

``PostgresAuditLog`` is imported on first use, so ``keel.audit`` works without the
``postgres`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.audit._log import AuditLog
from keel.audit._memory import MemoryAuditLog
from keel.audit._open import open_audit_log
from keel.audit._records import AuditEntry, AuditHead, AuditRecord, digest_arguments
from keel.audit._sqlite import SQLiteAuditLog
from keel.audit._verify import AuditProblem, AuditVerification, verify_records

if TYPE_CHECKING:
    from keel.audit._postgres import PostgresAuditLog

__all__ = [
    "AuditEntry",
    "AuditHead",
    "AuditLog",
    "AuditProblem",
    "AuditRecord",
    "AuditVerification",
    "MemoryAuditLog",
    "PostgresAuditLog",
    "SQLiteAuditLog",
    "digest_arguments",
    "open_audit_log",
    "verify_records",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresAuditLog":
        from keel.audit._postgres import PostgresAuditLog

        return PostgresAuditLog
    raise AttributeError(f"module 'keel.audit' has no attribute {name!r}")
