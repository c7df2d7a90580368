"""``keel keys create|list|revoke``: the key printed once and alone, listed without it,
revoked for good, and audited when the audit log is on."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keel._cli.main import app
from keel.server import SQLiteKeyStore

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("KEEL_DB", "KEEL_AUDIT", "KEEL_APP"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "keel.db"


def keel(db: Path, *args: str) -> Any:
    return runner.invoke(app, [*args, "--db", str(db)])


def verify(db: Path, secret: str) -> object:
    async def check() -> object:
        keys = SQLiteKeyStore(db)
        try:
            return await keys.verify(secret)
        finally:
            await keys.aclose()

    return asyncio.run(check())


def test_create_prints_the_key_alone_and_it_works(db: Path) -> None:
    made = keel(db, "keys", "create", "--tenant", "acme", "--user", "ann", "--scope", "run")

    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("keel_")
    assert "\n" not in secret
    assert "shown this once" in made.stderr
    assert verify(db, secret) is not None


def test_list_shows_keys_without_their_secret(db: Path) -> None:
    made = keel(
        db,
        "keys",
        "create",
        "--tenant",
        "acme",
        "--user",
        "ann",
        "--scope",
        "read",
        "--scope",
        "approve",
        "--role",
        "support",
        "--name",
        "web",
        "--json",
    )
    created = json.loads(made.stdout)

    listed = keel(db, "keys", "list", "--json")
    table = keel(db, "keys", "list")

    [key] = json.loads(listed.stdout)
    assert key == {k: v for k, v in created.items() if k != "key"}
    assert (key["scopes"], key["roles"], key["name"]) == (["read", "approve"], ["support"], "web")
    assert created["key"] not in listed.stdout + table.stdout
    assert created["key_id"] in table.stdout


def test_revoke_ends_a_key_for_good(db: Path) -> None:
    secret = keel(db, "keys", "create", "--tenant", "acme", "--user", "ann", "--scope", "run")
    key_id = secret.stdout.strip().split("_")[1]

    revoked = keel(db, "keys", "revoke", key_id)
    again = keel(db, "keys", "revoke", key_id)

    assert revoked.exit_code == 0
    assert f"revoked key {key_id}" in revoked.stdout
    assert verify(db, secret.stdout.strip()) is None
    assert again.exit_code == 2
    assert "no active key" in again.output


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--tenant", "acme", "--user", "ann", "--scope", "root"), "unknown scope 'root'"),
        (("--tenant", "a b", "--user", "ann", "--scope", "run"), "a tenant must be"),
        (("--tenant", "acme", "--user", "ann"), "--scope"),
    ],
)
def test_a_bad_key_is_refused_in_one_line(db: Path, args: tuple[str, ...], problem: str) -> None:
    done = keel(db, "keys", "create", *args)

    assert done.exit_code == 2
    assert problem in done.output
    assert "Traceback" not in done.output


def test_keys_in_memory_are_refused(db: Path) -> None:
    done = runner.invoke(
        app, ["keys", "create", "--tenant", "a", "--user", "u", "--scope", "run", "--db", "memory"]
    )

    assert done.exit_code == 2
    assert "vanish" in done.output


def test_creating_and_revoking_keys_is_audited(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_AUDIT", "1")
    secret = keel(db, "keys", "create", "--tenant", "acme", "--user", "ann", "--scope", "run")
    key_id = secret.stdout.strip().split("_")[1]
    keel(db, "keys", "revoke", key_id)

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT action, subject, tenant, key_id, details FROM audit_log"
        ).fetchall()
    conn.close()

    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("key.created", key_id, "acme", key_id),
        ("key.revoked", key_id, "acme", key_id),
    ]
    assert secret.stdout.strip().split("_", 2)[2] not in repr(rows)
