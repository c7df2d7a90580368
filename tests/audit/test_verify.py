"""The verification rule on records held in memory (``verify_records``), one case per kind of
problem, and anchored heads."""

from __future__ import annotations

import dataclasses

import pytest

from keel.audit import AuditHead, AuditRecord, verify_records
from keel.audit._records import GENESIS_HASH, chain
from keel.errors import ConfigurationError

from .conftest import entry


def five() -> list[AuditRecord]:
    return chain(AuditHead(0, GENESIS_HASH), [entry(n) for n in range(1, 6)], 10.0)


def problem(records: list[AuditRecord], **kwargs: object) -> tuple[str | None, int | None]:
    result = verify_records(records, **kwargs)  # type: ignore[arg-type]
    return result.problem, result.first_bad_seq


def test_an_intact_chain_passes() -> None:
    records = five()
    result = verify_records(records, expected_head=AuditHead(5, records[-1].hash))
    assert (result.ok, result.checked, result.head) == (True, 5, AuditHead(5, records[-1].hash))


def test_an_empty_log_passes() -> None:
    assert verify_records([]).ok
    assert verify_records([], expected_head=f"0:{GENESIS_HASH}").ok


def test_each_kind_of_problem_is_named() -> None:
    records = five()
    edited = [*records[:2], dataclasses.replace(records[2], reason="x"), *records[3:]]
    swapped = [records[0], records[2], records[1], *records[3:]]
    swapped = [dataclasses.replace(r, seq=n) for n, r in enumerate(swapped, 1)]

    assert problem(edited) == ("modified", 3)
    assert problem(records[:2] + records[3:]) == ("deleted", 3)
    assert problem(swapped) == ("reordered", 2)
    assert problem(records[:4], expected_head=AuditHead(5, records[4].hash)) == ("truncated", 5)


def test_a_later_part_verifies_from_where_it_starts() -> None:
    records = five()
    assert verify_records(records[2:], start=AuditHead(2, records[1].hash)).ok
    assert problem(records[2:]) == ("deleted", 1)


def test_an_anchor_that_was_rewritten_is_modified() -> None:
    records = five()
    assert problem(records, expected_head=AuditHead(3, "a" * 64)) == ("modified", 3)
    assert problem(records, expected_head="a" * 64) == ("modified", None)
    assert verify_records(records, expected_head=records[2].hash).ok


@pytest.mark.parametrize("anchor", ["", "12", "x:" + "a" * 64, "3:" + "g" * 64])
def test_a_malformed_anchor_is_refused(anchor: str) -> None:
    with pytest.raises(ConfigurationError, match="SEQ:HASH"):
        verify_records(five(), expected_head=anchor)
