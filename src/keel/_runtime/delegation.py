"""Delegation: an agent used as another agent's tool (``agent.as_tool()``), and a fan-out of
several agents from inside a tool (:func:`fan_out`).

Each delegated task is a **child run**: a run of its own, with its own journal and thread, on
the parent's store, for the parent's tenant and user. Its id is derived from the parent's run
id and call id (:func:`keel._core.delegation.child_run_id`), so a parent that crashed and
runs the call again (delegating tools are safe to repeat) finds the child it started: a
finished child's result is reused, an interrupted one is resumed, one driven elsewhere is
waited for. Nothing a child did is done twice, and its cost and tokens are added to the
parent's once, with the parent call's result.

A child that stops before ending (it waits for a person's decision, or a limit paused it)
stops the parent: the parent's call is journaled as waiting and the parent pauses with the
reason ``child_waiting``, naming the child. Decide on the child (``keel approve CHILD``), then
resume the parent: its call runs again and picks the child's result up.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keel._agent import Agent
from keel._core.delegation import ChildRun, child_run_id
from keel._core.eventbase import Event
from keel._core.events import FINISHED
from keel._core.fold import apply, start
from keel._runtime.inputs import Principal, check_agent, check_input
from keel._runtime.kernel import joined
from keel._runtime.records import record_of
from keel._runtime.result import RunResult
from keel._runtime.running import UNSET, Runs
from keel._runtime.starting import started_event
from keel._runtime.tool_scope import ToolScope, current_scope
from keel._tools import RunContext, Tool, ToolError, tool
from keel.errors import JournalConflictError, LeaseLostError, RunLeasedError, UsageError

if TYPE_CHECKING:
    from keel._runtime.kernel import Kernel

__all__ = ["DelegationTool", "delegated_agents", "delegation_tool", "fan_out"]

_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")
#: How long a delegated call may take beyond the child's own wall-time limit.
_TIMEOUT_MARGIN_S = 60.0


class DelegationTool(Tool):
    """A tool that hands its input to ``agent`` as a child run (see :meth:`keel.Agent.as_tool`)."""

    agent: Agent[Any]


def delegated_agents(agent: Agent[Any]) -> list[Agent[Any]]:
    """The agents ``agent``'s tools delegate to (a runtime that knows ``agent`` knows them
    too, so it can recover, continue and decide on their runs)."""
    return [t.agent for t in agent.tools if isinstance(t, DelegationTool)]


def delegation_tool(
    agent: Agent[Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
) -> DelegationTool:
    """A tool that runs ``agent`` on the model's request as a child run; see
    :meth:`keel.Agent.as_tool`."""
    check_agent(agent)

    async def delegate(ctx: RunContext[Any], input: str) -> Any:
        """Args:
        input: The task for the agent, in words, with everything it needs to know.
        """
        scope = _scope(ctx, f"agent '{agent.name}' as a tool")
        [result] = await _delegate(scope, ctx, [(agent, input)], indexed=False, concurrency=1)
        if result.status != "completed":
            code = result.reason.code if result.reason else result.status
            why = result.reason.message if result.reason else "no reason recorded"
            raise ToolError(
                f"the delegated run {result.run_id} (agent '{agent.name}') {result.status}: "
                f"[{code}] {why}"
            )
        return result.final_output

    delegate.__name__ = _TOOL_NAME.sub("_", agent.name)[:64]
    # The child pauses itself at its wall-time limit, and a tool of its own cannot outlast its
    # timeout: past both (and a margin), something is wrong.
    limit = agent.limits.max_wall_time_s + agent.limits.tool_timeout_s + _TIMEOUT_MARGIN_S
    made = tool(
        name=name,
        description=description or _description(agent),
        idempotent=True,  # the child is keyed by the call: running the call again joins it
        timeout_s=timeout_s if timeout_s is not None else limit,
    )(delegate)
    found = DelegationTool(made.function, made.spec, made.context_param)
    found.agent = agent
    return found


def _description(agent: Agent[Any]) -> str:
    # Instructions made per run (a function) are not known here: the name says it all then.
    text = agent.instructions if isinstance(agent.instructions, str) else ""
    first = text.strip().split("\n", 1)[0][:300]
    about = f" It is instructed: {first}" if first else ""
    return f"Hand a task to the agent '{agent.name}' and get its answer.{about}"


async def fan_out(
    ctx: RunContext[Any],
    tasks: Sequence[tuple[Agent[Any], str]],
    *,
    max_concurrency: int = 4,
) -> list[RunResult[Any]]:
    """Run several agents on their inputs as child runs of the calling tool's run, at most
    ``max_concurrency`` at a time, and return their results in the order of ``tasks``.

    Call it from a tool (an ``async`` one, with its :class:`keel.RunContext`) that is safe to
    repeat (``@tool(idempotent=True)``): each child's id is derived from the call and its
    place in ``tasks``, so a run that crashed mid-fan-out and runs the call again reuses the
    children that finished and resumes the others. A child that failed is in the list with
    its status and reason; the tool decides what to make of it. If a child stops for a person
    or a limit, the tool stops there (after the others settled) and the run pauses until the
    child is dealt with and the run resumed. What the children cost is added to the run's
    totals with the call's result. Give the tool a ``timeout_s`` long enough for its
    children.
    """
    scope = _scope(ctx, "fan_out")
    spec = scope.planned.spec
    if not spec.safe_to_repeat:
        raise UsageError(
            f"tool '{spec.name}' calls fan_out but is not safe to repeat: a resumed run runs "
            "the call again to collect its children, so declare it @tool(idempotent=True)"
        )
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise UsageError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
    if max_concurrency < 1:
        raise UsageError(f"max_concurrency must be at least 1, got {max_concurrency}")
    checked: list[tuple[Agent[Any], str]] = []
    for item in tasks:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Agent)):
            raise UsageError(f"fan_out takes (agent, input) pairs, got {item!r}")
        checked.append((item[0], check_input(item[1])))
    return await _delegate(scope, ctx, checked, indexed=True, concurrency=max_concurrency)


class _ChildWaitingError(Exception):
    """A child run stopped before ending: the call waits (the scope says for which)."""


def _scope(ctx: RunContext[Any], what: str) -> ToolScope:
    scope = current_scope()
    if scope is None or scope.kernel is None or scope.planned.call.id != ctx.tool_call_id:
        raise UsageError(
            f"{what} starts child runs, so it must be called by a run a keel.Runtime drives "
            "(as a tool of an agent), with that call's RunContext"
        )
    return scope


async def _delegate(
    scope: ToolScope,
    ctx: RunContext[Any],
    tasks: Sequence[tuple[Agent[Any], str]],
    *,
    indexed: bool,
    concurrency: int,
) -> list[RunResult[Any]]:
    kernel: Kernel = scope.kernel
    parent = scope.driver.state
    principal = Principal(tenant=parent.tenant, user=parent.user, roles=parent.roles)
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, agent: Agent[Any], text: str) -> RunResult[Any]:
        child_id = child_run_id(ctx.run_id, ctx.tool_call_id, index if indexed else None)
        async with gate:
            return await _child(
                kernel, agent, child_id=child_id, text=text, ctx=ctx, principal=principal
            )

    if len(tasks) == 1:  # no task of its own for one child (an agent as a tool)
        settled: list[RunResult[Any] | BaseException] = [await one(0, *tasks[0])]
    else:
        settled = await asyncio.gather(
            *(one(i, agent, text) for i, (agent, text) in enumerate(tasks)),
            return_exceptions=True,
        )
    for item in settled:
        if isinstance(item, BaseException):
            raise item
    results: list[RunResult[Any]] = [r for r in settled if isinstance(r, RunResult)]
    for result in results:
        scope.children[result.run_id] = ChildRun(
            run_id=result.run_id,
            agent=result.agent,
            status=result.status,
            usage=result.usage,
            cost_usd=result.cost_usd,
        )
    for result in results:
        if result.status not in FINISHED:
            scope.waiting = (scope.children[result.run_id], _why(result))
            raise _ChildWaitingError(scope.waiting[1])
    return results


def _why(result: RunResult[Any]) -> str:
    """Why the parent waits for the child in ``result``, and what to do."""
    child = f"child run {result.run_id} (agent '{result.agent}')"
    if result.status == "awaiting_approval":
        calls = ", ".join(f"{p.call.id} ({p.call.name}, {p.kind})" for p in result.pending)
        return (
            f"{child} waits for a person's decision on: {calls}; decide on it "
            f"(keel approve {result.run_id}), then resume this run"
        )
    reason = f": [{result.reason.code}] {result.reason.message}" if result.reason else ""
    return f"{child} is {result.status}{reason}; resume it, then resume this run"


async def _child(
    kernel: Kernel,
    agent: Agent[Any],
    *,
    child_id: str,
    text: str,
    ctx: RunContext[Any],
    principal: Principal,
) -> RunResult[Any]:
    """Start the child run ``child_id`` and drive it here; if it exists (the call runs
    again), join it where it stands."""
    runs = Runs(kernel)
    kernel.register(agent)
    async with kernel.drives.exclusive(child_id) as other:
        if other is not None:  # this process drives it already
            with contextlib.suppress(LeaseLostError):  # then it is driven elsewhere: join it
                found: RunResult[Any] | None = await joined(other)
                if found is not None:  # else that driver let go of it: join it as it stands
                    return found
            return await _join(kernel, runs, agent, child_id)
        chain = kernel.composer.for_agent(agent)
        template, failed = await started_event(
            kernel,
            agent,
            chain=chain,
            run_id=child_id,
            thread_id=child_id,
            text=text,
            limits=None,
            principal=principal,
            deps=agent.deps,
        )
        started = replace(
            template,
            parent_run_id=ctx.run_id,
            parent_step=ctx.step,
            parent_call_id=ctx.tool_call_id,
        )
        events: list[Event] = [started]
        state = start(started)
        if failed is not None:  # its instructions or tools could not be had: it fails
            apply(state, failed)
            events.append(failed)
        try:
            lease = await kernel.store.start_run(
                child_id,
                events,
                record=record_of(state, len(events)),
                owner=kernel.driver_owner(),
                ttl_s=kernel.lease_ttl_s,
            )
        except JournalConflictError:
            lease = None  # it exists: the call runs again after a crash or a pause
        if lease is not None:
            kernel.observed(state, events)
            if failed is not None:
                await kernel.store.release_lease(lease)
                return kernel.result(agent, state)
            with contextlib.suppress(LeaseLostError):  # another process took it over: join it
                return await runs.drive(agent, state, lease, last_seq=1, chain=chain)
    return await _join(kernel, runs, agent, child_id)


async def _join(kernel: Kernel, runs: Runs, agent: Agent[Any], child_id: str) -> RunResult[Any]:
    """An existing child run, driven on here until it stops: as it is if it ended or waits for
    a person; resumed if it was paused, queued or interrupted; waited for if another process
    drives it (and taken over if that process died)."""
    while True:
        record = await kernel.store.get_run(child_id)
        if record.status in FINISHED or record.status == "awaiting_approval":
            return await runs.result(child_id, agent)
        try:
            return await runs.resume(child_id, agent, limits=None, deps=UNSET, model=None)
        except (RunLeasedError, LeaseLostError):
            # Driven elsewhere: wait for it to stop, or for its lease to run out.
            await runs.wait(child_id, agent, timeout_s=kernel.lease_ttl_s)
        except UsageError:
            # It came to wait for a person since it was read; anything else is a real error.
            if (await kernel.store.get_run(child_id)).status != "awaiting_approval":
                raise
            return await runs.result(child_id, agent)
