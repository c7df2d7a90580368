"""PostgreSQL's spelling of the statements, and the writes it fuses into one statement.

One write, one statement
------------------------
An append (or a start) is one statement on an autocommit connection: the run's conditional
UPDATE (or INSERT, for a new run) is a data-modifying CTE, and the events and the thread's
messages are further CTEs that select from it, so a refused write inserts nothing. Statement and
commit are one round trip. The arrays of event and message bodies are sent in binary
(``%(name)b``): psycopg's text form of an array escapes each JSON body character by character,
which cost about 450 µs per append.

Many writes, one statement
--------------------------
Writes that wait at the same time are committed together (:mod:`.postgres_group`) by
:data:`GROUP_WRITE`, the same CTEs over arrays: one array per column, one element per write
(:func:`group_params`). New runs are inserted, existing ones advanced under the same conditions
as alone (position, lease), and the events and messages of the runs actually written follow.
It returns one row per write that was allowed; a refused one wrote nothing. No run appears twice
in one group, and no thread twice among the writes that add messages (the thread's counter row
is taken once per statement). The server parses and plans one statement per group rather than
one per write, which is most of what an append costs it.

No ``NOTIFY`` in a write: a transaction that notifies takes a lock on the whole database at
commit, so all such commits take turns. The store sends the notifications after the commit
(:class:`.postgres_listen.Notifier`), on the channel ``keel:<schema>``, with the payload ``q``
(the queue) or ``r<run id>``.

Nothing depends on the session: the tables are written ``"schema".table`` (a pooler in
transaction mode keeps no ``search_path``), the clock is the server's (``clock_timestamp()``),
and the thread lock of an exclusive start is a transaction-level advisory lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from psycopg import sql

from keel.stores._common import QUEUE_KEY
from keel.stores._keyring import Keyring
from keel.stores._sql.history_sql import encode_tools
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

__all__ = [
    "GROUP_WRITE",
    "PostgresPrograms",
    "channel_of",
    "decode_payload",
    "encode_payload",
    "group_params",
    "spelling",
]

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


# --- one write ----------------------------------------------------------------------------------

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
        reason = :reason, last_seq = :last_seq, holds_thread = :holds_thread,
        tenant = :tenant, "user" = :user, tools = :tools"""
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
_RESULT = "SELECT run.result FROM run"


def _fused(run: str, *, messages: bool) -> str:
    parts = [f"run AS ({run})", f"events AS ({_INSERT_EVENTS})"]
    if messages:
        parts += [f"thread AS ({_RESERVE_THREAD_SEQS})", f"messages AS ({_INSERT_THREAD_MESSAGES})"]
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

# --- many writes --------------------------------------------------------------------------------

# The arrays of a group, each with its element type: a write's run row and its conditions
# (``owner``: the new run's owner, or the lease's; ``message_count``: how many messages it adds).
_WRITE_ARRAYS = (
    ("run_id", "text"),
    ("thread_id", "text"),
    ("agent", "text"),
    ("model", "text"),
    ("status", "text"),
    ("created_at", "float8"),
    ("updated_at", "float8"),
    ("input", "text"),
    ("steps", "int8"),
    ("tool_calls", "int8"),
    ("input_tokens", "int8"),
    ("output_tokens", "int8"),
    ("cost_usd", "float8"),
    ("output_preview", "text"),
    ("reason_code", "text"),
    ("reason", "text"),
    ("last_seq", "int8"),
    ("holds_thread", "bool"),
    ("tenant", "text"),
    ("user", "text"),
    ("tools", "text"),
    ("expected_seq", "int8"),
    ("owner", "text"),
    ("ttl", "float8"),
    ("lease_token", "int8"),
    ("release", "bool"),
    ("message_count", "int8"),
)
_EVENT_ARRAYS = (
    ("e_run_id", "text"),
    ("e_seq", "int8"),
    ("e_type", "text"),
    ("e_at", "float8"),
    ("e_body", "text"),
)
_MESSAGE_ARRAYS = (
    ("m_thread_id", "text"),
    ("m_run_id", "text"),
    ("m_n", "int8"),
    ("m_total", "int8"),
    ("m_body", "text"),
)


def _quoted(name: str) -> str:
    return '"user"' if name == "user" else name  # a keyword in PostgreSQL


def _unnest(arrays: Sequence[tuple[str, str]], alias: str) -> str:
    values = ", ".join(f"%({name})b::{kind}[]" for name, kind in arrays)
    names = ", ".join(_quoted(name.removeprefix(f"{alias}_")) for name, _ in arrays)
    return f"unnest({values}) AS {alias} ({names})"


_RUN_ROW = """run_id, thread_id, agent, model, status, created_at, updated_at, input, steps,
        tool_calls, input_tokens, output_tokens, cost_usd, output_preview, reason_code, reason,
        last_seq, holds_thread, tenant, "user", tools"""
GROUP_WRITE = f"""
WITH v AS (SELECT * FROM {_unnest(_WRITE_ARRAYS, "v")}),
inserted AS (
    INSERT INTO {{runs}} ({_RUN_ROW}, lease_owner, lease_token, lease_expires_at)
    SELECT {_RUN_ROW}, owner, CASE WHEN owner IS NULL THEN 0 ELSE 1 END,
        CASE WHEN owner IS NULL THEN NULL ELSE {{now}} + ttl END
    FROM v WHERE expected_seq = 0
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id, lease_expires_at
),
advanced AS (
    UPDATE {{runs}} AS r SET
        thread_id = v.thread_id, agent = v.agent, model = v.model, status = v.status,
        created_at = v.created_at, updated_at = v.updated_at, input = v.input, steps = v.steps,
        tool_calls = v.tool_calls, input_tokens = v.input_tokens,
        output_tokens = v.output_tokens, cost_usd = v.cost_usd,
        output_preview = v.output_preview, reason_code = v.reason_code, reason = v.reason,
        last_seq = v.last_seq, holds_thread = v.holds_thread, tenant = v.tenant,
        "user" = v."user", tools = v.tools,
        lease_owner = CASE WHEN v.release THEN NULL ELSE r.lease_owner END,
        lease_expires_at = CASE WHEN v.release THEN NULL ELSE r.lease_expires_at END
    FROM v
    WHERE v.expected_seq > 0 AND r.run_id = v.run_id AND r.last_seq = v.expected_seq
        AND CASE WHEN v.lease_token IS NULL
            THEN r.lease_owner IS NULL OR r.lease_expires_at <= {{now}}
            ELSE r.lease_token = v.lease_token AND r.lease_owner = v.owner END
    RETURNING r.run_id, v.thread_id, v.message_count
),
events AS (
    INSERT INTO {{events}} (run_id, seq, type, at, body)
    SELECT e.run_id, e.seq, e.type, e.at, e.body FROM {_unnest(_EVENT_ARRAYS, "e")}
    WHERE e.run_id IN (SELECT run_id FROM inserted UNION ALL SELECT run_id FROM advanced)
),
thread AS (
    INSERT INTO {{threads}} AS t (thread_id, last_seq)
    SELECT thread_id, message_count FROM advanced WHERE message_count > 0 ORDER BY thread_id
    ON CONFLICT (thread_id) DO UPDATE SET last_seq = t.last_seq + excluded.last_seq
    RETURNING thread_id, last_seq
),
messages AS (
    INSERT INTO {{thread_messages}} (thread_id, seq, run_id, body)
    SELECT m.thread_id, thread.last_seq - m.total + m.n, m.run_id, m.body
    FROM {_unnest(_MESSAGE_ARRAYS, "m")} JOIN thread USING (thread_id)
)
SELECT run_id, lease_expires_at FROM inserted
UNION ALL SELECT run_id, NULL::float8 FROM advanced"""  # noqa: S608 - from constants
"""Commits a group of writes (:func:`group_params`); a row ``(run_id, lease_expires_at)`` for
each one that was allowed."""


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


_CONVERT: dict[str, Callable[[Any], Any]] = {"float8": _float, "int8": int, "bool": bool}
_RUN_ARRAYS = _WRITE_ARRAYS[1 : 1 + _WRITE_ARRAYS.index(("tools", "text"))]


def group_params(writes: Sequence[Write]) -> dict[str, list[Any]]:
    """The arrays of :data:`GROUP_WRITE` for ``writes`` (no run twice; no thread twice among
    those with messages; no new run with messages). Numbers are converted to the arrays' types,
    since psycopg refuses a list that mixes ``int`` and ``float``."""
    arrays: dict[str, list[Any]] = {
        name: [] for name, _ in (*_WRITE_ARRAYS, *_EVENT_ARRAYS, *_MESSAGE_ARRAYS)
    }
    # The run row's columns (thread_id to tools), from the record.
    columns = [(arrays[name], name, _CONVERT.get(kind)) for name, kind in _RUN_ARRAYS]
    for w in writes:
        record, lease = w.record, w.lease
        arrays["run_id"].append(w.run_id)
        for values, name, convert in columns:
            value = getattr(record, name)
            values.append(value if convert is None else convert(value))
        arrays["tools"][-1] = encode_tools(record.tools)
        arrays["last_seq"][-1] = w.last_seq
        arrays["expected_seq"].append(w.expected_seq)
        arrays["owner"].append(w.owner if lease is None else lease.owner)
        arrays["ttl"].append(float(w.ttl_s))
        arrays["lease_token"].append(None if lease is None else lease.token)
        arrays["release"].append(w.release)
        count = len(w.messages)
        arrays["message_count"].append(count)
        first = w.expected_seq + 1
        arrays["e_run_id"] += [w.run_id] * len(w.bodies)
        arrays["e_seq"] += range(first, first + len(w.bodies))
        arrays["e_type"] += w.types
        arrays["e_at"] += w.ats
        arrays["e_body"] += w.bodies
        if count:
            arrays["m_thread_id"] += [record.thread_id] * count
            arrays["m_run_id"] += [w.run_id] * count
            arrays["m_n"] += range(1, count + 1)
            arrays["m_total"] += [count] * count
            arrays["m_body"] += w.messages
    return arrays


class PostgresPrograms(Programs):
    """The shared programs, with appends and starts fused into one statement each."""

    single_statement_writes = True

    def __init__(
        self, statements: Statements, *, schema: str, where: str, keyring: Keyring | None = None
    ) -> None:
        lock = statements.render(
            "SELECT pg_advisory_xact_lock(hashtextextended("
            f"'keel:{schema}:' || :key, 0))"  # the schema is a plain identifier: no quote
        )
        super().__init__(statements, where=where, lock_thread=lock, keyring=keyring)
        self.channel = channel_of(schema)
        self.writes = {key: statements.render(text) for key, text in WRITES.items()}
        self.group_write = statements.render(GROUP_WRITE)
        self.notify_sql = statements.render(
            "SELECT pg_notify(:channel, k) FROM unnest(%(keys)b::text[]) k"
        )

    def write_new(self, w: Write) -> Program[Row | None]:
        row = yield from fetch_one(
            self.writes[True, w.owner is not None, bool(w.messages)], self._params(w)
        )
        if row is not None:
            yield from notify(*w.keys)
        return row

    def write_advance(self, w: Write) -> Program[bool]:
        row = yield from fetch_one(
            self.writes[False, w.lease is not None, bool(w.messages)], self._params(w)
        )
        if row is None:
            return False
        yield from notify(*w.keys)
        return True

    def _params(self, w: Write) -> dict[str, Any]:
        params = w.params()
        params["types"] = w.types
        params["ats"] = w.ats
        params["bodies"] = w.bodies
        params["messages"] = w.messages
        params["count"] = len(w.messages)
        return params
