"""Decision history in SQL: the filtered run listing and feedback, as templates and programs.

A listing is one statement per set of filters given (:attr:`keel.stores._history.Filters.key`),
rendered on first use and kept. It reads the index of the most selective filter given, newest
first, and tests the others on the rows it finds, so a page of 50 reads about 50 entries when
the filters agree and stops at the limit whatever the table's size:

=====================  =======================================================
filter given           index read (newest first)
=====================  =======================================================
thread                 ``runs_by_thread``
user                   ``runs_by_user``
tool                   ``run_tools``' key (tool, created_at, run_id), joined to runs
tenant                 ``runs_by_tenant``
error                  ``runs_by_error``
agent and one status   ``runs_by_agent_status``
agent                  ``runs_by_agent``
one status             ``runs_by_status``
(none of these)        ``runs_by_created``
=====================  =======================================================

SQLite is told which index (``INDEXED BY``: without statistics its planner may sort the
matches instead); PostgreSQL's planner chooses by its statistics. Pages are keyset pages: the
cursor is the last run's ``(created_at, run_id)`` and the next page starts below it, so runs
created meanwhile never shift a page.
"""

from __future__ import annotations

import json
from typing import Any

from keel.errors import RunNotFoundError
from keel.ports import Feedback, FeedbackQuery, RunRecord
from keel.stores._history import FILTERS, Filters
from keel.stores._keyring import Keyring
from keel.stores._sealed import described, seal, unseal
from keel.stores._sql.program import Program, Row, execute, fetch
from keel.stores._sql.statements import MAX_SEQ, RECORD_COLUMNS

__all__ = ["HistorySQL", "list_runs_template"]

_R_COLUMNS = ", ".join(f'r."{c}"' if c == "user" else f"r.{c}" for c in RECORD_COLUMNS)

# What each filter tests, on the run ``r`` (``{at}``: where its creation time is read).
_CONDITIONS = {
    "agent": "r.agent = :agent",
    "thread": "r.thread_id = :thread",
    "tenant": "r.tenant = :tenant",
    "user": 'r."user" = :user',
    "since": "{at}.created_at >= :since",
    "until": "{at}.created_at < :until",
    "tool": "EXISTS (SELECT 1 FROM {run_tools} AS x WHERE x.run_id = r.run_id AND x.tool = :tool)",
    "error": "r.reason_code = :error",
    "min_cost": "r.cost_usd >= :min_cost",
    "max_cost": "r.cost_usd <= :max_cost",
    "min_duration": "r.updated_at - r.created_at >= :min_duration",
    "max_duration": "r.updated_at - r.created_at <= :max_duration",
    "status_one": "r.status = :status",
    "status_many": "r.status {in:statuses}",
    "before": "({at}.created_at, {at}.run_id) < (:before_at, :before_id)",
}

# The most selective filter first: (the filters it needs, the index it reads).
_DRIVERS = (
    (("thread",), "runs_by_thread"),
    (("user",), "runs_by_user"),
    (("tool",), None),  # read from run_tools
    (("tenant",), "runs_by_tenant"),
    (("error",), "runs_by_error"),
    (("agent", "status_one"), "runs_by_agent_status"),
    (("agent",), "runs_by_agent"),
    (("status_one",), "runs_by_status"),
    ((), "runs_by_created"),
)


def list_runs_template(key: tuple[str, ...]) -> str:
    """The listing's template for the filters named in ``key`` (:attr:`Filters.key`)."""
    given = set(key)
    _, index = next((d for d in _DRIVERS if given.issuperset(d[0])), _DRIVERS[-1])
    by_tool = index is None
    at = "t" if by_tool else "r"
    where = [
        _CONDITIONS[name].replace("{at}", at) for name in key if not (by_tool and name == "tool")
    ]
    if by_tool:
        # run_tools first (SQLite keeps a CROSS JOIN's order), read newest first by its key.
        source = "{run_tools} AS t CROSS JOIN {runs} AS r"
        where = ["t.tool = :tool", "r.run_id = t.run_id", *where]
    else:
        source = "{runs} AS r {index:" + str(index) + "}"
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return (
        f"SELECT {_R_COLUMNS} FROM {source}{clause}"  # noqa: S608 - from constants
        f" ORDER BY {at}.created_at DESC, {at}.run_id DESC LIMIT :limit"
    )


_FEEDBACK_COLUMNS = "f.feedback_id, f.run_id, f.step, f.score, f.label, f.comment, f.given_by, f.at"
# Only for a run that exists: no row inserted says there is none.
INSERT_FEEDBACK = """
INSERT INTO {feedback} (feedback_id, run_id, step, score, label, comment, given_by, at)
SELECT :id, run_id, :step, :score, :label, :comment, :by, :at FROM {runs} WHERE run_id = :run_id"""
_FEEDBACK_CONDITIONS = {
    "run_id": "f.run_id = :run_id",
    "label": "f.label = :label",
    "min_score": "f.score >= :min_score",
    "max_score": "f.score <= :max_score",
    "since": "f.at >= :since",
    "until": "f.at < :until",
    "agent": "r.agent = :agent",
}


def list_feedback_template(key: tuple[str, ...]) -> str:
    """Feedback newest first, for the filters named in ``key``."""
    source = "{feedback} AS f"
    if "agent" in key:
        source += " JOIN {runs} AS r ON r.run_id = f.run_id"
    where = [_FEEDBACK_CONDITIONS[name] for name in key]
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return (
        f"SELECT {_FEEDBACK_COLUMNS} FROM {source}{clause}"  # noqa: S608 - from constants
        " ORDER BY f.at DESC, f.feedback_id DESC LIMIT :limit"
    )


def encode_tools(tools: tuple[str, ...]) -> str:
    """The ``tools`` column: a JSON array of names, as the triggers read it."""
    return json.dumps(list(tools), ensure_ascii=False, separators=(",", ":"))


class HistorySQL:
    """The listing and feedback programs of one store, rendering each statement once."""

    def __init__(self, render: Any, *, where: str, keyring: Keyring | None) -> None:
        self._render = render
        self._where = where
        self._keyring = keyring
        self._lists: dict[tuple[str, ...], str] = {}
        self._feedback_lists: dict[tuple[str, ...], str] = {}
        self._insert_feedback: str = render(INSERT_FEEDBACK)

    def list_sql(self, key: tuple[str, ...]) -> str:
        """The rendered listing for ``key`` (rendered once)."""
        found = self._lists.get(key)
        if found is None:
            found = self._lists[key] = self._render(list_runs_template(key))
        return found

    def list_runs(
        self, filters: Filters, limit: int | None, decode: Any
    ) -> Program[list[RunRecord]]:
        """Runs matching ``filters``, newest first; ``decode`` makes a record of a row."""
        q = filters.query
        params: dict[str, Any] = {name: getattr(q, name) for name in FILTERS}
        if filters.statuses is not None:
            params["status"] = filters.statuses[0] if filters.statuses else None
            params["statuses"] = list(filters.statuses)
        if filters.cursor is not None:
            params["before_at"] = filters.cursor.created_at
            params["before_id"] = filters.cursor.run_id
        params["limit"] = MAX_SEQ if limit is None else limit
        rows = yield from fetch(self.list_sql(filters.key), params)
        return [decode(row) for row in rows]

    def add_feedback(self, feedback: Feedback) -> Program[None]:
        params = {
            "id": feedback.id,
            "run_id": feedback.run_id,
            "step": feedback.step,
            "score": None if feedback.score is None else float(feedback.score),
            "label": feedback.label,
            "comment": None if feedback.comment is None else seal(self._keyring, feedback.comment),
            "by": feedback.by,
            "at": float(feedback.at),
        }
        if (yield from execute(self._insert_feedback, params)) == 0:
            raise RunNotFoundError(feedback.run_id)

    def list_feedback(self, query: FeedbackQuery, limit: int | None) -> Program[list[Feedback]]:
        key = tuple(name for name in _FEEDBACK_CONDITIONS if getattr(query, name) is not None)
        statement = self._feedback_lists.get(key)
        if statement is None:
            statement = self._feedback_lists[key] = self._render(list_feedback_template(key))
        params: dict[str, Any] = {name: getattr(query, name) for name in _FEEDBACK_CONDITIONS}
        params["limit"] = MAX_SEQ if limit is None else limit
        rows = yield from fetch(statement, params)
        return [self._feedback(row) for row in rows]

    def _feedback(self, row: Row) -> Feedback:
        feedback_id, run_id, step, score, label, comment, by, at = row
        if comment is not None:
            what = described(
                "the comment of feedback '{}' on run '{}' {}", feedback_id, run_id, self._where
            )
            comment = unseal(self._keyring, comment, what)
        return Feedback(
            id=feedback_id,
            run_id=run_id,
            step=None if step is None else int(step),
            score=None if score is None else float(score),
            label=label,
            comment=comment,
            by=by,
            at=float(at),
        )
