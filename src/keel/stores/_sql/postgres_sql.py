"""PostgreSQL's spelling of the statements, and the appends it fuses into one statement.

An append (or a start) is one statement on an autocommit connection: the run's conditional
UPDATE (or INSERT, for a new run) is a data-modifying CTE, and the events, the thread's
messages and the ``NOTIFY`` are further CTEs that select from it, so a refused write inserts
nothing and notifies nobody. Statement and commit are one round trip. The arrays of event and
message bodies are sent in binary (``%(name)b``): psycopg's text form of an array escapes each
JSON body character by character, which cost about 450 µs per append.

``NOTIFY`` is ``pg_notify`` in a CTE that the final SELECT reads: PostgreSQL runs every
data-modifying CTE, but a plain SELECT CTE only if it is referenced. It is sent when the
statement commits, on the channel ``keel:<schema>``, with the payload ``q`` (the queue) or
``r<run id>``.

Nothing depends on the session: the tables are written ``"schema".table`` (a pooler in
transaction mode keeps no ``search_path``), the clock is the server's (``clock_timestamp()``),
and the thread lock of an exclusive start is a transaction-level advisory lock.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from keel.stores._common import QUEUE_KEY
from keel.stores._sql.program import Program, Row, fetch_one, notify
from keel.stores._sql.programs import Programs, Write
from keel.stores._sql.statements import (
    INSERT_LEASED_RUN,
    INSERT_RUN,
    RELEASE,
    TABLES,
    Spelling,
    Statements,
)

__all__ = ["PostgresPrograms", "channel_of", "decode_payload", "encode_payload", "spelling"]

NOW = "extract(epoch FROM clock_timestamp())::float8"


def spelling(schema: str) -> Spelling:
    """PostgreSQL's spelling, with the tables in ``schema`` (quoted as an identifier)."""
    quoted = sql.Identifier(schema).as_string(None)
    return Spelling(
        schema=quoted,
        tables={table: f"{quoted}.{table}" for table in TABLES},
        now=NOW,
        skip_locked="FOR UPDATE SKIP LOCKED",
        lock="FOR UPDATE",
        param=lambda name: f"%({name})s",
        in_list=lambda name: f"= ANY(%({name})s::text[])",
        index_hint=lambda name: "",
        arrival="run_no",
    )


def channel_of(schema: str) -> str:
    """The NOTIFY channel of a schema's store (at most 63 bytes, PostgreSQL's limit)."""
    return f"keel:{schema}"[:63]


def encode_payload(key: str) -> str:
    return "q" if key == QUEUE_KEY else f"r{key}"


def decode_payload(payload: str) -> str | None:
    if payload == "q":
        return QUEUE_KEY
    return payload[1:] if payload.startswith("r") else None


# The shared inserts, returning what the fused statement reports.
_NEW_RUN = INSERT_RUN.replace("RETURNING lease_token", "RETURNING run_id, lease_token AS result")
_NEW_LEASED_RUN = INSERT_LEASED_RUN.replace(
    "RETURNING lease_expires_at", "RETURNING run_id, lease_expires_at AS result"
)
# Every column in one UPDATE: PostgreSQL makes it a HOT update (no index entry written) when no
# indexed column's value changed, which is every append that keeps the run's status.
_ADVANCE_RUN = """
    UPDATE {runs} SET
        thread_id = :thread_id, agent = :agent, model = :model, status = :status,
        created_at = :created_at, updated_at = :updated_at, input = :input, steps = :steps,
        tool_calls = :tool_calls, input_tokens = :input_tokens, output_tokens = :output_tokens,
        cost_usd = :cost_usd, output_preview = :output_preview, reason_code = :reason_code,
        reason = :reason, last_seq = :last_seq, holds_thread = :holds_thread"""
_AT_POSITION = "\n    WHERE run_id = :run_id AND last_seq = :expected_seq"
_NO_LIVE_LEASE = " AND (lease_owner IS NULL OR lease_expires_at <= {now})"
_CURRENT_LEASE = " AND lease_token = :lease_token AND lease_owner = :lease_owner"
_RETURNING = " RETURNING run_id, 1 AS result"
_INSERT_EVENTS = """
    INSERT INTO {events} (run_id, seq, type, at, body)
    SELECT run.run_id, :expected_seq + e.n, e.type, e.at, e.body
    FROM run, unnest(%(types)b::text[], %(ats)b::float8[], %(bodies)b::text[])
        WITH ORDINALITY AS e (type, at, body, n)"""
# The thread's counter row is created or locked and advanced in one statement, which makes
# concurrent runs of a thread number their messages in turn.
_RESERVE_THREAD_SEQS = """
    INSERT INTO {threads} AS t (thread_id, last_seq)
    SELECT :thread_id, :count FROM run
    ON CONFLICT (thread_id) DO UPDATE SET last_seq = t.last_seq + excluded.last_seq
    RETURNING last_seq"""
_INSERT_THREAD_MESSAGES = """
    INSERT INTO {thread_messages} (thread_id, seq, run_id, body)
    SELECT :thread_id, thread.last_seq - :count + m.n, :run_id, m.body
    FROM thread, unnest(%(messages)b::text[]) WITH ORDINALITY AS m (body, n)"""
_NOTIFIED = """
    SELECT pg_notify(:channel, k) FROM run, unnest(%(payloads)s::text[]) AS k"""
_RESULT = "SELECT run.result, (SELECT count(*) FROM notified) FROM run"


def _fused(run: str, *, messages: bool) -> str:
    parts = [f"run AS ({run})", f"events AS ({_INSERT_EVENTS})"]
    if messages:
        parts += [f"thread AS ({_RESERVE_THREAD_SEQS})", f"messages AS ({_INSERT_THREAD_MESSAGES})"]
    parts.append(f"notified AS ({_NOTIFIED})")
    return "WITH " + ",\n".join(parts) + "\n" + _RESULT


# (new run?, under a lease / leased to an owner?, with thread messages?)
WRITES = {
    (new, leased, messages): _fused(
        (_NEW_LEASED_RUN if leased else _NEW_RUN)
        if new
        else _ADVANCE_RUN
        + (RELEASE + _AT_POSITION + _CURRENT_LEASE if leased else _AT_POSITION + _NO_LIVE_LEASE)
        + _RETURNING,
        messages=messages,
    )
    for new in (False, True)
    for leased in (False, True)
    for messages in (False, True)
}


class PostgresPrograms(Programs):
    """The shared programs, with appends and starts fused into one statement each."""

    single_statement_writes = True

    def __init__(self, statements: Statements, *, schema: str, where: str) -> None:
        lock = statements.render(
            "SELECT pg_advisory_xact_lock(hashtextextended("
            f"'keel:{schema}:' || :key, 0))"  # the schema is a plain identifier: no quote
        )
        super().__init__(statements, where=where, lock_thread=lock)
        self.channel = channel_of(schema)
        self.writes = {key: statements.render(text) for key, text in WRITES.items()}
        self.notify_sql = statements.render(
            "SELECT pg_notify(:channel, k) FROM unnest(:keys::text[]) k"
        )

    def write_new(self, w: Write) -> Program[Row | None]:
        row = yield from fetch_one(
            self.writes[True, w.owner is not None, bool(w.messages)], self._params(w)
        )
        if row is not None:
            yield from notify(*w.keys, sent=True)
        return row

    def write_advance(self, w: Write) -> Program[bool]:
        row = yield from fetch_one(
            self.writes[False, w.lease is not None, bool(w.messages)], self._params(w)
        )
        if row is None:
            return False
        yield from notify(*w.keys, sent=True)
        return True

    def _params(self, w: Write) -> dict[str, Any]:
        params = w.params()
        params["types"] = w.types
        params["ats"] = w.ats
        params["bodies"] = w.bodies
        params["messages"] = w.messages
        params["count"] = len(w.messages)
        params["channel"] = self.channel
        params["payloads"] = [encode_payload(key) for key in w.keys]
        return params
