"""A run's first event: which agent takes the message, and what that agent says for the run.

A thread that was handed to another agent stays with it: a new message on the thread, sent
to any agent whose handoffs lead there, is run by the agent the thread's latest handoff
went to (see :func:`thread_agent`). That agent is then asked, once, for its instructions and
tools for this run (:func:`keel._runtime.toolsets.open_agent`), and the answer is journaled
in ``RunStarted``: resumes, replays and ``keel runs show`` read it from there.
"""

from __future__ import annotations

from typing import Any, cast

from typing_extensions import TypeVar

from keel._agent import Agent, handoff_tool_name
from keel._context import AgentContext
from keel._core.eventbase import ErrorInfo
from keel._core.events_run import RunFinished, RunStarted
from keel._core.limits import Limits
from keel._core.messages import ToolResultMessage
from keel._runtime.composition import Chain
from keel._runtime.inputs import Principal
from keel._runtime.kernel import Kernel
from keel._runtime.toolsets import open_agent
from keel._runtime.tracecontext import caller_trace_context

__all__ = ["HANDOFF_PREFIX", "context_of", "started_event", "thread_agent"]

OutputT = TypeVar("OutputT", default=Any)

HANDOFF_PREFIX = handoff_tool_name("")


async def thread_agent(k: Kernel, agent: Agent[OutputT], thread: str | None) -> Agent[OutputT]:
    """The agent that runs a new message on ``thread``: the one the thread's latest handoff
    went to, if ``agent`` can reach it through its handoffs; else ``agent`` itself."""
    if thread is None or not agent.handoffs:
        return agent
    history = await k.store.thread_history(thread)
    for message in reversed(history.messages):
        if (
            isinstance(message, ToolResultMessage)
            and not message.is_error
            and message.name.startswith(HANDOFF_PREFIX)
        ):
            for target in agent.reachable().values():
                if handoff_tool_name(target.name) == message.name:
                    return cast(Agent[OutputT], target)
            break
    return agent


def context_of(
    agent: Agent[Any],
    *,
    run_id: str,
    thread_id: str,
    text: str,
    principal: Principal,
    deps: Any,
    now: float,
) -> AgentContext[Any]:
    """What ``agent``'s instructions function and tool filter learn about a run."""
    return AgentContext(
        deps=deps,
        run_id=run_id,
        thread_id=thread_id,
        agent=agent.name,
        now=now,
        input=text,
        tenant=principal.tenant,
        user=principal.user,
        roles=principal.roles,
    )


async def started_event(
    k: Kernel,
    agent: Agent[Any],
    *,
    chain: Chain,
    run_id: str,
    thread_id: str,
    text: str,
    limits: Limits | None,
    principal: Principal,
    deps: Any,
) -> tuple[RunStarted, RunFinished | None]:
    """The ``RunStarted`` of a new run, with the instructions and tools ``agent`` gives it;
    and, when asking the agent failed, the ``RunFinished`` that fails the run."""
    now = k.clock.now()
    context = context_of(
        agent,
        run_id=run_id,
        thread_id=thread_id,
        text=text,
        principal=principal,
        deps=deps,
        now=now,
    )
    opening = await open_agent(agent, context)
    output = agent.loop_spec.output
    started = RunStarted(
        run_id=run_id,
        thread_id=thread_id,
        agent=agent.name,
        model=chain.name,
        models=chain.names,
        input=k.scrubber.text(text),
        instructions=opening.instructions,
        tools=opening.tools,
        limits=limits or agent.limits,
        output_schema=None if output is None else dict(output.schema),
        agent_ref=k.refs.get(agent.name),
        tenant=principal.tenant,
        user=principal.user,
        roles=principal.roles,
        trace_context=caller_trace_context(),
        at=now,
    )
    failed = None
    if opening.error is not None:
        failed = RunFinished(status="failed", error=_failure(opening.error), at=now)
    return started, failed


def _failure(error: ErrorInfo) -> ErrorInfo:
    return ErrorInfo(code=error.code, message=f"the run could not start: {error.message}")
