"""Opening a schedule store where Keel's store lives: the strings ``open_store`` takes."""

from __future__ import annotations

import os
from pathlib import Path

from keel._redact import redact_url
from keel.errors import ConfigurationError
from keel.schedules._store import ScheduleStore

__all__ = ["open_schedule_store"]


def open_schedule_store(
    target: str | os.PathLike[str], *, schema: str | None = None
) -> ScheduleStore:
    """The schedule store at ``target``: ``memory`` (this process only), a file path or
    ``sqlite:///path`` (tables beside the store's in that file), or ``postgresql://...``
    (tables in ``schema``, the store's, ``keel`` by default; ignored for the other targets,
    so ``open_schedule_store(settings.db, schema=settings.db_schema)`` works for every one).
    Nothing connects until first use."""
    text = os.fspath(target)
    if text in ("memory", "memory://", ":memory:"):
        from keel.schedules._memory import MemoryScheduleStore

        return MemoryScheduleStore()
    if text.startswith(("postgres://", "postgresql://")):
        from keel.schedules._postgres import PostgresScheduleStore

        return PostgresScheduleStore(text, schema=schema or "keel")
    if "://" in text and not text.startswith("sqlite://"):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"the schedule store location {redact_url(text)!r} uses the unknown scheme "
            f"'{scheme}://'; use a file path, 'sqlite:///path/to/keel.db', "
            "'postgresql://user@host/db' or 'memory'"
        )
    from keel.schedules._sqlite import SQLiteScheduleStore

    return SQLiteScheduleStore(Path(text.removeprefix("sqlite://")) if "://" in text else text)
