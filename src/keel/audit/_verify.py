"""Checking a chain of audit records, and naming the first bad one.

Records are read in ``seq`` order and each is compared with the one before it. The rule,
applied to the first record that breaks the chain (record ``n`` expected next):

- ``deleted``: the next record is not ``n`` but a later one; ``n`` is reported.
- ``inserted``: a record follows the same record as the one before it (two records claim one
  predecessor: the earlier of the two was slipped in, and is reported), or a record whose own
  hash is valid follows no record of the log at all (a forged record), or records exist beyond
  the head the log keeps (the first of them is reported).
- ``reordered``: a record's ``prev_hash`` is the hash of another record of the log, not of the
  record before it: genuine records were moved. The first misplaced position is reported.
- ``modified``: a record's content (its ``seq`` and ``prev_hash`` included) no longer matches
  its hash, or the last record's hash is not the head's (the chain was rewritten), or the
  anchored head's record has another hash.
- ``truncated``: the log ends before the head (or the anchored head) says it does; the first
  missing ``seq`` is reported.

This module does no I/O: the log feeds it pages and answers its lookups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from keel.audit._records import GENESIS_HASH, AuditHead, AuditRecord
from keel.errors import ConfigurationError

__all__ = [
    "AuditProblem",
    "AuditVerification",
    "Finding",
    "Walker",
    "check_anchor",
    "parse_head",
    "verify_records",
]

AuditProblem = Literal["modified", "deleted", "inserted", "reordered", "truncated"]


class Finding(NamedTuple):
    """What is wrong, and where."""

    problem: AuditProblem
    seq: int | None
    message: str


@dataclass(frozen=True, kw_only=True)
class AuditVerification:
    """The outcome of :meth:`keel.audit.AuditLog.verify`.

    Attributes:
        ok: Whether the whole log is intact.
        checked: How many records were found intact before the first bad one (all of them
            when ``ok``).
        head: The last intact record's ``seq`` and ``hash``: worth anchoring when ``ok``.
        first_bad_seq: The ``seq`` of the first bad (or missing) record; ``None`` when
            ``ok``, or when an anchored hash is found nowhere in the log.
        problem: ``"modified"``, ``"deleted"``, ``"inserted"``, ``"reordered"`` or
            ``"truncated"`` (see :mod:`keel.audit`), ``None`` when ``ok``.
        message: One line for a person.
    """

    ok: bool
    checked: int
    head: AuditHead
    first_bad_seq: int | None = None
    problem: AuditProblem | None = None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The outcome as plain JSON (``keel audit verify --json``)."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head": {"seq": self.head.seq, "hash": self.head.hash},
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "message": self.message,
        }


def parse_head(value: AuditHead | tuple[int, str] | str) -> AuditHead | str:
    """An anchored head: ``SEQ:HASH`` (as ``keel audit head`` prints it) or an
    :class:`AuditHead` become an :class:`AuditHead`; a bare hash stays a string."""
    if isinstance(value, tuple):
        seq, digest = value
    elif isinstance(value, str) and ":" in value:
        text, _, digest = value.strip().partition(":")
        seq = int(text) if text.isdigit() else -1
    else:
        seq, digest = 0, str(value).strip()
    digest = digest.lower()
    if seq < 0 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigurationError(
            f"an anchored head is SEQ:HASH or HASH with 64 hex digits (as keel audit head "
            f"prints it), got {value!r}"
        )
    return AuditHead(seq, digest) if isinstance(value, tuple) or ":" in str(value) else digest


class Walker:
    """Follows the chain record by record from ``start``; :meth:`feed` says what is wrong
    with the first record that breaks it."""

    def __init__(self, start: AuditHead | None = None) -> None:
        self.last = start or AuditHead(0, GENESIS_HASH)
        self.checked = 0
        self._last_prev: str | None = None

    def needs_lookup(self, record: AuditRecord) -> bool:
        """Whether :meth:`feed` needs to know which record has ``record.prev_hash``: only
        when the link to the previous record is broken, so an intact log costs no lookup."""
        return record.seq == self.last.seq + 1 and record.prev_hash not in (
            self.last.hash,
            self._last_prev,
        )

    def feed(self, record: AuditRecord, elsewhere: int | None = None) -> Finding | None:
        """Check ``record``, the next in ``seq`` order; ``elsewhere`` is the ``seq`` of the
        record whose hash is ``record.prev_hash`` (asked for by :meth:`needs_lookup`)."""
        last, expected = self.last, self.last.seq + 1
        if record.seq > expected:
            missing = (
                f"record {expected} is"
                if record.seq == expected + 1
                else f"records {expected}-{record.seq - 1} are"
            )
            return Finding(
                "deleted",
                expected,
                f"{missing} missing: record {last.seq} is followed by record {record.seq}",
            )
        if record.seq < expected:
            return Finding(
                "reordered", record.seq, f"record {record.seq} comes after record {last.seq}"
            )
        if record.prev_hash != last.hash:
            return self._broken_link(record, elsewhere)
        if not record.is_sealed():
            return Finding(
                "modified",
                record.seq,
                f"record {record.seq} was modified: its content no longer matches its hash",
            )
        self.last, self._last_prev = AuditHead(record.seq, record.hash), record.prev_hash
        self.checked += 1
        return None

    def _broken_link(self, record: AuditRecord, elsewhere: int | None) -> Finding:
        last, seq = self.last, record.seq
        if self._last_prev is not None and record.prev_hash == self._last_prev:
            return Finding(
                "inserted",
                last.seq,
                f"record {last.seq} was inserted: it and record {seq} both claim to follow "
                f"record {last.seq - 1}",
            )
        if elsewhere is not None:
            return Finding(
                "reordered",
                seq,
                f"record {seq} is out of place: it follows record {elsewhere}, not record "
                f"{last.seq}",
            )
        if record.is_sealed():
            return Finding(
                "inserted",
                seq,
                f"record {seq} was forged: its hash is valid but it follows no record of the log",
            )
        return Finding(
            "modified",
            seq,
            f"record {seq} was modified: its content (its link to record {last.seq} included) "
            "no longer matches its hash",
        )

    def end(self, stored: AuditHead) -> Finding | None:
        """Compare where the chain ended with the head the log keeps."""
        last = self.last
        if stored.seq < 0:
            return Finding(
                "deleted", None, "the log's head row is missing: it was removed from the database"
            )
        if last.seq < stored.seq:
            return Finding(
                "truncated",
                last.seq + 1,
                f"the log ends at record {last.seq} but its head says {stored.seq}: the records "
                "after it were removed",
            )
        if last.seq > stored.seq:
            return Finding(
                "inserted",
                stored.seq + 1,
                f"records from {stored.seq + 1} on were added outside the log: its head says it "
                f"ends at record {stored.seq}",
            )
        if last.hash != stored.hash:
            return Finding(
                "modified",
                last.seq,
                f"record {last.seq}'s hash is not the one the head keeps: the chain was rewritten",
            )
        return None


def check_anchor(
    anchor: AuditHead | str, last: AuditHead, found: AuditRecord | int | None
) -> Finding | None:
    """Compare an anchored head with the log: ``found`` is the record at ``anchor.seq`` (for
    an :class:`AuditHead`) or the ``seq`` of the record with the anchored hash (for a bare
    hash), ``None`` if there is none."""
    if isinstance(anchor, str):
        if found is not None or anchor == GENESIS_HASH:
            return None
        return Finding(
            "modified",
            None,
            f"no record has the anchored hash {anchor[:16]}...: the log was rewritten or "
            "truncated (anchor SEQ:HASH, as keel audit head prints it, to learn where)",
        )
    if anchor.seq == 0:
        return None if anchor.hash == GENESIS_HASH else _unanchored(anchor)
    if anchor.seq > last.seq:
        return Finding(
            "truncated",
            last.seq + 1,
            f"the anchored head is record {anchor.seq} but the log ends at record {last.seq}",
        )
    if not isinstance(found, AuditRecord) or found.hash != anchor.hash:
        return _unanchored(anchor)
    return None


def _unanchored(anchor: AuditHead) -> Finding:
    return Finding(
        "modified",
        anchor.seq,
        f"record {anchor.seq} does not have the anchored hash: the history up to it was rewritten",
    )


def outcome(walker: Walker, finding: Finding | None) -> AuditVerification:
    """The verification for where ``walker`` stopped and what it found."""
    if finding is None:
        return AuditVerification(
            ok=True,
            checked=walker.checked,
            head=walker.last,
            message=f"the audit log is intact: {walker.checked} record(s), head {walker.last}",
        )
    return AuditVerification(
        ok=False,
        checked=walker.checked,
        head=walker.last,
        first_bad_seq=finding.seq,
        problem=finding.problem,
        message=finding.message,
    )


def verify_records(
    records: Iterable[AuditRecord],
    *,
    start: AuditHead | None = None,
    expected_head: AuditHead | tuple[int, str] | str | None = None,
) -> AuditVerification:
    """Check records held in memory, e.g. read back from ``keel audit export``: the chain
    from ``start`` (an empty log's head by default; the head before ``--since-seq``'s
    record otherwise) and, if given, that it reaches ``expected_head``. There is no stored
    head to compare with, so a missing tail is found only with ``expected_head``."""
    anchor = None if expected_head is None else parse_head(expected_head)
    ordered = list(records)
    by_hash = {record.hash: record.seq for record in ordered}
    by_seq = {record.seq: record for record in ordered}
    walker = Walker(start)
    for record in ordered:
        elsewhere = by_hash.get(record.prev_hash) if walker.needs_lookup(record) else None
        finding = walker.feed(record, elsewhere)
        if finding is not None:
            return outcome(walker, finding)
    if anchor is None:
        return outcome(walker, None)
    found = by_seq.get(anchor.seq) if isinstance(anchor, AuditHead) else by_hash.get(anchor)
    return outcome(walker, check_anchor(anchor, walker.last, found))
