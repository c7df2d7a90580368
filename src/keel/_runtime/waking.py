"""What a run's end means for the runs it is linked to by delegation (a journal hook).

- A parent whose delegated call waits for a child (``ToolCallWaiting``) is paused with the
  reason ``child_waiting``, naming the child. When that child ends (a person decided on it and
  it completed, or it failed or was cancelled), the parent is queued again (``RunQueued``): a
  worker or ``recover()`` continues it, or ``resume`` does it here; its call runs again and
  picks the child's result up. A parent that is not paused for that child is left alone.
- A parent that is cancelled cancels its children that have not ended (and they theirs).

A failure here is logged, never raised into the run that ended: the parent can always be
resumed, and a child cancelled, by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from keel._core.delegation import CHILD_WAITING
from keel._core.events import FINISHED, Event, RunFinished
from keel._core.state import RunState
from keel._runtime.running import Runs
from keel._runtime.runtime_delegation import children_in
from keel._runtime.stopping import cancel
from keel.errors import KeelError

__all__ = ["DelegationLinks"]

_log = logging.getLogger("keel.runtime")


class DelegationLinks:
    """A journal hook: wakes a paused parent when its waited-for child ends, and cancels the
    open children of a cancelled run."""

    def __init__(self, runs: Runs) -> None:
        self._runs = runs
        self._wake: list[tuple[str, str]] = []
        self._cancelled: list[str] = []

    async def journaled(self, state: RunState, events: Sequence[Event]) -> None:
        """Note a run that just ended (what it means is done at the next flush)."""
        if state.status not in FINISHED or not any(isinstance(e, RunFinished) for e in events):
            return
        if state.parent_run_id is not None:
            self._wake.append((state.parent_run_id, state.run_id))
        if state.status == "cancelled":
            self._cancelled.append(state.run_id)

    async def flush(self) -> None:
        """Wake the parents, cancel the children."""
        wake, self._wake = self._wake, []
        cancelled, self._cancelled = self._cancelled, []
        for parent, child in wake:
            try:
                await self._wake_parent(parent, child)
            except (KeelError, OSError) as exc:
                _log.warning(
                    "run %s ended but its parent %s could not be queued again (%s); resume "
                    "the parent by hand",
                    child,
                    parent,
                    exc,
                )
        for run_id in cancelled:
            try:
                await self._cancel_children(run_id)
            except (KeelError, OSError) as exc:
                _log.warning(
                    "run %s was cancelled but its children could not all be (%s); cancel "
                    "them by hand (Runtime.children lists them)",
                    run_id,
                    exc,
                )

    async def _wake_parent(self, parent: str, child: str) -> None:
        if self._runs.k.drives.running(parent):
            return  # driven here (its call drove the child): it is not paused
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

    async def _cancel_children(self, run_id: str) -> None:
        k = self._runs.k
        for child in await children_in(k.store, run_id, await k.store.load(run_id)):
            if child.status not in FINISHED:
                await cancel(k, child.run_id, reason=f"its parent run {run_id} was cancelled")
