"""Opening the API key store where Keel's store lives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from keel._redact import redact_url
from keel.errors import ConfigurationError
from keel.server._keys import KeyStore

if TYPE_CHECKING:
    from keel._runtime.runtime import Runtime

__all__ = ["key_store_for", "open_key_store"]


def open_key_store(target: str | os.PathLike[str], *, schema: str | None = None) -> KeyStore:
    """The key store at ``target``, the strings :func:`keel.stores.open_store` takes:
    ``memory`` (this process only), a file path or ``sqlite:///path`` (a table in that SQLite
    file, beside Keel's), or ``postgresql://...`` (a table in ``schema``, ``keel`` by
    default, like the store's; ignored for the other targets). Nothing connects until first
    use."""
    text = os.fspath(target)
    if text in ("memory", "memory://", ":memory:"):
        from keel.server._keys_memory import MemoryKeyStore

        return MemoryKeyStore()
    if text.startswith(("postgres://", "postgresql://")):
        from keel.server._keys_postgres import PostgresKeyStore

        return PostgresKeyStore(text, schema=schema or "keel")
    if "://" in text and not text.startswith("sqlite://"):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"the key store location {redact_url(text)!r} uses the unknown scheme "
            f"'{scheme}://'; use a file path, 'sqlite:///path/to/keel.db', "
            "'postgresql://user@host/db' or 'memory'"
        )
    from keel.server._keys_sqlite import SQLiteKeyStore

    return SQLiteKeyStore(Path(text.removeprefix("sqlite://")) if "://" in text else Path(text))


def key_store_for(runtime: Runtime) -> KeyStore:
    """The key store beside ``runtime``'s store: the same SQLite file or PostgreSQL schema
    (a memory store gets keys in memory)."""
    from keel._runtime.governance import store_location

    location = store_location(runtime.store, None)
    if location is not None:
        return open_key_store(location)
    schema = getattr(runtime.store, "schema", None)
    db = runtime.settings.db
    if isinstance(schema, str) and db.startswith(("postgres://", "postgresql://")):
        return open_key_store(db, schema=schema)
    raise ConfigurationError(
        f"cannot tell where {type(runtime.store).__name__}'s database is, to keep the API keys "
        "beside it: pass keys=keel.server.open_key_store(url) to create_app"
    )
