"""Journal stores: in-memory, SQLite and PostgreSQL, and :func:`open_store`.

All implement :class:`keel.ports.Store` (its four parts: journal, leases and claims, threads,
administration) and pass the same contract suite. ``PostgresStore`` is imported on first use,
so that ``keel.stores`` works without the ``postgres`` extra; using it without psycopg
installed raises :class:`keel.errors.MissingExtraError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.ports import Admin, Journal, Lease, Leases, RunRecord, Store, ThreadHistory, Threads
from keel.stores._memory import MemoryStore
from keel.stores._open import open_store
from keel.stores._sqlite import SQLiteStore

if TYPE_CHECKING:
    from keel.stores._postgres import PostgresStore

__all__ = [
    "Admin",
    "Journal",
    "Lease",
    "Leases",
    "MemoryStore",
    "PostgresStore",
    "RunRecord",
    "SQLiteStore",
    "Store",
    "ThreadHistory",
    "Threads",
    "open_store",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from keel.stores._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'keel.stores' has no attribute {name!r}")
