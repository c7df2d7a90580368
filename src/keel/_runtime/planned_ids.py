"""Submitting a run under an id chosen in advance, so that submitting it twice is refused.

A scheduler that dies between taking a fire and submitting its run cannot know, when it (or
another scheduler) tries again, whether the first submit reached the store. With the run id
fixed in advance, the retry is harmless: the store refuses a second run with an existing id
(:class:`keel.errors.JournalConflictError`), so the fire runs once.

The runtime makes a run's id with the ``new_id`` callable it was given; :func:`submit_as`
wraps it once per runtime with :class:`PlannedIds`, which hands out the planned id to the
submit of the current task only (a context variable), and every other id as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from keel.errors import StoreError

if TYPE_CHECKING:
    from keel._agent import Agent
    from keel._runtime.runtime import Runtime

__all__ = ["PlannedIds", "submit_as"]

_PLANNED: ContextVar[list[str] | None] = ContextVar("keel_planned_run_id", default=None)


class PlannedIds:
    """A runtime's ``new_id``, which gives the planned id once when one is planned."""

    def __init__(self, made: Callable[[float], str]) -> None:
        self._made = made

    def __call__(self, now: float) -> str:
        planned = _PLANNED.get()
        if planned:
            return planned.pop()
        return self._made(now)


async def submit_as(
    runtime: Runtime,
    run_id: str,
    agent: Agent[Any],
    input: str,
    *,
    thread: str | None = None,
    tenant: str | None = None,
    user: str | None = None,
    roles: Sequence[str] = (),
) -> str:
    """``runtime.submit(...)`` with ``run_id`` as the run's id. A run with that id in the
    store raises :class:`keel.errors.JournalConflictError` and submits nothing."""
    kernel = runtime._kernel
    if not isinstance(kernel.new_id, PlannedIds):
        kernel.new_id = PlannedIds(kernel.new_id)
    token = _PLANNED.set([run_id])
    try:
        made = await runtime.submit(
            agent, input, thread=thread, tenant=tenant, user=user, roles=roles
        )
    finally:
        _PLANNED.reset(token)
    if made != run_id:  # the runtime made its id another way: a fire could then run twice
        raise StoreError(
            f"the run was submitted as {made}, not as the planned {run_id}; this Keel's "
            "runtime no longer makes run ids through new_id (report this as a bug)"
        )
    return made
