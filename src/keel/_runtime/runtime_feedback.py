"""The runtime's methods for feedback on runs, and its export as evaluation cases (a part of
:class:`keel.Runtime`, kept in a module of its own).

An evaluation case is one JSON object per line, one per run that has matching feedback::

    {"id": "run_...", "input": "...", "history": [{"role": "user", "content": "..."}, ...],
     "reference": <the run's final output>, "expected_tool_calls": [{"name": ..,
     "arguments": {...}}], "tags": ["golden"], "metadata": {"run_id": .., "agent": ..,
     "model": .., "status": .., "tenant": .., "user": .., "score": .., "comment": ..,
     "feedback": [...]}}

(see docs/guide/history-and-feedback.md, which the evaluation tools read it by).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from typing import IO, Any

from keel._core.codec import encode_message
from keel._core.events import RunFinished, RunStarted
from keel._core.messages import Message
from keel._core.steps import steps_of
from keel._runtime.kernel import Kernel
from keel._runtime.runtime_history import Moment, moment
from keel.errors import ConfigurationError, UsageError
from keel.ports import Feedback, FeedbackQuery, Feedbacks, RunRecord, Store

__all__ = ["FeedbackMethods", "eval_case"]


class FeedbackMethods:
    """Recording, listing and exporting feedback; see :class:`keel.Runtime`."""

    store: Store
    _kernel: Kernel

    def _feedbacks(self) -> Feedbacks:
        store = self.store
        if not isinstance(store, Feedbacks):
            raise ConfigurationError(
                f"{type(store).__name__} does not keep feedback; use MemoryStore, SQLiteStore "
                "or PostgresStore"
            )
        return store

    async def add_feedback(
        self,
        run_id: str,
        *,
        step: int | None = None,
        score: float | None = None,
        label: str | None = None,
        comment: str | None = None,
        by: str | None = None,
    ) -> Feedback:
        """Record feedback on a run, or on one of its steps: a ``score`` (-1 or 1 for thumbs,
        1 to 5 for a rating), a free ``label``, a ``comment`` (encrypted at rest when the
        store has a keyring), and who gave it (``by``). Returns what was recorded.

        Raises :class:`keel.errors.RunNotFoundError` for an unknown run and
        :class:`keel.errors.UsageError` for a step the run does not have, a score out of
        range, or feedback that says nothing.
        """
        store = self._feedbacks()
        record = await self.store.get_run(run_id)
        steps = record.steps
        if isinstance(step, int) and not isinstance(step, bool) and not 1 <= step <= steps:
            if not steps:
                raise UsageError(
                    f"run {run_id} has no steps; give feedback on the whole run (no step)"
                )
            raise UsageError(
                f"run {run_id} has {steps} step{'' if steps == 1 else 's'}; step must be "
                f"from 1 to {steps}, got {step}"
            )
        feedback = Feedback(
            id=f"fb_{uuid.uuid4().hex}",
            run_id=run_id,
            step=step,
            score=score,
            label=label,
            comment=comment,
            by=by,
            at=self._kernel.clock.now(),
        )
        await store.add_feedback(feedback)
        return feedback

    async def feedback(self, run_id: str) -> list[Feedback]:
        """Every piece of feedback on a run, oldest first."""
        await self.store.get_run(run_id)  # RunNotFoundError for an unknown run
        found = await self._feedbacks().list_feedback(FeedbackQuery(run_id=run_id), limit=None)
        return found[::-1]

    async def list_feedback(
        self,
        *,
        run_id: str | None = None,
        label: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        agent: str | None = None,
        limit: int | None = 50,
    ) -> list[Feedback]:
        """Feedback newest first, filtered by run, label, score range, when it was given
        (``since``/``until``: epoch seconds, a ``datetime``, or a ``timedelta`` ago) and the
        run's agent; ``limit=None`` for all of it."""
        now = self._kernel.clock.now()
        query = FeedbackQuery(
            run_id=run_id,
            label=label,
            min_score=min_score,
            max_score=max_score,
            since=moment(since, now, "since"),
            until=moment(until, now, "until"),
            agent=agent,
        )
        return await self._feedbacks().list_feedback(query, limit=limit)

    async def export_eval_cases(
        self,
        output: str | os.PathLike[str] | IO[str] | None = None,
        *,
        label: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        agent: str | None = None,
    ) -> list[dict[str, Any]]:
        """Evaluation cases, one per run with feedback matching the filters (newest
        feedback first), written as JSON lines to ``output`` (a path or an open text file)
        if given, and returned. See the module's docstring for the format."""
        items = await self.list_feedback(
            label=label,
            min_score=min_score,
            max_score=max_score,
            since=since,
            until=until,
            agent=agent,
            limit=None,
        )
        order: list[str] = []
        for item in items:
            if item.run_id not in order:
                order.append(item.run_id)
        cases = []
        for run_id in order:
            record = await self.store.get_run(run_id)
            events = await self.store.load(run_id)
            every = await self.feedback(run_id)
            history: list[Message] = []
            first = events[0] if events else None
            if isinstance(first, RunStarted) and first.history_seq:
                thread = await self.store.thread_history(
                    record.thread_id, upto_seq=first.history_seq
                )
                history = thread.messages
            cases.append(eval_case(record, events, history, every))
        if output is not None:
            _write_lines(output, cases)
        return cases


def eval_case(
    record: RunRecord, events: Sequence[Any], history: Sequence[Message], feedback: list[Feedback]
) -> dict[str, Any]:
    """One run as an evaluation case: its input, thread history, final output as the
    reference, the tool calls it made as the expected calls, labels as tags, and metadata."""
    first = events[0] if events else None
    finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), None)
    calls = [
        {"name": tool.call.name, "arguments": _arguments(tool.call.arguments)}
        for step in steps_of(events)
        for tool in step.tools
    ]
    scored = [f for f in feedback if f.score is not None]
    comments = [f.comment for f in feedback if f.comment]
    return {
        "id": record.run_id,
        "input": first.input if isinstance(first, RunStarted) else record.input,
        "history": [json.loads(encode_message(m)) for m in history],
        "reference": None if finished is None else finished.output,
        "expected_tool_calls": calls,
        "tags": sorted({f.label for f in feedback if f.label}),
        "metadata": {
            "run_id": record.run_id,
            "agent": record.agent,
            "model": record.model,
            "status": record.status,
            "tenant": record.tenant,
            "user": record.user,
            "score": scored[-1].score if scored else None,
            "comment": comments[-1] if comments else None,
            "feedback": [
                {
                    "step": f.step,
                    "score": f.score,
                    "label": f.label,
                    "comment": f.comment,
                    "by": f.by,
                    "at": f.at,
                }
                for f in feedback
            ],
        },
    }


def _arguments(text: str) -> Any:
    """A call's arguments as JSON data when they parse, else the text as it was."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _write_lines(output: str | os.PathLike[str] | IO[str], cases: list[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(case, ensure_ascii=False, default=str) + "\n" for case in cases)
    if isinstance(output, str | os.PathLike):
        with open(output, "w", encoding="utf-8") as file:
            file.write(lines)
    else:
        output.write(lines)
