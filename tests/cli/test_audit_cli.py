"""``keel audit verify|export|head``: outputs and exit codes, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel._cli.main import app
from keel.audit import AuditEntry, AuditRecord, open_audit_log, verify_records
from tests.postgres import drop_schema, new_schema_name

runner = CliRunner()


def fill(target: str, count: int, schema: str | None = None) -> list[AuditRecord]:
    async def work() -> list[AuditRecord]:
        async with open_audit_log(target, schema=schema) as log:
            return await log.append_many(
                AuditEntry(actor="cli", action="run.deleted", subject=f"run_{n}")
                for n in range(count)
            )

    return asyncio.run(work())


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "keel.db")
    monkeypatch.setenv("KEEL_DB", path)
    return path


def tamper(db: str, statement: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    conn.execute(statement)
    conn.close()


def test_verify_exits_0_on_an_intact_log(db: str) -> None:
    fill(db, 3)
    done = runner.invoke(app, ["audit", "verify"])
    assert done.exit_code == 0, done.output
    assert "intact: 3 record(s)" in done.stdout


def test_verify_exits_1_naming_the_first_bad_record(db: str) -> None:
    fill(db, 4)
    tamper(db, "UPDATE audit_log SET subject = 'run_x' WHERE seq = 2")

    done = runner.invoke(app, ["audit", "verify"])

    assert done.exit_code == 1
    assert "broken at record 2 (modified)" in done.output


def test_verify_json_reports_the_problem(db: str) -> None:
    fill(db, 4)
    tamper(db, "DELETE FROM audit_log WHERE seq = 3")

    done = runner.invoke(app, ["audit", "verify", "--json"])

    assert done.exit_code == 1
    data = json.loads(done.stdout)
    assert (data["ok"], data["problem"], data["first_bad_seq"], data["checked"]) == (
        False,
        "deleted",
        3,
        2,
    )


def test_head_prints_what_verify_expects(db: str) -> None:
    made = fill(db, 2)

    head = runner.invoke(app, ["audit", "head"])
    as_json = runner.invoke(app, ["audit", "head", "--json"])

    assert head.stdout.strip() == f"2:{made[-1].hash}"
    assert json.loads(as_json.stdout) == {"seq": 2, "hash": made[-1].hash}
    assert (
        runner.invoke(app, ["audit", "verify", "--expect-head", head.stdout.strip()]).exit_code == 0
    )
    tamper(db, "DELETE FROM audit_log WHERE seq = 2")
    tamper(db, f"UPDATE audit_head SET seq = 1, hash = '{made[0].hash}'")
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    anchored = runner.invoke(app, ["audit", "verify", "--expect-head", head.stdout.strip()])
    assert anchored.exit_code == 1
    assert "(truncated)" in anchored.output


def test_a_malformed_anchor_exits_2(db: str) -> None:
    done = runner.invoke(app, ["audit", "verify", "--expect-head", "nonsense"])
    assert done.exit_code == 2
    assert "SEQ:HASH" in done.output


def test_export_writes_json_lines_that_verify(db: str, tmp_path: Path) -> None:
    made = fill(db, 5)
    out = tmp_path / "audit.jsonl"

    to_file = runner.invoke(app, ["audit", "export", "--output", str(out)])
    later = runner.invoke(app, ["audit", "export", "--since-seq", "3"])

    assert to_file.exit_code == 0, to_file.output
    read = [AuditRecord.from_dict(json.loads(line)) for line in out.read_text().splitlines()]
    assert read == made
    assert verify_records(read, expected_head=f"5:{made[-1].hash}").ok
    assert [json.loads(line)["seq"] for line in later.stdout.splitlines()] == [4, 5]


def test_an_unknown_scheme_exits_2() -> None:
    done = runner.invoke(app, ["audit", "head", "--db", "mysql://db/keel"])
    assert done.exit_code == 2
    assert "unknown scheme" in done.output


def test_verify_on_postgres_uses_the_store_s_schema(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = new_schema_name()
    monkeypatch.setenv("KEEL_DB_SCHEMA", schema)
    try:
        made = fill(postgres_url, 3, schema)
        head = runner.invoke(app, ["audit", "head", "--db", postgres_url])
        done = runner.invoke(app, ["audit", "verify", "--db", postgres_url])
    finally:
        asyncio.run(drop_schema(postgres_url, schema))

    assert head.stdout.strip() == f"3:{made[-1].hash}"
    assert done.exit_code == 0, done.output
