"""The statements of the SQL schedule stores, written once: ``?`` placeholders and
``{schema}.`` prefixes, which :func:`for_sqlite` and :func:`for_postgres` turn into each
dialect's."""

from __future__ import annotations

from keel.schedules._rows import FIRE_COLUMNS, SCHEDULE_COLUMNS

__all__ = ["POSTGRES_SETUP", "SQLITE_SCHEMA", "Statements", "for_postgres", "for_sqlite"]

_SCHEDULES = """CREATE TABLE IF NOT EXISTS {schema}.schedules (
    name TEXT PRIMARY KEY,
    cron TEXT NOT NULL,
    agent TEXT NOT NULL,
    input TEXT NOT NULL,
    thread_id TEXT,
    tenant TEXT,
    user_name TEXT,
    timezone TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    next_due {real} NOT NULL,
    last_due {real},
    last_run_id TEXT,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
)"""
# One row per (schedule, due time): the primary key is what makes a due time fire once.
_FIRES = """CREATE TABLE IF NOT EXISTS {schema}.schedule_fires (
    name TEXT NOT NULL,
    due_at {real} NOT NULL,
    run_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    input TEXT NOT NULL,
    thread_id TEXT,
    tenant TEXT,
    user_name TEXT,
    status TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    claimed_at {real} NOT NULL,
    submitted_at {real},
    PRIMARY KEY (name, due_at)
)"""
# Recovery looks only at fires still claimed: a partial index keeps that question small.
_UNSUBMITTED = (
    "CREATE INDEX IF NOT EXISTS schedule_fires_claimed ON {schema}.schedule_fires "
    "(claimed_at) WHERE status = 'claimed'"
)

SQLITE_SCHEMA = tuple(
    s.replace("{schema}.", "").replace("{real}", "REAL") for s in (_SCHEDULES, _FIRES, _UNSUBMITTED)
)
POSTGRES_SETUP = tuple(
    s.replace("{real}", "DOUBLE PRECISION") for s in (_SCHEDULES, _FIRES, _UNSUBMITTED)
)

_S = ", ".join(SCHEDULE_COLUMNS)
_F = ", ".join(FIRE_COLUMNS)


class Statements:
    """Every statement, in one dialect."""

    def __init__(self, *, postgres: bool, schema: str = "") -> None:
        def made(text: str) -> str:
            text = text.replace("{schema}.", f"{schema}." if postgres else "")
            return text.replace("?", "%s") if postgres else text

        self.get = made(f"SELECT {_S} FROM {{schema}}.schedules WHERE name = ?")  # noqa: S608
        self.get_for_update = self.get + (" FOR UPDATE" if postgres else "")
        self.all = made(f"SELECT {_S} FROM {{schema}}.schedules ORDER BY name")  # noqa: S608
        self.insert = made(
            f"INSERT INTO {{schema}}.schedules ({_S}) VALUES ({', '.join('?' * len(SCHEDULE_COLUMNS))})"  # noqa: E501, S608
            " ON CONFLICT (name) DO NOTHING"
        )
        self.update = made(
            "UPDATE {schema}.schedules SET "  # noqa: S608 - from the constant columns
            + ", ".join(f"{c} = ?" for c in SCHEDULE_COLUMNS[1:])
            + " WHERE name = ?"
        )
        self.delete = made("DELETE FROM {schema}.schedules WHERE name = ?")
        self.delete_fires = made(
            "DELETE FROM {schema}.schedule_fires WHERE name = ? AND status = 'submitted'"
        )
        self.due = made(
            f"SELECT {_S} FROM {{schema}}.schedules WHERE enabled AND next_due <= ? "  # noqa: S608
            "ORDER BY next_due, name"
        )
        self.earliest = made("SELECT MIN(next_due) FROM {schema}.schedules WHERE enabled")
        # The compare-and-set that takes a due time: only if next_due is still what was read.
        self.advance = made(
            "UPDATE {schema}.schedules SET next_due = ?, last_due = ?, last_run_id = ?, "
            "updated_at = ? WHERE name = ? AND next_due = ? AND enabled"
        )
        self.insert_fire = made(
            f"INSERT INTO {{schema}}.schedule_fires ({_F}) VALUES ({', '.join('?' * len(FIRE_COLUMNS))})"  # noqa: E501, S608
            " ON CONFLICT (name, due_at) DO NOTHING"
        )
        self.submitted = made(
            "UPDATE {schema}.schedule_fires SET status = 'submitted', submitted_at = ? "
            "WHERE name = ? AND due_at = ? AND status = 'claimed'"
        )
        self.unsubmitted = made(
            f"SELECT {_F} FROM {{schema}}.schedule_fires "  # noqa: S608
            "WHERE status = 'claimed' AND claimed_at < ? ORDER BY due_at, name"
        )
        self.fires = made(
            f"SELECT {_F} FROM {{schema}}.schedule_fires ORDER BY due_at DESC, name LIMIT ?"  # noqa: S608
        )
        self.fires_of = made(
            f"SELECT {_F} FROM {{schema}}.schedule_fires WHERE name = ? "  # noqa: S608
            "ORDER BY due_at DESC LIMIT ?"
        )


def for_sqlite() -> Statements:
    """The statements for SQLite."""
    return Statements(postgres=False)


def for_postgres(quoted_schema: str) -> Statements:
    """The statements for PostgreSQL, in ``quoted_schema``."""
    return Statements(postgres=True, schema=quoted_schema)
