"""The tool-run effect: run a turn's validated calls (concurrently), journal their results.

A result longer than the tool's cap is cut before it is journaled (once, as the model sees it),
with a note saying so. A call that is not safe to repeat and passed its timeout is journaled as
in doubt (``ToolCallInDoubt``), not finished: the loop then asks a person, as after a crash.
A call that started child runs (delegation, :mod:`keel._runtime.tool_scope`) is journaled with
them, or as waiting (``ToolCallWaiting``) when one of them stopped before ending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keel._core.delegation import CHILD_WAITING, ToolCallWaiting
from keel._core.events import ErrorInfo, Event, ToolCallFinished, ToolCallInDoubt
from keel._core.loop import RunTool, RunTools
from keel._runtime.observers import Observers
from keel._runtime.tool_calls import ToolExecutor, ToolOutcome, cap_result, execute_tool
from keel._runtime.tool_scope import ToolScope, scoped
from keel._tools import RunContext

if TYPE_CHECKING:
    from keel._runtime.driver import RunDriver

__all__ = ["ToolRuns"]


class ToolRuns:
    """Performs :class:`keel._core.loop.RunTools` with an executor (the real one by default;
    replay has one that answers from the journal). ``watchers``: the observers whose tool
    contexts are entered around each call (see :mod:`keel._runtime.observers`); ``kernel``:
    the runtime's, handed to tools that start child runs."""

    commit_first = True

    def __init__(
        self,
        executor: ToolExecutor = execute_tool,
        *,
        watchers: Observers | None = None,
        kernel: Any = None,
    ) -> None:
        self._execute = executor
        self._watchers = watchers
        self._kernel = kernel

    async def perform(self, driver: RunDriver, effect: RunTools) -> None:
        calls = effect.calls
        if len(calls) == 1:
            outcomes: Sequence[tuple[ToolOutcome, float]] = [await self._run_one(driver, calls[0])]
        else:
            outcomes = await asyncio.gather(*(self._run_one(driver, call) for call in calls))
        now = driver.clock.now()
        limit = driver.state.limits.max_tool_result_chars
        events: list[Event] = []
        deferrable = True
        for planned, (outcome, latency) in zip(calls, outcomes, strict=True):
            if outcome.waiting is not None:
                deferrable = False
                child, why = outcome.waiting
                reason = ErrorInfo(code=CHILD_WAITING, message=why)
                events.append(
                    ToolCallWaiting(
                        step=effect.step, call=planned.call, child=child, reason=reason, at=now
                    )
                )
                continue
            if outcome.timed_out:
                deferrable = False
                reason = outcome.error or ErrorInfo(code="tool_timeout", message="timed out")
                events.append(
                    ToolCallInDoubt(step=effect.step, call=planned.call, reason=reason, at=now)
                )
                continue
            deferrable = deferrable and planned.spec.safe_to_repeat
            full: int | None
            if outcome.result_chars is not None:  # cut already (a replay of a cut result)
                text, full = outcome.result, outcome.result_chars
            else:
                text, full = cap_result(outcome.result, planned.spec.max_result_chars or limit)
            events.append(
                ToolCallFinished(
                    step=effect.step,
                    call=planned.call,
                    result=text,
                    error=outcome.error,
                    latency_ms=latency,
                    attempts=outcome.attempts,
                    result_chars=full,
                    children=outcome.children,
                    at=now,
                )
            )
        driver.deferrable = deferrable
        driver.record(events)

    async def _run_one(self, driver: RunDriver, planned: RunTool) -> tuple[ToolOutcome, float]:
        state = driver.state
        call = planned.call
        context: RunContext[Any] = RunContext(
            deps=driver.deps,
            run_id=state.run_id,
            thread_id=state.thread_id,
            agent=state.agent,
            step=state.step,
            tool_name=call.name,
            tool_call_id=call.id,
            idempotency_key=planned.idempotency_key,
            usage=state.usage,
            attempt=planned.attempt,
        )
        timeout_s = planned.spec.timeout_s or state.limits.tool_timeout_s
        clock = driver.clock
        sleep = getattr(clock, "sleep", None) or asyncio.sleep
        tool = driver.tools[call.name]
        started = clock.monotonic()
        watchers = self._watchers
        scope = ToolScope(kernel=self._kernel, driver=driver, planned=planned)
        with scoped(scope):
            if watchers is not None and watchers.watch_tools:
                with watchers.tool_context(context):
                    outcome = await self._execute(
                        tool, context, planned.arguments, timeout_s=timeout_s, sleep=sleep
                    )
            else:
                outcome = await self._execute(
                    tool, context, planned.arguments, timeout_s=timeout_s, sleep=sleep
                )
        if scope.children or scope.waiting is not None:
            children = tuple(scope.children.values())
            outcome = replace(outcome, children=children, waiting=scope.waiting)
        return outcome, (clock.monotonic() - started) * 1000
