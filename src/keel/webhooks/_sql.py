"""The statements of the SQL outboxes, written once with ``?`` placeholders, ``{schema}.``
prefixes and a few dialect tokens, which :class:`Statements` turns into SQLite's or
PostgreSQL's.

The changed-runs question reads the store's own ``runs`` table (same database, same
schema): ``updated_at`` and ``last_seq`` are plain columns even when the store encrypts at
rest. It has no index on ``updated_at`` (the store keeps its hot path free of one), so the
periodic scan reads the runs table; runs this process drives are looked up by id instead.
"""

from __future__ import annotations

__all__ = ["DELIVERY_COLUMNS", "POSTGRES_SETUP", "SQLITE_SCHEMA", "Statements"]

DELIVERY_COLUMNS = (
    "id",
    "endpoint",
    "event_type",
    "run_id",
    "seq",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "delivered_at",
    "last_status",
    "last_error",
    "lease_owner",
    "lease_expires_at",
)

_DELIVERIES = """CREATE TABLE IF NOT EXISTS {schema}.webhook_deliveries (
    id TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    event_type TEXT NOT NULL,
    run_id TEXT NOT NULL,
    seq {int} NOT NULL,
    status TEXT NOT NULL,
    attempts {int} NOT NULL,
    next_attempt_at {real} NOT NULL,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    delivered_at {real},
    last_status {int},
    last_error TEXT,
    lease_owner TEXT,
    lease_expires_at {real}
)"""
_DUE = (
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON {schema}.webhook_deliveries "
    "(next_attempt_at) WHERE status = 'pending'"
)
_LISTING = (
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_by_created ON {schema}.webhook_deliveries "
    "(created_at)"
)
# How far each recently changed run's journal was looked at.
_RUNS = """CREATE TABLE IF NOT EXISTS {schema}.webhook_runs (
    run_id TEXT PRIMARY KEY,
    seen {int} NOT NULL,
    updated_at {real} NOT NULL
)"""
_CURSOR = """CREATE TABLE IF NOT EXISTS {schema}.webhook_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at {real} NOT NULL
)"""
_TABLES = (_DELIVERIES, _DUE, _LISTING, _RUNS, _CURSOR)

SQLITE_SCHEMA = tuple(
    s.replace("{schema}.", "").replace("{int}", "INTEGER").replace("{real}", "REAL")
    for s in _TABLES
)
POSTGRES_SETUP = tuple(
    s.replace("{int}", "BIGINT").replace("{real}", "DOUBLE PRECISION") for s in _TABLES
)

_D = ", ".join(DELIVERY_COLUMNS)
_D_QUALIFIED = ", ".join(f"d.{c}" for c in DELIVERY_COLUMNS)
_CHANGED = (
    "SELECT r.run_id, r.last_seq, COALESCE(w.seen, 0), r.updated_at FROM {schema}.runs r "
    "LEFT JOIN {schema}.webhook_runs w ON w.run_id = r.run_id "
    "WHERE {where} AND r.last_seq > COALESCE(w.seen, 0) "
    "ORDER BY r.updated_at, r.run_id LIMIT ?"
)


# The lease: only rows nobody holds (or whose holder's lease ran out). On PostgreSQL the inner
# SELECT locks what it picks and skips rows another claim is locking ({lock}).
_CLAIM = (
    "UPDATE {schema}.webhook_deliveries SET attempts = attempts + 1, lease_owner = ?, "  # noqa: S608
    "lease_expires_at = ?, updated_at = ? WHERE id IN ("
    "SELECT id FROM {schema}.webhook_deliveries WHERE status = 'pending' "
    "AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at <= ?) "
    "AND endpoint {in} ORDER BY next_attempt_at, id LIMIT ?{lock}"
    f") RETURNING {_D}"
)


class Statements:
    """Every statement of the outbox, in one dialect.

    ``{in}`` is a test of membership in one list parameter: ``= ANY(%s)`` with a Python list
    on PostgreSQL, ``IN (SELECT value FROM json_each(?))`` with a JSON array on SQLite.
    """

    def __init__(self, *, postgres: bool, schema: str = "") -> None:
        member = "= ANY(?)" if postgres else "IN (SELECT value FROM json_each(?))"

        def made(text: str) -> str:
            text = text.replace("{schema}.", f"{schema}." if postgres else "")
            text = text.replace("{in}", member)
            text = text.replace("{greatest}", "GREATEST" if postgres else "MAX")
            return text.replace("?", "%s") if postgres else text

        self.cursor = made("SELECT at FROM {schema}.webhook_cursor WHERE id = 1")
        self.cursor_init = made(
            "INSERT INTO {schema}.webhook_cursor (id, at) VALUES (1, ?) ON CONFLICT (id) DO NOTHING"
        )
        self.cursor_advance = made(
            "UPDATE {schema}.webhook_cursor SET at = ? WHERE id = 1 AND at < ?"
        )
        self.changed_since = made(_CHANGED.replace("{where}", "r.updated_at >= ?"))
        self.changed_of = made(_CHANGED.replace("{where}", "r.run_id {in}"))
        self.insert = made(
            f"INSERT INTO {{schema}}.webhook_deliveries ({_D}) "  # noqa: S608 - constants
            f"VALUES ({', '.join('?' * len(DELIVERY_COLUMNS))}) ON CONFLICT (id) DO NOTHING"
        )
        self.seen = made(
            "INSERT INTO {schema}.webhook_runs (run_id, seen, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id) DO UPDATE SET "
            "seen = {greatest}(webhook_runs.seen, excluded.seen), updated_at = excluded.updated_at"
        )
        self.forget = made("DELETE FROM {schema}.webhook_runs WHERE updated_at < ?")
        self.claim = made(_CLAIM.replace("{lock}", " FOR UPDATE SKIP LOCKED" if postgres else ""))
        self.finish = made(
            "UPDATE {schema}.webhook_deliveries SET status = ?, "
            "next_attempt_at = COALESCE(?, next_attempt_at), last_status = ?, last_error = ?, "
            "delivered_at = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ? "
            "WHERE id = ? AND lease_owner = ?"
        )
        self.next_due = made(
            "SELECT MIN(CASE WHEN lease_expires_at > next_attempt_at THEN lease_expires_at "
            "ELSE next_attempt_at END) FROM {schema}.webhook_deliveries "
            "WHERE status = 'pending' AND endpoint {in}"
        )
        self.get = made(f"SELECT {_D} FROM {{schema}}.webhook_deliveries WHERE id = ?")  # noqa: S608
        self.all = made(
            f"SELECT {_D_QUALIFIED} FROM {{schema}}.webhook_deliveries d "  # noqa: S608
            "ORDER BY d.created_at DESC, d.id LIMIT ?"
        )
        self.of_status = made(
            f"SELECT {_D_QUALIFIED} FROM {{schema}}.webhook_deliveries d "  # noqa: S608
            "WHERE d.status = ? ORDER BY d.created_at DESC, d.id LIMIT ?"
        )
        self.retry = made(
            "UPDATE {schema}.webhook_deliveries SET status = 'pending', attempts = 0, "
            "next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ? "
            "WHERE id = ? AND status <> 'delivered'"
        )
        self.prune = made(
            "DELETE FROM {schema}.webhook_deliveries "
            "WHERE status = 'delivered' AND delivered_at < ?"
        )
