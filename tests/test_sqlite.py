"""Switching a SQLite file to WAL waits for another opener instead of failing at once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from keel._sqlite import use_wal


def test_wal_waits_for_a_connection_that_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.2, lambda: holder.execute("COMMIT")).start()
    conn = sqlite3.connect(path, timeout=0.0, isolation_level=None)

    use_wal(conn, timeout_s=5.0)

    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    holder.close()


def test_wal_gives_up_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    conn = sqlite3.connect(path, timeout=0.0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        use_wal(conn, timeout_s=0.05)
    conn.close()
    holder.execute("COMMIT")
    holder.close()
