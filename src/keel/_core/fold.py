"""A run's state as a fold over its journal.

``fold(events, history)`` rebuilds the state from scratch; ``apply(state, event)`` advances it
by one event, in place, through the event's own ``fold`` method (one registry of kinds, no
switch over types). ``history`` is the part of the thread's conversation the run was given:
:func:`history_ref` says which part the journal recorded, and :meth:`HistoryRef.select` cuts
it from the thread's messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from keel._core.eventbase import Event
from keel._core.events_run import RunDequeued, RunStarted
from keel._core.messages import Message, SystemMessage, UserMessage
from keel._core.state import RunState

__all__ = ["HistoryRef", "apply", "fold", "history_ref", "start", "summary_message"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRef:
    """Which thread messages a run was given: those up to ``seq`` (``None``: a journal from
    before sequence numbers, which gives the first ``count``), from index ``start`` on, with
    the earlier ones summed up in ``summary`` when the agent summarizes."""

    seq: int | None
    count: int = 0
    start: int = 0
    summary: str | None = None

    def select(self, messages: Sequence[Message]) -> list[Message]:
        """The run's history out of the thread's messages up to ``seq``."""
        if self.seq is None:
            return list(messages[: self.count])
        return list(messages[self.start :])


def history_ref(events: Sequence[Event]) -> HistoryRef | None:
    """Where a journal says its run's history comes from; ``None``: no history (yet)."""
    first = events[0] if events else None
    if not isinstance(first, RunStarted):
        return None
    if first.queued:
        for event in events:
            if isinstance(event, RunDequeued):
                return HistoryRef(
                    seq=event.history_seq,
                    count=event.history_count,
                    start=event.history_from,
                    summary=event.history_summary,
                )
        return None
    if first.history_seq is None and not first.history_count:
        return None
    return HistoryRef(
        seq=first.history_seq,
        count=first.history_count,
        start=first.history_from,
        summary=first.history_summary,
    )


def summary_message(summary: str) -> SystemMessage:
    """How the summary of the conversation left out of a run's history is shown to the model."""
    return SystemMessage(content=f"Summary of the earlier conversation:\n{summary}")


def start(
    event: RunStarted, history: Sequence[Message] = (), *, summary: str | None = None
) -> RunState:
    """The state right after ``event``, given the run's history (already selected)."""
    messages: list[Message] = []
    if event.instructions:
        messages.append(SystemMessage(content=event.instructions))
    if summary:
        messages.append(summary_message(summary))
    messages.extend(history)
    first_own = len(messages)
    messages.append(UserMessage(content=event.input))
    return RunState(
        run_id=event.run_id,
        thread_id=event.thread_id,
        agent=event.agent,
        model=event.model,
        models=event.models,
        tools=event.tools,
        instructed=bool(event.instructions),
        input=event.input,
        limits=event.limits,
        status="queued" if event.queued else "running",
        messages=messages,
        history_count=event.history_count,
        first_own_message=first_own,
        started_at=event.at,
        active_since=event.at,
        updated_at=event.at,
        queued_since=event.at if event.queued else 0.0,
        event_count=1,
        agent_ref=event.agent_ref,
        history_seq=event.history_seq,
        forked_from=event.forked_from,
        parent_run_id=event.parent_run_id,
        tenant=event.tenant,
        user=event.user,
        roles=event.roles,
        trace_context=event.trace_context,
    )


def apply(state: RunState, event: Event) -> RunState:
    """Advance ``state`` by one event (in place) and return it."""
    state.event_count += 1
    state.updated_at = event.at
    event.fold(state)
    return state


def fold(events: Iterable[Event], history: Sequence[Message] = ()) -> RunState:
    """Rebuild a run's state from its events (the first must be ``RunStarted``) and the
    history :func:`history_ref` names, already selected."""
    events = list(events)
    first = events[0] if events else None
    if not isinstance(first, RunStarted):
        raise ValueError("a run's journal must begin with a RunStarted event")
    ref = history_ref(events)
    state = start(first, history, summary=None if ref is None else ref.summary)
    for event in events[1:]:
        apply(state, event)
    return state
