"""Every kind of tampering with the stored log, done with raw SQL on SQLite and PostgreSQL,
is found by verify, which names the first bad record and the kind of problem."""

from __future__ import annotations

import dataclasses

import pytest

from keel.audit import AuditHead, AuditRecord
from keel.audit._records import chain

from .conftest import Backend, entry


async def five(backend: Backend) -> list[AuditRecord]:
    return await backend.log.append_many(entry(n) for n in range(1, 6))


async def test_an_untouched_log_verifies(backend: Backend) -> None:
    made = await five(backend)

    result = await backend.log.verify()

    assert (result.ok, result.checked, result.problem, result.first_bad_seq) == (
        True,
        5,
        None,
        None,
    )
    assert result.head == AuditHead(5, made[-1].hash)


async def test_an_edited_field_is_modified(backend: Backend) -> None:
    await five(backend)
    backend.tamper("UPDATE {t} SET decision = 'deny' WHERE seq = 3")

    result = await backend.log.verify()

    assert (result.ok, result.problem, result.first_bad_seq, result.checked) == (
        False,
        "modified",
        3,
        2,
    )


async def test_an_edited_timestamp_is_modified(backend: Backend) -> None:
    await five(backend)
    backend.tamper("UPDATE {t} SET at = at + 1 WHERE seq = 4")

    result = await backend.log.verify()

    assert (result.problem, result.first_bad_seq) == ("modified", 4)


async def test_a_deleted_middle_record_is_deleted(backend: Backend) -> None:
    await five(backend)
    backend.tamper("DELETE FROM {t} WHERE seq = 3")

    result = await backend.log.verify()

    assert (result.problem, result.first_bad_seq) == ("deleted", 3)
    assert "record 3 is missing" in result.message


async def test_a_deleted_last_record_is_truncated(backend: Backend) -> None:
    await five(backend)
    backend.tamper("DELETE FROM {t} WHERE seq = 5")

    result = await backend.log.verify()

    assert (result.problem, result.first_bad_seq, result.checked) == ("truncated", 5, 4)


async def test_a_forged_record_at_the_end_is_inserted(backend: Backend) -> None:
    made = await five(backend)
    (forged,) = chain(AuditHead(5, made[-1].hash), [entry(99)], made[-1].at)
    backend.insert(forged)

    result = await backend.log.verify()

    assert (result.problem, result.first_bad_seq) == ("inserted", 6)


async def test_a_forged_record_slipped_into_the_middle_is_inserted(backend: Backend) -> None:
    made = await five(backend)
    # Make room at seq 3 (in two moves, so no seq is held twice), then forge a record that
    # links to record 2 and carries a valid hash.
    backend.tamper("UPDATE {t} SET seq = seq + 100 WHERE seq >= 3")
    backend.tamper("UPDATE {t} SET seq = seq - 99 WHERE seq >= 100")
    (forged,) = chain(AuditHead(2, made[1].hash), [entry(99)], made[1].at)
    backend.insert(forged)

    result = await backend.log.verify()

    assert (result.problem, result.first_bad_seq) == ("inserted", 3)


async def test_a_forged_record_that_links_to_nothing_is_inserted(backend: Backend) -> None:
    await five(backend)
    backend.tamper("DELETE FROM {t} WHERE seq = 3")
    (forged,) = chain(AuditHead(2, "f" * 64), [entry(99)], 1.0)
    backend.insert(forged)

    result = await backend.log.verify()

    assert (result.problem, result.first_bad_seq) == ("inserted", 3)


async def test_swapped_records_are_reordered(backend: Backend) -> None:
    await five(backend)
    backend.tamper("UPDATE {t} SET seq = -1 WHERE seq = 2")
    backend.tamper("UPDATE {t} SET seq = 2 WHERE seq = 4")
    backend.tamper("UPDATE {t} SET seq = 4 WHERE seq = -1")

    result = await backend.log.verify()

    assert (result.problem, result.first_bad_seq) == ("reordered", 2)


async def test_a_rewritten_tail_with_its_head_passes_only_without_an_anchor(
    backend: Backend,
) -> None:
    made = await five(backend)
    anchor = await backend.log.head()
    # Someone with write access removes the last record and moves the head back with it.
    backend.tamper("DELETE FROM {t} WHERE seq = 5")
    backend.tamper("UPDATE {h} SET seq = 4, hash = '" + made[3].hash + "' WHERE id = 1")

    assert (await backend.log.verify()).ok
    anchored = await backend.log.verify(expected_head=str(anchor))
    by_hash = await backend.log.verify(expected_head=anchor.hash)

    assert (anchored.ok, anchored.problem, anchored.first_bad_seq) == (False, "truncated", 5)
    assert (by_hash.ok, by_hash.problem, by_hash.first_bad_seq) == (False, "modified", None)


async def test_a_chain_rewritten_past_the_anchor_is_modified(backend: Backend) -> None:
    made = await five(backend)
    anchor = AuditHead(3, made[2].hash)
    # Rewrite records 3 to 5 with valid hashes and a matching head: only the anchor knows.
    backend.tamper("DELETE FROM {t} WHERE seq >= 3")
    rewritten = chain(AuditHead(2, made[1].hash), [entry(7), entry(8), entry(9)], 1.0)
    for record in rewritten:
        backend.insert(record)
    backend.tamper("UPDATE {h} SET hash = '" + rewritten[-1].hash + "' WHERE id = 1")

    assert (await backend.log.verify()).ok
    result = await backend.log.verify(expected_head=anchor)

    assert (result.problem, result.first_bad_seq) == ("modified", 3)


async def test_a_rewritten_chain_under_an_unchanged_head_is_modified(backend: Backend) -> None:
    made = await five(backend)
    backend.tamper("DELETE FROM {t} WHERE seq = 5")
    backend.insert(chain(AuditHead(4, made[3].hash), [entry(50)], 1.0)[0])

    result = await backend.log.verify()

    assert (result.problem, result.first_bad_seq) == ("modified", 5)


async def test_a_removed_head_row_is_reported(backend: Backend) -> None:
    await five(backend)
    backend.tamper("DELETE FROM {h}")

    result = await backend.log.verify()

    assert (result.ok, result.problem) == (False, "deleted")
    assert "head" in result.message


async def test_the_tables_refuse_changes_through_sql(backend: Backend) -> None:
    await five(backend)
    for statement in ("UPDATE {t} SET reason = 'x' WHERE seq = 1", "DELETE FROM {t}"):
        with pytest.raises(Exception, match="append-only"):
            backend.execute(statement.format(t=backend.table), (), False)

    assert (await backend.log.verify()).ok


def test_records_differ_from_their_tampered_copies() -> None:
    (record,) = chain(AuditHead(0, "0" * 64), [entry(1)], 1.0)
    assert record.is_sealed()
    assert not dataclasses.replace(record, subject="run_2").is_sealed()
