"""Records, entries and hashes: what the hash covers, canonical digests, and validation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from keel.audit import AuditEntry, AuditHead, AuditRecord, digest_arguments
from keel.audit._records import GENESIS_HASH, chain
from keel.errors import ConfigurationError


def one() -> AuditRecord:
    entry = AuditEntry(
        actor="runtime",
        action="approval.decided",
        subject="run_1",
        tenant="acme",
        user="alice",
        key_id="key_1",
        decision="approved",
        reason="looks fine",
        arguments_digest=digest_arguments({"amount": 10}),
        details={"call_id": "c1"},
    )
    (record,) = chain(AuditHead(0, GENESIS_HASH), [entry], 1700000000.5)
    return record


def test_the_first_record_follows_64_zeros() -> None:
    record = one()
    assert (record.seq, record.prev_hash, record.at) == (1, "0" * 64, 1700000000.5)
    assert record.is_sealed()


@pytest.mark.parametrize(
    "field", [f.name for f in dataclasses.fields(AuditRecord) if f.name != "hash"]
)
def test_the_hash_covers_every_field(field: str) -> None:
    record = one()
    changed: Any = {
        "seq": 2,
        "at": 1.0,
        "details": {"call_id": "c2"},
        "prev_hash": "1" * 64,
        "arguments_digest": None,
    }.get(field, "other")

    assert not dataclasses.replace(record, **{field: changed}).is_sealed()


def test_the_hash_is_sha256_of_canonical_json_with_a_version() -> None:
    record = one()
    fields = {k: v for k, v in record.to_dict().items() if k != "hash"}
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    assert fields["v"] == 1
    assert hashlib.sha256(encoded.encode()).hexdigest() == record.hash


def test_digests_ignore_key_order_and_hold_no_values() -> None:
    digest = digest_arguments({"b": [1, 2], "a": "secret"})

    assert digest == digest_arguments({"a": "secret", "b": [1, 2]})
    assert digest != digest_arguments({"a": "secret", "b": [2, 1]})
    assert len(digest) == 64
    assert "secret" not in digest


def test_a_record_round_trips_through_its_dict() -> None:
    record = one()
    again = AuditRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    assert again.is_sealed()


def test_a_dict_that_is_not_a_record_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="missing fields \\['actor'\\]"):
        AuditRecord.from_dict({k: v for k, v in one().to_dict().items() if k != "actor"})


def test_details_are_kept_as_json_reads_them_back() -> None:
    entry = AuditEntry(actor="api", action="budget.changed", subject="t", details={"x": (1, 2)})
    assert entry.details == {"x": [1, 2]}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"actor": ""}, "actor"),
        ({"action": None}, "action"),
        ({"user": 7}, "user"),
        ({"arguments_digest": "abc"}, "arguments_digest"),
        ({"details": {"when": object()}}, "plain JSON"),
        ({"details": {"n": float("nan")}}, "plain JSON"),
        ({"details": [1]}, "details"),
    ],
)
def test_bad_entries_are_refused_with_the_field_named(
    changes: dict[str, object], named: str
) -> None:
    fields: dict[str, object] = {"actor": "cli", "action": "run.deleted", "subject": "run_1"}
    with pytest.raises(ConfigurationError, match=named):
        AuditEntry(**{**fields, **changes})  # type: ignore[arg-type]


def test_digest_of_something_json_cannot_hold_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="plain JSON"):
        digest_arguments({"data": b"bytes"})
