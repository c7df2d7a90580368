"""Opening an audit log where Keel's store lives: the same strings ``open_store`` takes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from keel._redact import redact_url
from keel.audit._log import AuditLog
from keel.errors import ConfigurationError

__all__ = ["open_audit_log"]


def open_audit_log(
    target: str | os.PathLike[str],
    *,
    schema: str | None = None,
    clock: Callable[[], float] | None = None,
) -> AuditLog:
    """The audit log at ``target``: ``memory``, a file path or ``sqlite:///path`` (the
    tables go into that SQLite file, beside Keel's), or ``postgresql://...`` (the tables go
    into ``schema``, ``keel`` by default, like the store's). ``schema`` is ignored for the
    other targets, so ``open_audit_log(settings.db, schema=settings.db_schema)`` works for
    every one. Raises :class:`keel.errors.ConfigurationError` for an unknown scheme."""
    text = os.fspath(target)
    if text in ("memory", "memory://", ":memory:"):
        from keel.audit._memory import MemoryAuditLog

        return MemoryAuditLog(clock=clock)
    if text.startswith(("postgres://", "postgresql://")):
        from keel.audit._postgres import PostgresAuditLog

        return PostgresAuditLog(text, schema=schema or "keel", clock=clock)
    if "://" in text and not text.startswith("sqlite://"):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"the audit log location {redact_url(text)!r} uses the unknown scheme '{scheme}://'"
            "; use a file path, 'sqlite:///path/to/keel.db', 'postgresql://user@host/db' or "
            "'memory'"
        )
    from keel.audit._sqlite import SQLiteAuditLog

    path = Path(text.removeprefix("sqlite://")) if "://" in text else Path(text)
    return SQLiteAuditLog(path, clock=clock)
