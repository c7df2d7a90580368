"""Following a run: its journal events as they become durable, and its model text as it
streams.

Events are numbered by their place in the journal (``seq``, from 1), so a follower that lost
its connection picks up exactly where it left off (``after=seq``). The follower reads the
journal from the store (``load(after_seq=...)``) and sleeps until the store says the run
changed: in this process at once, in others through the store's own signal (PostgreSQL
``NOTIFY``, SQLite's data version). The model's text deltas are not journaled; they reach
followers in the process that drives the run, and in others through Redis when
``KEEL_REDIS_URL`` is set; asking for them makes the driver stream from the model. A piece of
text never comes after the answer it belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from keel._core.events import FINISHED, Event, ModelResponded
from keel._runtime.kernel import Kernel
from keel._runtime.waits import pause, watching
from keel.errors import UsageError

__all__ = ["RunDelta", "RunEvent", "follow"]

_STOPPED = frozenset({"paused", "awaiting_approval"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvent:
    """One journal event of a run, numbered by its place in the journal (from 1)."""

    run_id: str
    seq: int
    event: Event


@dataclass(frozen=True, slots=True, kw_only=True)
class RunDelta:
    """A piece of the model's text for step ``step``, as it streams (not journaled)."""

    run_id: str
    step: int
    text: str


async def follow(
    k: Kernel,
    run_id: str,
    *,
    after: int = 0,
    deltas: bool = False,
    until: Literal["stopped", "finished"] = "stopped",
) -> AsyncIterator[RunEvent | RunDelta]:
    """Yield ``run_id``'s events after ``after`` as they become durable (and its text deltas
    with ``deltas``), until the run stops (``until="stopped"``: it finished, paused or waits
    for a person) or finishes (``until="finished"``: through pauses)."""
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise UsageError(f"after must be a sequence number of 0 or more, got {after!r}")
    if until not in ("stopped", "finished"):
        raise UsageError(f"until must be 'stopped' or 'finished', got {until!r}")
    await k.store.get_run(run_id)  # an unknown run fails here, clearly
    seq = after
    answered = 0  # the last step whose answer was yielded: its text comes no more
    async with contextlib.AsyncExitStack() as stack:
        changes = await stack.enter_async_context(watching(k.store, run_id))
        queue = await stack.enter_async_context(k.followers.follow(run_id)) if deltas else None
        while True:
            # The summary first: events committed with a final status are then in the load.
            record = await k.store.get_run(run_id)
            events = await k.store.load(run_id, after_seq=seq)
            # Text first, what came while reading too: it was streamed before the answer it
            # belongs to became durable, and a run that ended here is followed no further.
            while queue is not None and not queue.empty():
                step, text = queue.get_nowait()
                if step > answered:
                    yield RunDelta(run_id=run_id, step=step, text=text)
            for event in events:
                seq += 1
                if isinstance(event, ModelResponded):
                    answered = max(answered, event.step)
                yield RunEvent(run_id=run_id, seq=seq, event=event)
            if record.status in FINISHED or (until == "stopped" and record.status in _STOPPED):
                return
            if queue is None or changes is None:
                await pause(k, changes, 1.0)
                continue
            change = asyncio.ensure_future(changes.wait(1.0))
            try:
                while not change.done():
                    piece = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait(
                        {change, piece}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if piece in done:
                        step, text = piece.result()
                        # A piece from another process may come after its answer did: the
                        # answer carried the whole text, so it is dropped.
                        if step > answered:
                            yield RunDelta(run_id=run_id, step=step, text=text)
                    else:
                        piece.cancel()
            finally:
                change.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await change
