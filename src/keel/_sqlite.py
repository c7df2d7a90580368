"""Opening SQLite files that several processes open at once.

Switching a database to WAL needs a moment of exclusive access, and SQLite answers "database
is locked" at once, without waiting through its busy timeout, when another connection (another
process opening the same new file, the budget ledger or the audit log beside the store) holds
the file at that moment. :func:`use_wal` tries again until the timeout.
"""

from __future__ import annotations

import sqlite3
import time

__all__ = ["use_wal"]

_PAUSE_S = 0.01


def use_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Put ``conn``'s database in WAL mode, waiting up to ``timeout_s`` for other openers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(_PAUSE_S)
