"""Putting a parent run back in the queue when the child it waits for ends.

A parent whose delegated call waits for a child (``ToolCallWaiting``) is paused with the
reason ``child_waiting``, naming the child. When that child ends (a person decided on it and
it completed, or it failed or was cancelled), :class:`ParentWaker`, a journal hook, queues the
parent again (``RunQueued``): a worker or ``recover()`` continues it, or ``resume`` does it
here; its call runs again and picks the child's result up. A parent that is not paused for
that child is left alone, and a failure to queue it is logged, never raised into the child's
run: the parent can always be resumed by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from keel._core.delegation import CHILD_WAITING
from keel._core.events import FINISHED, Event, RunFinished
from keel._core.state import RunState
from keel._runtime.running import Runs
from keel.errors import KeelError

__all__ = ["ParentWaker"]

_log = logging.getLogger("keel.runtime")


class ParentWaker:
    """A journal hook that queues a paused parent again when its waited-for child ends."""

    def __init__(self, runs: Runs) -> None:
        self._runs = runs
        self._due: list[tuple[str, str]] = []

    async def journaled(self, state: RunState, events: Sequence[Event]) -> None:
        """Note a child that just ended (its parent is queued at the next flush)."""
        if state.parent_run_id is None or state.status not in FINISHED:
            return
        if any(isinstance(event, RunFinished) for event in events):
            self._due.append((state.parent_run_id, state.run_id))

    async def flush(self) -> None:
        """Queue the parents of the children that ended, if they wait for them."""
        due, self._due = self._due, []
        for parent, child in due:
            try:
                await self._wake(parent, child)
            except (KeelError, OSError) as exc:
                _log.warning(
                    "run %s ended but its parent %s could not be queued again (%s); resume "
                    "the parent by hand",
                    child,
                    parent,
                    exc,
                )

    async def _wake(self, parent: str, child: str) -> None:
        record = await self._runs.k.store.get_run(parent)
        waits_for_it = (
            record.status == "paused"
            and record.reason_code == CHILD_WAITING
            and child in (record.reason or "")
        )
        if waits_for_it:
            await self._runs.requeue(
                parent, limits=None, model=None, reason=f"child run {child} ended"
            )
