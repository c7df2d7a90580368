"""The store's statements, written once as templates, and how a dialect spells them.

A template names its tables ``{runs}``, ``{events}``, ``{threads}``, ``{thread_messages}`` (the
schema alone: ``{schema}``), its parameters ``:name``, the database's clock ``{now}``, the row
locks a claim or a deletion takes ``{skip_locked}`` and ``{lock}``, and "is in this list
parameter" ``{in:name}``. A
:class:`Spelling` turns those into one dialect's SQL, once per store, so the rendered strings
are constants (SQLite's statement cache prepares each once):

========================  ==============================  =====================================
template                  SQLite                          PostgreSQL
========================  ==============================  =====================================
``{runs}``                ``runs``                        ``"schema".runs``
``:name``                 ``:name``                       ``%(name)s``
``{now}``                 ``:now`` (the store's clock)    ``extract(epoch FROM clock_timestamp())``
``{skip_locked}``         (nothing: one writer at a time) ``FOR UPDATE SKIP LOCKED``
``{lock}``                (nothing)                       ``FOR UPDATE``
``{in:ids}``              ``IN (SELECT value FROM         ``= ANY(%(ids)s::text[])``
                          json_each(:ids))``
``{index:name}``          ``INDEXED BY name``             (nothing: its planner picks it)
``{arrival}``             ``rowid``                       ``run_no`` (an identity column)
========================  ==============================  =====================================

``{arrival}`` is the order runs were created in, as the database hands it out: a thread's runs
go first come, first served by it, whatever the clocks of the hosts that created them say.

The SQL itself is the standard form both accept: ``INSERT ... ON CONFLICT``, conditional
``UPDATE`` with ``RETURNING``, row values, partial-index-friendly predicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "MAX_SEQ",
    "RECORD_COLUMNS",
    "RELEASE",
    "RUN_COLUMNS",
    "Migration",
    "Spelling",
    "Statements",
]

# Larger than any sequence number or count: "no bound".
MAX_SEQ = 2**62

# The columns a write stores from a RunRecord, in the record's order.
RUN_COLUMNS = (
    "run_id",
    "thread_id",
    "agent",
    "model",
    "status",
    "created_at",
    "updated_at",
    "input",
    "steps",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "output_preview",
    "reason_code",
    "reason",
    "last_seq",
    "holds_thread",
    "tenant",
    "user",
    "tools",
)
# What a read returns: the stored record and its lease as it stands.
RECORD_COLUMNS = (*RUN_COLUMNS, "lease_owner", "lease_expires_at")

TABLES = (
    "runs",
    "events",
    "threads",
    "thread_messages",
    "run_tools",
    "feedback",
    "run_keys",
    "schema_migrations",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    """One schema step: its number, a short name, and the statements it runs in order.

    Each dialect has its own list (the DDL is where they differ most); each migration runs
    once, in order, in one transaction, recorded in ``schema_migrations``. Never edit a
    released migration: add the next number.
    """

    version: int
    name: str
    statements: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Spelling:
    """How one dialect writes the template's placeholders."""

    schema: str
    tables: Mapping[str, str]
    now: str
    skip_locked: str
    lock: str
    param: Callable[[str], str]
    in_list: Callable[[str], str]
    index_hint: Callable[[str], str]
    arrival: str

    def render(self, template: str) -> str:
        """The template in this dialect's SQL."""
        text = _IN_LIST.sub(lambda m: self.in_list(m[1]), template)
        text = _INDEX_HINT.sub(lambda m: self.index_hint(m[1]), text)
        text = text.format(
            **self.tables,
            schema=self.schema,
            now=self.now,
            skip_locked=self.skip_locked,
            lock=self.lock,
            arrival=self.arrival,
        )
        return _PARAM.sub(lambda m: self.param(m[1]), text)


_IN_LIST = re.compile(r"\{in:(\w+)\}")
_INDEX_HINT = re.compile(r"\{index:(\w+)\}")
# :name, but not the second colon of a ::cast.
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

# The columns of RECORD_COLUMNS, as a select list (``user`` is a keyword: quoted).
SELECTED_COLUMNS = """
    run_id, thread_id, agent, model, status, created_at, updated_at, input, steps, tool_calls,
    input_tokens, output_tokens, cost_usd, output_preview, reason_code, reason, last_seq,
    holds_thread, tenant, "user", tools, lease_owner, lease_expires_at"""
_SELECT_RUNS = "\nSELECT" + SELECTED_COLUMNS + "\nFROM {runs} "

# --- the journal ------------------------------------------------------------------------------

# A new run: inserted unless it exists (then no row is returned). Unleased (queued, or created
# by an import), or leased to its owner with the first fencing token.
_INSERT_RUN_HEAD = """
INSERT INTO {runs} (
    run_id, thread_id, agent, model, status, created_at, updated_at, input, steps, tool_calls,
    input_tokens, output_tokens, cost_usd, output_preview, reason_code, reason, last_seq,
    holds_thread, tenant, "user", tools,
    lease_owner, lease_token, lease_expires_at
) VALUES (
    :run_id, :thread_id, :agent, :model, :status, :created_at, :updated_at, :input, :steps,
    :tool_calls, :input_tokens, :output_tokens, :cost_usd, :output_preview, :reason_code,
    :reason, :last_seq, :holds_thread, :tenant, :user, :tools,"""
INSERT_RUN = (
    _INSERT_RUN_HEAD
    + """
    NULL, 0, NULL
)
ON CONFLICT (run_id) DO NOTHING RETURNING lease_token"""
)
INSERT_LEASED_RUN = (
    _INSERT_RUN_HEAD
    + """
    :owner, 1, {now} + :ttl
)
ON CONFLICT (run_id) DO NOTHING RETURNING lease_expires_at"""
)
# An existing run advances only from the position the writer expects, and only if the lease
# allows it; no row changes otherwise, which is how a refusal is detected, with no
# read-then-write gap. The indexed columns are set apart (below), and only when they changed:
# SQLite rewrites the entries of every index whose column an UPDATE sets, changed or not.
_ADVANCE_RUN = """
UPDATE {runs} SET
    model = :model, updated_at = :updated_at, input = :input, steps = :steps,
    tool_calls = :tool_calls, input_tokens = :input_tokens, output_tokens = :output_tokens,
    cost_usd = :cost_usd, output_preview = :output_preview, reason = :reason,
    last_seq = :last_seq, tools = :tools"""
# Under a lease, the holder's last append may give the lease up in the same write (``release``).
RELEASE = """,
    lease_owner = CASE WHEN :release THEN NULL ELSE lease_owner END,
    lease_expires_at = CASE WHEN :release THEN NULL ELSE lease_expires_at END"""
_AT_POSITION = "\nWHERE run_id = :run_id AND last_seq = :expected_seq"
# Without a lease, nobody may hold an unexpired one; under one, it must be the current one
# (expired or not: nobody took over).
# The indexed columns come back as stored, so that the keys are updated only when they differ.
KEY_COLUMNS = (
    "thread_id",
    "status",
    "created_at",
    "holds_thread",
    "agent",
    "tenant",
    "user",
    "reason_code",
)
_KEYS = ' RETURNING thread_id, status, created_at, holds_thread, agent, tenant, "user", reason_code'

ADVANCE_RUN = (
    _ADVANCE_RUN + _AT_POSITION + " AND (lease_owner IS NULL OR lease_expires_at <= {now})" + _KEYS
)
ADVANCE_LEASED_RUN = (
    _ADVANCE_RUN
    + RELEASE
    + _AT_POSITION
    + " AND lease_token = :lease_token AND lease_owner = :lease_owner"
    + _KEYS
)
# (SQLite's ``IS NOT`` is the null-safe "differs"; only SQLite runs this statement.)
UPDATE_RUN_KEYS = """
UPDATE {runs} SET
    thread_id = :thread_id, status = :status, created_at = :created_at,
    holds_thread = :holds_thread, agent = :agent, tenant = :tenant, "user" = :user,
    reason_code = :reason_code
WHERE run_id = :run_id AND (thread_id <> :thread_id OR status <> :status
    OR created_at <> :created_at OR holds_thread <> :holds_thread OR agent <> :agent
    OR tenant IS NOT :tenant OR "user" IS NOT :user OR reason_code IS NOT :reason_code)"""
INSERT_EVENT = """
INSERT INTO {events} (run_id, seq, type, at, body) VALUES (:run_id, :seq, :type, :at, :body)"""
# Reserve the thread's next message numbers: the counter only grows, so numbers of deleted
# messages are never handed out again. One statement reads and writes it.
RESERVE_THREAD_SEQS = """
INSERT INTO {threads} AS t (thread_id, last_seq) VALUES (:thread_id, :count)
ON CONFLICT (thread_id) DO UPDATE SET last_seq = t.last_seq + excluded.last_seq
RETURNING last_seq"""
INSERT_THREAD_MESSAGE = """
INSERT INTO {thread_messages} (thread_id, seq, run_id, body)
VALUES (:thread_id, :seq, :run_id, :body)"""
# The run's position and lease, and the clock, read together; no row for an unknown run.
RUN_STATE = """
SELECT last_seq, lease_owner, lease_token, lease_expires_at, {now}
FROM {runs} WHERE run_id = :run_id"""
SELECT_NOW = "SELECT {now}"
APPENDED_BODIES = """
SELECT body FROM {events} WHERE run_id = :run_id AND seq > :after_seq ORDER BY seq LIMIT :count"""

SELECT_EVENTS = "SELECT seq, body FROM {events} WHERE run_id = :run_id ORDER BY seq"
# From a position: the run's row is joined so that "no events after it" and "no such run"
# differ (one row of NULLs, or none).
SELECT_EVENTS_AFTER = """
SELECT e.seq, e.body FROM {runs} AS r
    LEFT JOIN {events} AS e ON e.run_id = r.run_id AND e.seq > :after_seq
WHERE r.run_id = :run_id ORDER BY e.seq"""
SELECT_RUN = _SELECT_RUNS + "WHERE run_id = :run_id"

# --- threads ----------------------------------------------------------------------------------

# The runs holding a thread are read from the partial index runs_holding_thread: a few entries,
# however many ended runs the thread has.
ACTIVE_RUN = (
    _SELECT_RUNS + "WHERE thread_id = :thread_id AND holds_thread ORDER BY {arrival} LIMIT 1"
)
OTHER_HOLDER = """
SELECT run_id FROM {runs} WHERE thread_id = :thread_id AND holds_thread AND run_id <> :run_id
ORDER BY {arrival} LIMIT 1"""
THREAD_LAST_SEQ = "SELECT last_seq FROM {threads} WHERE thread_id = :thread_id"
# One row per message up to the bound, or one row of NULLs for a thread whose messages are all
# deleted; no row for an unknown thread. One statement: counter and messages from one snapshot.
THREAD_HISTORY = """
SELECT t.last_seq, m.seq, m.body
FROM {threads} AS t
    LEFT JOIN {thread_messages} AS m ON m.thread_id = t.thread_id AND m.seq <= :upto_seq
WHERE t.thread_id = :thread_id
ORDER BY m.seq"""

# --- idempotency keys -------------------------------------------------------------------------

# The run an idempotency key created (a key never outlives its run: they are deleted together).
SELECT_RUN_KEY = """
SELECT k.run_id, r.agent FROM {run_keys} AS k JOIN {runs} AS r ON r.run_id = k.run_id
WHERE k.tenant = :tenant AND k.idempotency_key = :idempotency_key"""
# The key's row is the guard: of two starts with one key, the second waits for the first to
# commit (PostgreSQL) or runs after it (SQLite), finds the row and inserts nothing.
INSERT_RUN_KEY = """
INSERT INTO {run_keys} (tenant, idempotency_key, run_id)
VALUES (:tenant, :idempotency_key, :run_id)
ON CONFLICT (tenant, idempotency_key) DO NOTHING RETURNING run_id"""

# --- leases and claims ------------------------------------------------------------------------

# Free, expired or the owner's own (or forced): one UPDATE decides and writes. The owner
# re-acquiring its unexpired lease keeps the token; any other grant takes the next one.
ACQUIRE_LEASE = """
UPDATE {runs} SET
    lease_token = CASE
        WHEN NOT :force AND lease_owner = :owner AND lease_expires_at > {now}
        THEN lease_token ELSE lease_token + 1 END,
    lease_owner = :owner,
    lease_expires_at = {now} + :ttl
WHERE run_id = :run_id
    AND (:force OR lease_owner IS NULL OR lease_owner = :owner OR lease_expires_at <= {now})
RETURNING lease_token, lease_expires_at"""
RENEW_LEASE = """
UPDATE {runs} SET lease_expires_at = {now} + :ttl
WHERE run_id = :run_id AND lease_token = :token AND lease_owner = :owner
RETURNING lease_expires_at"""
RELEASE_LEASE = """
UPDATE {runs} SET lease_owner = NULL, lease_expires_at = NULL
WHERE run_id = :run_id AND lease_token = :token AND lease_owner = :owner"""

# What a driver should advance now, oldest first: a running run whose lease is missing or
# expired (its process died), or a queued run with no live lease that is first in its thread
# (no run of the thread created before it holds it). ``status IN (...)`` is the predicate of
# the partial index runs_claimable, so the scan reads only queued and running runs, in order;
# the thread check reads runs_holding_thread. The rows are locked and skipped by concurrent
# claimers where the dialect locks rows (PostgreSQL); SQLite's single writer makes the
# statement atomic.
_CLAIMABLE = """
SELECT r.run_id FROM {runs} AS r {hint}
WHERE r.status IN ('queued', 'running')
    AND (r.lease_owner IS NULL OR r.lease_expires_at <= {now})
    AND (r.status = 'running' OR NOT EXISTS (
        SELECT 1 FROM {runs} AS o
        WHERE o.thread_id = r.thread_id AND o.holds_thread AND o.{arrival} < r.{arrival}))"""
_CLAIM = """
UPDATE {runs} SET
    lease_owner = :owner, lease_token = lease_token + 1, lease_expires_at = {now} + :ttl
WHERE run_id IN ({claimable}
    ORDER BY r.created_at, r.run_id LIMIT :limit {skip_locked})
RETURNING run_id, lease_token, lease_expires_at, created_at"""


def _claim(*, agents: bool, run_ids: bool) -> str:
    # Without a list of runs, the queue is read oldest first from runs_claimable, which SQLite's
    # planner, without statistics, passes over for runs_by_status and a sort of the whole queue.
    claimable = _CLAIMABLE.replace("{hint}", "" if run_ids else "{index:runs_claimable}")
    claimable += " AND r.agent {in:agents}" if agents else ""
    claimable += " AND r.run_id {in:run_ids}" if run_ids else ""
    # Only {claimable} is filled in here; the dialect fills in the rest.
    return _CLAIM.replace("{claimable}", claimable)


CLAIM: dict[tuple[bool, bool], str] = {
    (agents, run_ids): _claim(agents=agents, run_ids=run_ids)
    for agents in (False, True)
    for run_ids in (False, True)
}

# --- listing: see keel.stores._sql.history_sql ---------------------------------------------

# --- deletion ---------------------------------------------------------------------------------

# The rows about to be deleted, locked where the dialect locks rows (in run_id order, so that
# two deletions cannot deadlock), with their leases and the clock.
LOCK_RUNS = """
SELECT run_id, lease_owner, lease_expires_at, {now} FROM {runs}
WHERE run_id {in:run_ids} ORDER BY run_id {lock}"""
LOCK_THREAD_RUNS = """
SELECT run_id, lease_owner, lease_expires_at, {now} FROM {runs}
WHERE thread_id = :thread_id ORDER BY run_id {lock}"""
# Retention keeps queued and running runs and live leases, and skips rows another transaction
# holds: they are busy, and the next pass gets them.
LOCK_OLD_RUNS = """
SELECT run_id FROM {runs}
WHERE created_at < :before AND status NOT IN ('running', 'queued')
    AND (lease_owner IS NULL OR lease_expires_at <= {now})
ORDER BY run_id {skip_locked}"""
DELETE_THREAD_MESSAGES_OF_RUNS = "DELETE FROM {thread_messages} WHERE run_id {in:run_ids}"
DELETE_EVENTS_OF_RUNS = "DELETE FROM {events} WHERE run_id {in:run_ids}"
DELETE_RUN_TOOLS_OF_RUNS = "DELETE FROM {run_tools} WHERE run_id {in:run_ids}"
DELETE_FEEDBACK_OF_RUNS = "DELETE FROM {feedback} WHERE run_id {in:run_ids}"
DELETE_RUN_KEYS_OF_RUNS = "DELETE FROM {run_keys} WHERE run_id {in:run_ids}"
DELETE_RUNS = "DELETE FROM {runs} WHERE run_id {in:run_ids}"
DELETE_THREAD_MESSAGES = "DELETE FROM {thread_messages} WHERE thread_id = :thread_id"


class Statements:
    """Every template, rendered once in one dialect's spelling."""

    def __init__(self, spelling: Spelling) -> None:
        render = spelling.render
        self.render = render
        self.insert_run = render(INSERT_RUN)
        self.insert_leased_run = render(INSERT_LEASED_RUN)
        self.advance_run = render(ADVANCE_RUN)
        self.advance_leased_run = render(ADVANCE_LEASED_RUN)
        self.update_run_keys = render(UPDATE_RUN_KEYS)
        self.insert_event = render(INSERT_EVENT)
        self.reserve_thread_seqs = render(RESERVE_THREAD_SEQS)
        self.insert_thread_message = render(INSERT_THREAD_MESSAGE)
        self.run_state = render(RUN_STATE)
        self.select_now = render(SELECT_NOW)
        self.appended_bodies = render(APPENDED_BODIES)
        self.select_events = render(SELECT_EVENTS)
        self.select_events_after = render(SELECT_EVENTS_AFTER)
        self.select_run = render(SELECT_RUN)
        self.active_run = render(ACTIVE_RUN)
        self.other_holder = render(OTHER_HOLDER)
        self.thread_last_seq = render(THREAD_LAST_SEQ)
        self.thread_history = render(THREAD_HISTORY)
        self.select_run_key = render(SELECT_RUN_KEY)
        self.insert_run_key = render(INSERT_RUN_KEY)
        self.acquire_lease = render(ACQUIRE_LEASE)
        self.renew_lease = render(RENEW_LEASE)
        self.release_lease = render(RELEASE_LEASE)
        self.claim = {key: render(t) for key, t in CLAIM.items()}
        self.lock_runs = render(LOCK_RUNS)
        self.lock_thread_runs = render(LOCK_THREAD_RUNS)
        self.lock_old_runs = render(LOCK_OLD_RUNS)
        self.delete_thread_messages_of_runs = render(DELETE_THREAD_MESSAGES_OF_RUNS)
        self.delete_events_of_runs = render(DELETE_EVENTS_OF_RUNS)
        self.delete_run_tools_of_runs = render(DELETE_RUN_TOOLS_OF_RUNS)
        self.delete_feedback_of_runs = render(DELETE_FEEDBACK_OF_RUNS)
        self.delete_run_keys_of_runs = render(DELETE_RUN_KEYS_OF_RUNS)
        self.delete_runs = render(DELETE_RUNS)
        self.delete_thread_messages = render(DELETE_THREAD_MESSAGES)
