"""The handoff effect: the run goes on with another agent, and so does its thread.

The model called a ``transfer_to_<name>`` tool. The agent it names is asked, once, for its
instructions and tools for this run (as at a run's start), and the call's result and a
``HandedOff`` event carrying that answer and the agent's models are journaled together. The
driver then goes on with the new agent: the next model call already has its instructions,
tools, checks and model. Replay answers the effect from the journal instead
(:class:`JournaledHandOffs`): nothing is asked again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keel._context import AgentContext
from keel._core.eventbase import ErrorInfo, Event
from keel._core.events_handoff import HandedOff
from keel._core.events_run import RunFinished
from keel._core.events_tools import ToolCallFinished
from keel._core.loop import HandOff
from keel._runtime.toolsets import open_agent
from keel.errors import KeelError

if TYPE_CHECKING:
    from keel._agent import Agent
    from keel._runtime.composition import ModelComposer
    from keel._runtime.driver import RunDriver

__all__ = ["HandOffs", "JournaledHandOffs", "handed_result"]


def handed_result(agent: str) -> str:
    """What the model sees as the result of a handoff call to ``agent``."""
    return f"Transferred to {agent}: it answers from here on."


def _target(driver: RunDriver, effect: HandOff) -> Agent[Any] | None:
    for target in driver.agent.handoffs.values():
        if target.name == effect.agent:
            return target
    return None


class HandOffs:
    """Performs :class:`keel._core.loop.HandOff` in a live run."""

    commit_first = False

    def __init__(self, composer: ModelComposer) -> None:
        self._composer = composer

    async def perform(self, driver: RunDriver, effect: HandOff) -> None:
        state = driver.state
        now = driver.clock.now()
        target = _target(driver, effect)
        if target is None:  # the agent driving the run no longer hands off there
            unknown = ErrorInfo(
                code="handoff_unknown",
                message=f"agent '{driver.agent.name}' cannot hand the run to '{effect.agent}'",
            )
            driver.record((_refused(effect, unknown, now),))
            return
        context = AgentContext(
            deps=target.deps if driver.deps_from_agent else driver.deps,
            run_id=state.run_id,
            thread_id=state.thread_id,
            agent=target.name,
            now=now,
            input=state.input,
            tenant=state.tenant,
            user=state.user,
            roles=state.roles,
        )
        opening = await open_agent(target, context)
        error: ErrorInfo | None = opening.error
        chain = None
        if error is None:
            try:
                chain = self._composer.for_agent(target)
            except KeelError as exc:
                error = ErrorInfo(code=exc.code, message=exc.message)
        if error is not None or chain is None:
            assert error is not None
            failure = ErrorInfo(
                code=error.code,
                message=f"the run could not be handed to agent '{target.name}': {error.message}",
            )
            driver.record(
                (
                    _refused(effect, failure, now),
                    RunFinished(status="failed", error=failure, at=now),
                )
            )
            return
        finished = ToolCallFinished(
            step=effect.step, call=effect.call, result=handed_result(target.name), at=now
        )
        handed = HandedOff(
            step=effect.step,
            call_id=effect.call.id,
            from_agent=driver.agent.name,
            to_agent=target.name,
            instructions=opening.instructions,
            tools=opening.tools,
            models=chain.names,
            at=now,
        )
        driver.record((finished, handed))
        # Durable before the new agent's model is asked (results deferred by the turn's
        # tools, if any, go with it).
        driver.deferrable = False
        driver.switch(target, chain.models)


class JournaledHandOffs:
    """Performs :class:`HandOff` in a replay: the journaled result and handoff, as they
    were; the agent's instructions and tools are not asked again."""

    commit_first = False

    def __init__(self, events: Sequence[Event]) -> None:
        self._found: dict[str, list[Event]] = {}
        for event in events:
            if isinstance(event, HandedOff):
                self._found.setdefault(event.call_id, []).append(event)
            elif isinstance(event, ToolCallFinished):
                self._found.setdefault(event.call.id, []).insert(0, event)

    async def perform(self, driver: RunDriver, effect: HandOff) -> None:
        found = self._found.get(effect.call.id, [])
        handed = next((e for e in found if isinstance(e, HandedOff)), None)
        finished = next((e for e in found if isinstance(e, ToolCallFinished)), None)
        target = _target(driver, effect)
        if handed is None or finished is None or target is None:
            error = ErrorInfo(
                code="handoff_unknown",
                message=f"replay: the original run made no handoff to '{effect.agent}' here",
            )
            driver.record((_refused(effect, error, driver.clock.now()),))
            return
        driver.record((finished, handed))
        driver.switch(target, ())


def _refused(effect: HandOff, error: ErrorInfo, now: float) -> ToolCallFinished:
    return ToolCallFinished(
        step=effect.step, call=effect.call, result=f"Error: {error.message}", error=error, at=now
    )
