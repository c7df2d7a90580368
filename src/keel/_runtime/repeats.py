"""A request repeated with its idempotency key: the run the first one created stands for it.

``submit`` and ``run`` pass their key to the store, which creates the run and keeps the key in
one atomic step, or refuses with :class:`keel.errors.RunExistsError` naming the run the key
created. A caller that lost the answer (a crash, a timeout, a redelivered message) asks again
with the same key and gets that run: never a second one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typing_extensions import TypeVar

from keel._agent import Agent
from keel._runtime.kernel import joined
from keel._runtime.result import RunResult
from keel.errors import RunExistsError, UsageError

if TYPE_CHECKING:
    from keel._runtime.running import Runs

__all__ = ["rejoin", "same_request"]

OutputT = TypeVar("OutputT", default=Any)


def same_request(agent: Agent[Any], exists: RunExistsError) -> str:
    """The id of the run ``exists`` names, if it is a run of ``agent`` (or of an agent it
    handed the run to); a key reused for another agent is a mistake, not a repeat."""
    if exists.agent != agent.name and exists.agent not in agent.reachable():
        raise UsageError(
            f"idempotency key '{exists.idempotency_key}' was already used for run "
            f"{exists.run_id} of agent '{exists.agent}', not '{agent.name}'; a key stands for "
            "one request: use a new key for a new request"
        )
    return exists.run_id


async def rejoin(
    runs: Runs,
    agent: Agent[OutputT],
    exists: RunExistsError,
    *,
    deps: Any,
    queue_timeout_s: float,
) -> RunResult[OutputT]:
    """``run()`` repeated: the first call's run, driven here when nobody drives it (its caller
    died, or it waits first in its thread's queue), else waited for."""
    run_id = same_request(agent, exists)
    k = runs.k
    async with k.drives.exclusive(run_id) as other:
        if other is not None:  # this process drives it: the first call is still under way
            result: RunResult[OutputT] | None = await joined(other)
            if result is not None:  # else that driver let go of it: wait for its turn
                return result
        record = await k.store.get_run(run_id)
        return await runs.wait_turn(agent, run_id, record.thread_id, deps, queue_timeout_s)
