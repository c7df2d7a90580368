"""What every audit log does: stamps and numbers appends, pages, keeps its head, closes; and
how ``open_audit_log`` picks a backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.audit import (
    AuditLog,
    MemoryAuditLog,
    PostgresAuditLog,
    SQLiteAuditLog,
    open_audit_log,
)
from keel.errors import ConfigurationError, StoreError

from .conftest import Backend, entry


async def test_appends_get_seq_and_the_clock_s_time(tmp_path: Path) -> None:
    times = iter([100.0, 200.0])
    log = open_audit_log(tmp_path / "keel.db", clock=lambda: next(times))
    async with log:
        first = await log.append(entry(1))
        batch = await log.append_many([entry(2), entry(3)])

    assert (first.seq, first.at) == (1, 100.0)
    assert [(r.seq, r.at) for r in batch] == [(2, 200.0), (3, 200.0)]
    assert batch[0].prev_hash == first.hash


async def test_records_page_through_the_log(backend: Backend) -> None:
    await backend.log.append_many(entry(n) for n in range(7))

    first = await backend.log.records(limit=3)
    rest = await backend.log.records(since_seq=first[-1].seq, limit=100)

    assert [r.seq for r in first + rest] == list(range(1, 8))
    assert [r.subject for r in rest] == [f"run_{n}" for n in range(3, 7)]


async def test_what_is_read_back_is_what_was_appended(backend: Backend) -> None:
    made = await backend.log.append(entry(1))
    assert await backend.log.records() == [made]


async def test_an_empty_log_has_the_genesis_head(backend: Backend) -> None:
    assert await backend.log.head() == (0, "0" * 64)
    assert (await backend.log.verify()).ok
    assert await backend.log.append_many([]) == []


async def test_a_closed_log_refuses_use(backend: Backend) -> None:
    await backend.log.aclose()
    await backend.log.aclose()
    with pytest.raises(StoreError, match="closed"):
        await backend.log.append(entry(1))


async def test_another_log_object_continues_the_chain(backend: Backend) -> None:
    await backend.log.append(entry(1))
    async with open_audit_log(backend.target, schema=backend.schema) as other:
        second = await other.append(entry(2))
    assert second.seq == 2
    assert (await backend.log.verify()).ok


async def test_only_entries_are_appended() -> None:
    with pytest.raises(ConfigurationError, match="AuditEntry"):
        await MemoryAuditLog().append({"actor": "x"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("since", "limit"), [(-1, 10), (0, 0), (0, 10_001)], ids=["since", "zero", "big"]
)
async def test_bad_paging_is_refused(since: int, limit: int) -> None:
    with pytest.raises(ConfigurationError, match="records"):
        await MemoryAuditLog().records(since_seq=since, limit=limit)


def test_open_audit_log_picks_the_backend(tmp_path: Path) -> None:
    memory = open_audit_log("memory")
    sqlite = open_audit_log(f"sqlite://{tmp_path}/keel.db", schema="ignored")
    postgres = open_audit_log("postgresql://u:secret@db.invalid/keel", schema="audit")

    assert isinstance(memory, MemoryAuditLog)
    assert isinstance(sqlite, SQLiteAuditLog)
    assert sqlite.path == tmp_path / "keel.db"
    assert isinstance(postgres, PostgresAuditLog)
    assert postgres.schema == "audit"
    assert "secret" not in repr(postgres)
    assert all(isinstance(log, AuditLog) for log in (memory, sqlite, postgres))


def test_open_audit_log_refuses_an_unknown_scheme() -> None:
    with pytest.raises(ConfigurationError, match="unknown scheme 'mysql://'") as caught:
        open_audit_log("mysql://u:secret@db/keel")
    assert "secret" not in caught.value.message


def test_a_bad_postgres_schema_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="schema must be a plain identifier"):
        open_audit_log("postgresql://db/keel", schema="bad-name")


async def test_an_unreachable_database_is_a_store_error_without_the_password() -> None:
    log = open_audit_log("postgresql://u:hunter2@127.0.0.1:1/keel")
    with pytest.raises(StoreError) as caught:
        await log.head()
    assert "hunter2" not in caught.value.message
    assert "127.0.0.1:1/keel" in caught.value.message
