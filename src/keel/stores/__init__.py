"""Journal stores: in-memory, SQLite and PostgreSQL, and :func:`open_store`.

All implement :class:`keel.ports.Store` (its four parts: journal, leases and claims, threads,
administration) and pass the same contract suite. ``PostgresStore`` is imported on first use,
so that ``keel.stores`` works without the ``postgres`` extra; using it without psycopg
installed raises :class:`keel.errors.MissingExtraError`.

A :class:`Keyring` (Fernet keys, from ``KEEL_ENCRYPTION_KEYS``) given to a SQLite or PostgreSQL
store encrypts what it keeps at rest: event bodies, thread messages and the content fields of
run records; :meth:`SQLiteStore.rotate_keys` re-encrypts them with a new key (:class:`Rotation`
counts what it did). See docs/guide/encryption.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.ports import Admin, Journal, Lease, Leases, RunRecord, Store, ThreadHistory, Threads
from keel.stores._keyring import Keyring
from keel.stores._memory import MemoryStore
from keel.stores._open import open_store
from keel.stores._sql.rotation import Rotation
from keel.stores._sqlite import SQLiteStore

if TYPE_CHECKING:
    from keel.stores._postgres import PostgresStore

__all__ = [
    "Admin",
    "Journal",
    "Keyring",
    "Lease",
    "Leases",
    "MemoryStore",
    "PostgresStore",
    "Rotation",
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
