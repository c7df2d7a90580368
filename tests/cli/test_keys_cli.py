"""``keel keys generate`` and ``keel keys rotate``: a key to use, and rotation counted."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keel._cli.main import app
from keel.stores import Keyring

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = f"{ROOT / 'examples' / 'support.py'}:agent"
SECRET = "PLANTED-40d2"
_PROVIDER_VARIABLES = ("KEEL_MODEL", "KEEL_APP", "OPENAI_API_KEY", "OPENAI_BASE_URL")

runner = CliRunner()
KEY_A = Keyring.generate_key()
KEY_B = Keyring.generate_key()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (*_PROVIDER_VARIABLES, "KEEL_ENCRYPTION_KEYS", "KEEL_ENCRYPTION_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KEEL_DB", str(tmp_path / "keel.db"))
    return tmp_path / "keel.db"


def keel(*args: str, keys: str | None = None) -> Any:
    env = {} if keys is None else {"KEEL_ENCRYPTION_KEYS": keys}
    return runner.invoke(app, list(args), env=env)


def stored(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        rows = [*conn.execute("SELECT * FROM events"), *conn.execute("SELECT * FROM runs")]
    return repr(rows)


def test_generate_prints_a_key_a_keyring_takes() -> None:
    first, second = keel("keys", "generate"), keel("keys", "generate")
    assert first.exit_code == 0
    key = first.stdout.strip()
    assert Keyring([key]).size == 1
    assert key != second.stdout.strip()


def test_a_run_from_the_command_is_encrypted_and_rotate_counts_what_it_rewrote(db: Path) -> None:
    done = keel("run", EXAMPLE, f"Where is order 1043? {SECRET}", keys=KEY_A)
    assert done.exit_code == 0, done.output
    assert SECRET not in stored(db)

    rotated = keel("keys", "rotate", "--json", "--batch-size", "2", keys=f"{KEY_B},{KEY_A}")

    assert rotated.exit_code == 0, rotated.output
    counts = json.loads(rotated.stdout)
    assert counts["rotated"] > 0
    assert {k: v for k, v in counts.items() if k != "rotated"} == {
        "encrypted": 0,
        "current": 0,
        "plain": 0,
        "changed": 0,
    }
    again = keel("keys", "rotate", keys=KEY_B)
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(
        f"re-encrypted 0 values with the first key, encrypted 0 plain values; "
        f"{counts['rotated']} already current, 0 left plain"
    )
    listed = keel("runs", "list", "--json", keys=KEY_B)
    assert SECRET in json.loads(listed.stdout)[0]["input"]


def test_rotate_encrypts_plain_runs_when_asked(db: Path) -> None:
    assert keel("run", EXAMPLE, f"Where is order 1043? {SECRET}").exit_code == 0
    assert SECRET in stored(db)

    done = keel("keys", "rotate", "--encrypt-plain", keys=KEY_A)

    assert done.exit_code == 0, done.output
    assert "re-encrypted 0 values with the first key, encrypted " in done.stdout
    assert "0 already current, 0 left plain" in done.stdout
    assert SECRET not in stored(db)


def test_rotate_without_keys_says_which_setting_to_set(db: Path) -> None:
    done = keel("keys", "rotate")
    assert done.exit_code == 2
    assert "set KEEL_ENCRYPTION_KEYS" in done.output


def test_rotate_refuses_the_memory_store(db: Path) -> None:
    done = keel("keys", "rotate", "--db", "memory", keys=KEY_A)
    assert done.exit_code == 2
    assert "keeps nothing at rest" in done.output


def test_reading_an_encrypted_run_without_its_key_is_one_clear_line(db: Path) -> None:
    assert keel("run", EXAMPLE, "Where is order 1043?", keys=KEY_A).exit_code == 0

    listed = keel("runs", "list", keys=KEY_B)

    assert listed.exit_code == 1
    assert "add the key it was written with to KEEL_ENCRYPTION_KEYS" in listed.output
    assert "Traceback" not in listed.output
    assert KEY_A not in listed.output
    assert KEY_B not in listed.output


def test_rotate_works_on_postgresql_too(
    db: Path, postgres_url: str, postgres_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_DB", postgres_url)
    monkeypatch.setenv("KEEL_DB_SCHEMA", postgres_schema)
    assert keel("run", EXAMPLE, "Where is order 1043?", keys=KEY_A).exit_code == 0

    done = keel("keys", "rotate", "--json", keys=f"{KEY_B},{KEY_A}")

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["rotated"] > 0
    assert keel("runs", "list", keys=KEY_B).exit_code == 0
    assert keel("runs", "list", keys=KEY_A).exit_code == 1
