"""The runtime's methods for the links between runs that delegate and their child runs (a part
of :class:`keel.Runtime`, kept in a module of its own).

A child names its parent in its ``RunStarted``. A parent names each child in the result
(``ToolCallFinished.children``) or the wait (``ToolCallWaiting``) of the call that started it;
while that call is under way, the child is found by its id, derived from the parent's run and
call (:func:`keel._core.delegation.child_run_id`). So both directions are read from journals,
with no index of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keel._core.delegation import ToolCallWaiting, child_run_id
from keel._core.events import Event, RunStarted, ToolCallFinished, ToolCallStarted
from keel.errors import RunNotFoundError
from keel.ports import RunRecord, Store

__all__ = ["DelegationMethods", "ParentLink", "children_in", "parent_in"]

#: How many places of a fan-out are looked for while its call is under way.
_MAX_PROBE = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentLink:
    """Where a child run comes from: the parent run, and the step and call that started it."""

    run_id: str
    step: int | None
    call_id: str | None


class DelegationMethods:
    """``children`` and ``parent`` of runs; see :class:`keel.Runtime`."""

    store: Store

    async def children(self, run_id: str) -> list[RunRecord]:
        """The child runs ``run_id`` started (agents used as tools, fan-outs), in the order
        they were created, as they stand now. Raises ``RunNotFoundError`` for an unknown
        run."""
        return await children_in(self.store, run_id, await self.store.load(run_id))

    async def parent(self, run_id: str) -> ParentLink | None:
        """The run that started ``run_id`` as a child, with its step and call, or ``None``
        for a run nobody delegated to. Raises ``RunNotFoundError`` for an unknown run."""
        return parent_in(await self.store.load(run_id))


def parent_in(events: Sequence[Event]) -> ParentLink | None:
    """The parent a run's journal names (in its ``RunStarted``), if any."""
    first = events[0] if events else None
    if not isinstance(first, RunStarted) or first.parent_run_id is None:
        return None
    return ParentLink(
        run_id=first.parent_run_id, step=first.parent_step, call_id=first.parent_call_id
    )


async def children_in(store: Store, run_id: str, events: Sequence[Event]) -> list[RunRecord]:
    """The children the journal ``events`` of ``run_id`` names, and those of its calls under
    way (found by their derived ids), as the store has them now."""
    found: dict[str, None] = {}
    unfinished: dict[str, None] = {}
    for event in events:
        if isinstance(event, ToolCallStarted):
            unfinished[event.call.id] = None
        elif isinstance(event, ToolCallFinished):
            unfinished.pop(event.call.id, None)
            found.update((child.run_id, None) for child in event.children)
        elif isinstance(event, ToolCallWaiting):
            found[event.child.run_id] = None
    records: dict[str, RunRecord] = {}
    for child_id in found:
        record = await _record(store, child_id)
        if record is not None:
            records[child_id] = record
    # Calls under way name no children yet: look for them where their ids must be.
    for call_id in unfinished:
        for record in await _probe(store, run_id, call_id):
            records.setdefault(record.run_id, record)
    return sorted(records.values(), key=lambda r: (r.created_at, r.run_id))


async def _record(store: Store, run_id: str) -> RunRecord | None:
    try:
        return await store.get_run(run_id)
    except RunNotFoundError:
        return None  # never started, or deleted since


async def _probe(store: Store, run_id: str, call_id: str) -> list[RunRecord]:
    one = await _record(store, child_run_id(run_id, call_id))
    if one is not None:
        return [one]
    found: list[RunRecord] = []
    for index in range(_MAX_PROBE):
        record = await _record(store, child_run_id(run_id, call_id, index))
        if record is None:
            break
        found.append(record)
    return found
