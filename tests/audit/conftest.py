"""An audit log on each SQL backend, with a raw connection beside it to tamper through."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from keel.audit import AuditEntry, AuditLog, AuditRecord, open_audit_log
from keel.audit._rows import COLUMNS, row_of
from tests.postgres import drop_schema, new_schema_name


@dataclass
class Backend:
    """A log and how to reach its table without it."""

    name: str
    target: str
    schema: str | None
    log: AuditLog
    table: str
    head_table: str
    execute: Callable[[str, tuple[Any, ...], bool], None]

    def tamper(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        """Run ``statement`` ({t}: the records' table, {h}: the head's) after dropping the
        triggers that refuse changes, as someone with write access would."""
        self.execute(statement.format(t=self.table, h=self.head_table), params, True)

    def insert(self, record: AuditRecord) -> None:
        marks = ", ".join(["?" if self.name == "sqlite" else "%s"] * len(COLUMNS))
        self.tamper(f"INSERT INTO {{t}} ({', '.join(COLUMNS)}) VALUES ({marks})", row_of(record))


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        actor="runtime",
        action="policy.decided",
        subject=f"run_{n}",
        decision="allow",
        details={"n": n},
    )


def _sqlite_execute(path: Path) -> Callable[[str, tuple[Any, ...], bool], None]:
    def execute(statement: str, params: tuple[Any, ...], disarm: bool) -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            if disarm:
                conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
                conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
            conn.execute(statement, params)
        finally:
            conn.close()

    return execute


def _postgres_execute(url: str, schema: str) -> Callable[[str, tuple[Any, ...], bool], None]:
    def execute(statement: str, params: tuple[Any, ...], disarm: bool) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            if disarm:
                conn.execute(f'ALTER TABLE "{schema}".audit_log DISABLE TRIGGER USER'.encode())
            conn.execute(statement.encode(), params or None)

    return execute


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A log with nothing in it, on SQLite then on PostgreSQL (in a fresh schema)."""
    if request.param == "sqlite":
        path = tmp_path / "keel.db"
        log = open_audit_log(str(path))
        made = Backend(
            "sqlite", str(path), None, log, "audit_log", "audit_head", _sqlite_execute(path)
        )
    else:
        url: str = request.getfixturevalue("postgres_url")
        schema = new_schema_name()
        log = open_audit_log(url, schema=schema)
        made = Backend(
            "postgres",
            url,
            schema,
            log,
            f'"{schema}".audit_log',
            f'"{schema}".audit_head',
            _postgres_execute(url, schema),
        )
    try:
        yield made
    finally:
        await log.aclose()
        if made.schema is not None:
            await drop_schema(made.target, made.schema)
