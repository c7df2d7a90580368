"""The runtime's methods for the links between runs that delegate and their child runs (a part
of :class:`keel.Runtime`, kept in a module of its own).

A child names its parent in its ``RunStarted``. A parent names each child in the result
(``ToolCallFinished.children``) or the wait (``ToolCallWaiting``) of the call that started it;
while that call is under way, the child is found by its id, derived from the parent's run and
call (:func:`keel._core.delegation.child_run_id`). So both directions are read from journals,
with no index of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from keel._core.delegation import ToolCallWaiting, child_run_id
from keel._core.events import RunStarted, ToolCallFinished, ToolCallStarted
from keel.errors import RunNotFoundError
from keel.ports import RunRecord, Store

__all__ = ["DelegationMethods", "ParentLink"]

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
        its calls started them, as they stand now. Raises ``RunNotFoundError`` for an
        unknown run."""
        events = await self.store.load(run_id)
        if not events:
            raise RunNotFoundError(run_id)
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
            record = await self._record(child_id)
            if record is not None:
                records[child_id] = record
        # Calls under way name no children yet: look for them where their ids must be.
        for call_id in unfinished:
            for record in await self._probe(run_id, call_id):
                records.setdefault(record.run_id, record)
        return sorted(records.values(), key=lambda r: (r.created_at, r.run_id))

    async def parent(self, run_id: str) -> ParentLink | None:
        """The run that started ``run_id`` as a child, with its step and call, or ``None``
        for a run nobody delegated to."""
        events = await self.store.load(run_id)
        if not events:
            raise RunNotFoundError(run_id)
        first = events[0]
        if not isinstance(first, RunStarted) or first.parent_run_id is None:
            return None
        return ParentLink(
            run_id=first.parent_run_id, step=first.parent_step, call_id=first.parent_call_id
        )

    async def _record(self, run_id: str) -> RunRecord | None:
        try:
            return await self.store.get_run(run_id)
        except RunNotFoundError:
            return None  # deleted since

    async def _probe(self, run_id: str, call_id: str) -> list[RunRecord]:
        one = await self._record(child_run_id(run_id, call_id))
        if one is not None:
            return [one]
        found: list[RunRecord] = []
        for index in range(_MAX_PROBE):
            record = await self._record(child_run_id(run_id, call_id, index))
            if record is None:
                break
            found.append(record)
        return found
