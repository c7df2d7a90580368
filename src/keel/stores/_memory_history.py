"""The memory store's feedback: kept per run, deleted with it (a part of
:class:`keel.stores.MemoryStore`, in a module of its own)."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from keel.errors import RunNotFoundError
from keel.ports import Feedback, FeedbackQuery
from keel.stores._common import check_limit
from keel.stores._history import check_feedback, check_feedback_query, feedback_matches

__all__ = ["MemoryFeedback"]


class _Held(Protocol):
    record: Any


class MemoryFeedback:
    """Feedback on the memory store's runs; the store holds ``_feedback`` ({run id: items})
    and deletes a run's items with it."""

    _lock: threading.Lock
    _runs: dict[str, Any]
    _feedback: dict[str, list[Feedback]]

    def _check_open(self) -> None:
        """Raise if the store is closed: the memory store this is mixed into provides it."""
        raise NotImplementedError

    async def add_feedback(self, feedback: Feedback) -> None:
        """Record feedback on a run; :class:`keel.errors.RunNotFoundError` if there is no
        such run."""
        check_feedback(feedback)
        with self._lock:
            self._check_open()
            if feedback.run_id not in self._runs:
                raise RunNotFoundError(feedback.run_id)
            self._feedback.setdefault(feedback.run_id, []).append(feedback)

    async def list_feedback(
        self, query: FeedbackQuery | None = None, *, limit: int | None = 50
    ) -> list[Feedback]:
        """Feedback matching ``query``, newest first (``at``, then id, descending)."""
        if limit is not None:
            check_limit(limit, "list_feedback")
        wanted = check_feedback_query(query)
        with self._lock:
            self._check_open()
            found = [
                item
                for run_id, items in self._feedback.items()
                if run_id in self._runs
                for item in items
                if feedback_matches(item, self._runs[run_id].record.agent, wanted)
            ]
        found.sort(key=lambda f: (f.at, f.id), reverse=True)
        return found if limit is None else found[:limit]
