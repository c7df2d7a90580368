"""Opening a store from where it lives: a path, ``sqlite:///path``, ``postgresql://...`` or
``memory``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from keel._redact import redact_url
from keel.errors import ConfigurationError

if TYPE_CHECKING:
    from keel.ports import Clock, Store
    from keel.stores._keyring import Keyring

__all__ = ["open_store"]


def open_store(
    location: str | os.PathLike[str],
    *,
    clock: Clock | None = None,
    schema: str = "keel",
    pool_size: int = 10,
    keyring: Keyring | None = None,
) -> Store:
    """A store for ``location``: ``memory``, ``sqlite:///path``, ``postgresql://...`` or a
    file path (SQLite). ``schema`` and ``pool_size`` apply to PostgreSQL.

    ``keyring`` (:meth:`keel.stores.Keyring.from_settings`) encrypts what SQLite and
    PostgreSQL keep at rest; the in-memory store keeps nothing at rest and ignores it.
    """
    text = os.fspath(location)
    if text in ("memory", "memory://", ":memory:"):
        from keel.stores._memory import MemoryStore

        return MemoryStore(clock=clock)
    if text.startswith(("postgres://", "postgresql://")):
        from keel.stores._postgres import PostgresStore

        return PostgresStore(text, schema=schema, max_size=pool_size, keyring=keyring)
    if "://" in text and not text.startswith("sqlite://"):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"the store location {redact_url(text)!r} uses the unknown scheme '{scheme}://'; "
            "use a file path, 'sqlite:///path/to/keel.db', 'postgresql://user@host/db' or "
            "'memory'"
        )
    from keel.stores._sqlite import SQLiteStore

    path = Path(text.removeprefix("sqlite://")) if "://" in text else Path(text)
    return SQLiteStore(path, clock=clock, keyring=keyring)
