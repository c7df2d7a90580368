"""Where a store's database is, for the tables that live beside its journal (webhook
deliveries, schedules): the location ``open_store`` took, and the PostgreSQL schema."""

from __future__ import annotations

from keel.errors import ConfigurationError
from keel.ports import Store

__all__ = ["beside"]


def beside(store: Store, what: str) -> tuple[str, str | None]:
    """``(location, schema)`` of ``store``'s database; ``what`` names the component for the
    error when it cannot be told (a store of another kind: pass the component's store)."""
    from keel.stores import MemoryStore, SQLiteStore

    if isinstance(store, MemoryStore):
        return "memory", None
    if isinstance(store, SQLiteStore):
        return store.path, None
    url = getattr(store, "_url", None)
    schema = getattr(store, "schema", None)
    if type(store).__name__ == "PostgresStore" and isinstance(url, str):
        return url, schema if isinstance(schema, str) else None
    raise ConfigurationError(
        f"cannot tell where the database of {type(store).__name__} is, to keep {what} beside "
        "it; pass the location yourself (the same string open_store takes)"
    )
