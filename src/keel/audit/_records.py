"""Audit records and their hashes: what a caller supplies (:class:`AuditEntry`), what the log
keeps (:class:`AuditRecord`), and the canonical JSON both are hashed and digested from.

A record's hash is SHA-256 over the canonical JSON of every field but ``hash`` itself,
``prev_hash`` included, plus a format version ``v``: keys sorted, no whitespace, UTF-8, no
NaN or infinity. Changing any field, or the record the chain says came before, changes the
hash. This module is pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from keel.errors import ConfigurationError

__all__ = [
    "FORMAT_VERSION",
    "GENESIS_HASH",
    "AuditEntry",
    "AuditHead",
    "AuditRecord",
    "canonical_json",
    "chain",
    "digest_arguments",
    "record_hash",
]

FORMAT_VERSION = 1
# The prev_hash of the first record, and the hash of an empty log's head.
GENESIS_HASH = "0" * 64

_HEX64 = re.compile(r"[0-9a-f]{64}")


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no whitespace, non-ASCII kept as is.

    Raises :class:`keel.errors.ConfigurationError` for anything JSON cannot hold exactly
    (objects, bytes, NaN, non-string keys that would collide once turned into strings)."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"audit data must be plain JSON (dicts with string keys, lists, strings, numbers, "
            f"booleans, None) without NaN or infinity: {exc}; convert it first, e.g. with "
            "model.model_dump(mode='json')"
        ) from None


def digest_arguments(arguments: Any) -> str:
    """The SHA-256 hex digest of ``arguments``' canonical JSON: what an audit record keeps
    instead of a tool call's arguments, so the log proves what was called without holding
    the values (which may be personal data or secrets). Equal arguments give equal digests
    whatever their key order."""
    return hashlib.sha256(canonical_json(arguments).encode()).hexdigest()


def _text(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or (not optional and not value):
        need = "a string or None" if optional else "a non-empty string"
        raise ConfigurationError(f"AuditEntry.{name} must be {need}, got {value!r}")


def _plain(details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` as the dict a reader gets back from the stored JSON (tuples become lists),
    so the hash computed at append matches the one recomputed at verify."""
    if not isinstance(details, Mapping):
        raise ConfigurationError(
            f"AuditEntry.details must be a mapping of JSON values, got {type(details).__name__}"
        )
    if any(not isinstance(key, str) for key in details):
        raise ConfigurationError("AuditEntry.details must have string keys only")
    plain: dict[str, Any] = json.loads(canonical_json(dict(details)))
    return plain


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """What a caller records: who did what to what, and what was decided. The log assigns
    ``seq``, ``at``, ``prev_hash`` and ``hash``.

    Args:
        actor: The part of the system acting: ``"runtime"``, ``"cli"``, ``"api"``...
        action: What happened, dotted: ``"policy.decided"``, ``"approval.decided"``,
            ``"budget.changed"``, ``"config.changed"``, ``"run.deleted"``...
        subject: What it happened to, e.g. a run id or a thread id.
        tenant: The tenant concerned, if any.
        user: The person concerned (who approved, whose run it is), if any.
        key_id: The id of the API key used, if any (never the key).
        decision: The outcome, e.g. ``"allow"``, ``"deny"``, ``"approved"``.
        reason: Why, in words.
        arguments_digest: :func:`digest_arguments` of the arguments involved (never the
            arguments themselves).
        details: Any other facts, as plain JSON.
    """

    actor: str
    action: str
    subject: str
    tenant: str | None = None
    user: str | None = None
    key_id: str | None = None
    decision: str | None = None
    reason: str | None = None
    arguments_digest: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("actor", "action", "subject"):
            _text(name, getattr(self, name), optional=False)
        for name in ("tenant", "user", "key_id", "decision", "reason"):
            _text(name, getattr(self, name), optional=True)
        digest = self.arguments_digest
        if digest is not None and not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
            raise ConfigurationError(
                f"AuditEntry.arguments_digest must be 64 lowercase hex digits, got {digest!r}; "
                "compute it with keel.audit.digest_arguments(arguments)"
            )
        object.__setattr__(self, "details", _plain(self.details))


class AuditHead(NamedTuple):
    """Where the chain ends: the last record's ``seq`` and ``hash`` (``0`` and
    :data:`GENESIS_HASH` for an empty log). Keep it outside the database to anchor the log."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One entry of the log, as stored: the caller's :class:`AuditEntry` fields, plus its
    place in the chain. ``hash`` is SHA-256 over the canonical JSON of every other field (see
    :func:`record_hash`); ``prev_hash`` is the previous record's hash."""

    seq: int
    at: float
    actor: str
    tenant: str | None
    user: str | None
    key_id: str | None
    action: str
    subject: str
    decision: str | None
    reason: str | None
    arguments_digest: str | None
    details: Mapping[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """Every field, as plain JSON (one line of ``keel audit export``)."""
        return {**_hashed_fields(self), "hash": self.hash}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        """The record :meth:`to_dict` gave; raises :class:`keel.errors.ConfigurationError`
        naming a missing or unknown field."""
        names = set(cls.__dataclass_fields__)
        given = set(data) - {"v"}
        if given != names:
            missing, unknown = sorted(names - given), sorted(given - names)
            raise ConfigurationError(
                f"not an audit record: missing fields {missing}, unknown fields {unknown}"
            )
        values = {name: data[name] for name in names}
        values["details"] = dict(values["details"] or {})
        return cls(**values)

    def is_sealed(self) -> bool:
        """Whether ``hash`` matches the record's content."""
        return record_hash(self) == self.hash


def _hashed_fields(record: AuditRecord) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "seq": record.seq,
        "at": record.at,
        "actor": record.actor,
        "tenant": record.tenant,
        "user": record.user,
        "key_id": record.key_id,
        "action": record.action,
        "subject": record.subject,
        "decision": record.decision,
        "reason": record.reason,
        "arguments_digest": record.arguments_digest,
        "details": dict(record.details),
        "prev_hash": record.prev_hash,
    }


def record_hash(record: AuditRecord) -> str:
    """SHA-256 hex over the canonical JSON of ``record``'s fields but ``hash``."""
    try:
        encoded = canonical_json(_hashed_fields(record))
    except ConfigurationError:
        # A record read back with data JSON cannot hold was tampered with: it seals nothing.
        return ""
    return hashlib.sha256(encoded.encode()).hexdigest()


def chain(head: AuditHead, entries: Iterable[AuditEntry], at: float) -> list[AuditRecord]:
    """The records that follow ``head`` for ``entries``, in order, all stamped ``at``."""
    if not math.isfinite(at):
        raise ConfigurationError(f"the audit log's clock gave {at!r}; it must give unix seconds")
    made: list[AuditRecord] = []
    seq, prev = head
    for entry in entries:
        seq += 1
        unsealed = AuditRecord(
            seq=seq,
            at=float(at),
            actor=entry.actor,
            tenant=entry.tenant,
            user=entry.user,
            key_id=entry.key_id,
            action=entry.action,
            subject=entry.subject,
            decision=entry.decision,
            reason=entry.reason,
            arguments_digest=entry.arguments_digest,
            details=entry.details,
            prev_hash=prev,
            hash="",
        )
        prev = record_hash(unsealed)
        made.append(replace(unsealed, hash=prev))
    return made
