"""Rules every store applies to decision-history queries and feedback, so that all backends
accept and refuse the same things with the same messages, and the memory store's matching
means what the SQL stores' ``WHERE`` clauses mean.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, replace

from keel._core.events import RunStatus
from keel.errors import UsageError
from keel.ports import Feedback, FeedbackQuery, RunQuery, RunRecord

__all__ = [
    "FILTERS",
    "MAX_SCORE",
    "MIN_SCORE",
    "Cursor",
    "Filters",
    "check_feedback",
    "check_feedback_query",
    "feedback_matches",
    "filters_of",
    "parse_cursor",
]

MIN_SCORE = -1.0
MAX_SCORE = 5.0
"""Scores run from -1 to 5: -1 and 1 for thumbs (0 neutral), 1 to 5 for ratings."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a newest-first page goes on: after the run created at ``created_at`` with
    ``run_id`` (``RunRecord.cursor``)."""

    created_at: float
    run_id: str


def parse_cursor(before: str | None) -> Cursor | None:
    """The position ``before`` names; :class:`keel.errors.UsageError` if it is not a cursor."""
    if before is None:
        return None
    at, sep, run_id = before.partition("/")
    try:
        created_at = float(at)
    except ValueError:
        created_at = math.nan
    if not sep or not run_id or not math.isfinite(created_at):
        raise UsageError(
            f"before={before!r} is not a page cursor; pass the cursor of the last run of the "
            "previous page (RunRecord.cursor, or the 'next' cursor `keel runs list` prints)"
        )
    return Cursor(created_at, run_id)


@dataclass(frozen=True, slots=True)
class Filters:
    """A run query, checked and normalised: ``statuses`` is a sorted tuple; the rest as
    given. ``key`` names which filters are set (the SQL stores render one statement per
    key)."""

    query: RunQuery
    statuses: tuple[str, ...] | None
    cursor: Cursor | None

    @property
    def key(self) -> tuple[str, ...]:
        names = [name for name in FILTERS if getattr(self.query, name) is not None]
        cursor, until = self.cursor, self.query.until
        if cursor is not None and until is not None and cursor.created_at < until:
            # The cursor implies it, and one upper bound lets SQLite start the range there.
            names.remove("until")
        if self.statuses is not None:
            names.append("status_one" if len(self.statuses) == 1 else "status_many")
        if self.cursor is not None:
            names.append("before")
        return tuple(names)

    def matches(self, record: RunRecord) -> bool:
        """Whether ``record`` is in the listing (what the SQL ``WHERE`` says)."""
        q = self.query
        cost, duration = record.cost_usd, record.duration_s
        cursor = self.cursor
        return (
            (q.agent is None or record.agent == q.agent)
            and (self.statuses is None or record.status in self.statuses)
            and (q.thread is None or record.thread_id == q.thread)
            and (q.tenant is None or record.tenant == q.tenant)
            and (q.user is None or record.user == q.user)
            and (q.since is None or record.created_at >= q.since)
            and (q.until is None or record.created_at < q.until)
            and (q.tool is None or q.tool in record.tools)
            and (q.error is None or record.reason_code == q.error)
            and (q.min_cost is None or (cost is not None and cost >= q.min_cost))
            and (q.max_cost is None or (cost is not None and cost <= q.max_cost))
            and (q.min_duration is None or duration >= q.min_duration)
            and (q.max_duration is None or duration <= q.max_duration)
            and (cursor is None or (record.created_at, record.run_id) < _position(cursor))
        )


def _position(cursor: Cursor) -> tuple[float, str]:
    return cursor.created_at, cursor.run_id


# The filters besides status, in the order the SQL stores test them.
FILTERS = (
    "agent",
    "thread",
    "tenant",
    "user",
    "since",
    "until",
    "tool",
    "error",
    "min_cost",
    "max_cost",
    "min_duration",
    "max_duration",
)
_TEXT = ("agent", "thread", "tenant", "user", "tool", "error")
_NUMBERS = ("since", "until", "min_cost", "max_cost", "min_duration", "max_duration")


def filters_of(
    query: RunQuery | None,
    *,
    thread_id: str | None,
    status: RunStatus | Collection[RunStatus] | None,
    before: str | None,
) -> Filters:
    """``query`` merged with ``list_runs``'s older keywords, checked."""
    query = query if query is not None else RunQuery()
    if not isinstance(query, RunQuery):
        raise UsageError(
            f"list_runs takes a RunQuery, got {type(query).__name__}; e.g. "
            "RunQuery(agent='support', status='paused')"
        )
    for name in _TEXT:
        value = getattr(query, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise UsageError(f"RunQuery.{name} must be a non-empty string, got {value!r}")
    for name in _NUMBERS:
        value = getattr(query, name)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise UsageError(f"RunQuery.{name} must be a finite number, got {value!r}")
    if thread_id is not None:
        if query.thread is not None and query.thread != thread_id:
            raise UsageError("give the thread once: in the RunQuery or as thread_id, not both")
        query = replace(query, thread=thread_id)
    wanted = _statuses(query.status if status is None else status)
    if status is not None and query.status is not None:
        raise UsageError("give the status once: in the RunQuery or as status, not both")
    return Filters(query, wanted, parse_cursor(before))


def _statuses(status: object) -> tuple[str, ...] | None:
    if status is None:
        return None
    if isinstance(status, str):
        return (status,)
    if not isinstance(status, Collection) or not all(isinstance(s, str) for s in status):
        raise UsageError(f"status must be a status or a collection of them, got {status!r}")
    return tuple(sorted(set(status)))


def check_feedback(feedback: Feedback) -> None:
    """Refuse feedback that says nothing, or whose score or step is out of range."""
    if not isinstance(feedback, Feedback):
        raise UsageError(f"add_feedback takes a Feedback, got {type(feedback).__name__}")
    if feedback.score is None and feedback.label is None and feedback.comment is None:
        raise UsageError("feedback needs a score, a label or a comment (or several)")
    score = feedback.score
    if score is not None and (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not MIN_SCORE <= score <= MAX_SCORE
    ):
        raise UsageError(
            f"score must be a number from {MIN_SCORE:g} to {MAX_SCORE:g} (-1 or 1 for thumbs, "
            f"1 to 5 for a rating), got {score!r}"
        )
    step = feedback.step
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise UsageError(f"step must be a step number (1 or more), got {step!r}")
    if feedback.label is not None and (not isinstance(feedback.label, str) or not feedback.label):
        raise UsageError(f"label must be a non-empty string, got {feedback.label!r}")


def check_feedback_query(query: FeedbackQuery | None) -> FeedbackQuery:
    """``query`` (or one matching everything), checked."""
    query = query if query is not None else FeedbackQuery()
    if not isinstance(query, FeedbackQuery):
        raise UsageError(f"list_feedback takes a FeedbackQuery, got {type(query).__name__}")
    for name in ("min_score", "max_score", "since", "until"):
        value = getattr(query, name)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise UsageError(f"FeedbackQuery.{name} must be a finite number, got {value!r}")
    return query


def feedback_matches(feedback: Feedback, agent: str, query: FeedbackQuery) -> bool:
    """Whether ``feedback`` (on a run of ``agent``) is in the listing."""
    score = feedback.score
    return (
        (query.run_id is None or feedback.run_id == query.run_id)
        and (query.label is None or feedback.label == query.label)
        and (query.min_score is None or (score is not None and score >= query.min_score))
        and (query.max_score is None or (score is not None and score <= query.max_score))
        and (query.since is None or feedback.at >= query.since)
        and (query.until is None or feedback.at < query.until)
        and (query.agent is None or agent == query.agent)
    )
