"""The SQLite store (see :mod:`keel.stores._sql.sqlite`)."""

from keel.stores._sql.sqlite import SQLiteStore

__all__ = ["SQLiteStore"]
