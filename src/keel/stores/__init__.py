"""Journal stores: in-memory, SQLite and PostgreSQL.

All implement :class:`keel.ports.Store` and pass the same contract suite. ``PostgresStore`` is
imported on first use, so that ``keel.stores`` works without the ``postgres`` extra; using it
without psycopg installed raises :class:`keel.errors.MissingExtraError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.stores._memory import MemoryStore
from keel.stores._sqlite import SQLiteStore

if TYPE_CHECKING:
    from keel.stores._postgres import PostgresStore

__all__ = ["MemoryStore", "PostgresStore", "SQLiteStore"]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from keel.stores._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'keel.stores' has no attribute {name!r}")
