"""The check effect: ask the checks of one point about each subject, journal their answers.

Checks run in order; a ``modify`` hands the changed subject to the next one, and the first
``deny`` or ``escalate`` ends the round (:mod:`keel._core.checks`). The answers of one round
are one ``ChecksDecided`` event, so replay reads them back instead of asking again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from keel._core.checks import CheckRecord, CheckRequest, CheckResult
from keel._core.events import ChecksDecided, Event
from keel._core.loop import CheckSubject, RunChecks
from keel._core.messages import ToolCall
from keel._core.state import RunState

if TYPE_CHECKING:
    from keel._runtime.driver import RunDriver

__all__ = ["CheckRuns", "earlier_calls"]


def earlier_calls(state: RunState) -> list[ToolCall]:
    """The run's tool calls that started before this check round: the calls that went through
    (none that a check or a person refused), in order."""
    return list(state.started_calls)


class CheckRuns:
    """Performs :class:`keel._core.loop.RunChecks` with the driver's checks."""

    commit_first = False

    async def perform(self, driver: RunDriver, effect: RunChecks) -> None:
        events: list[Event] = []
        previous = earlier_calls(driver.state) if effect.point == "tool_call" else []
        for subject in effect.subjects:
            decided = await self._round(driver, effect, subject, tuple(previous))
            events.append(decided)
            if subject.call is not None and decided.verdict in ("allow", "modify"):
                previous.append(subject.call)
        driver.record(events)

    async def _round(
        self,
        driver: RunDriver,
        effect: RunChecks,
        subject: CheckSubject,
        previous: tuple[ToolCall, ...],
    ) -> ChecksDecided:
        state = driver.state
        tool = driver.tools.get(subject.call.name) if subject.call is not None else None
        request = CheckRequest(
            point=effect.point,
            run_id=state.run_id,
            thread_id=state.thread_id,
            agent=state.agent,
            step=effect.step,
            text=subject.text,
            call=subject.call,
            arguments=subject.arguments,
            messages=tuple(state.messages) if effect.point == "model_call" else (),
            deps=driver.deps,
            tenant=state.tenant,
            user=state.user,
            roles=frozenset(state.roles),
            side_effects=None if tool is None else tool.spec.side_effects,
            previous_calls=previous,
        )
        records: list[CheckRecord] = []
        verdict: CheckResult = CheckResult.allow()
        replacement: str | None = None
        reason: str | None = None
        for check in driver.checks.get(effect.point, ()):
            answer = await check(request)
            records.append(
                CheckRecord(
                    check=check.name,
                    verdict=answer.verdict,
                    reason=answer.reason,
                    replacement=answer.replacement,
                )
            )
            if answer.verdict == "modify":
                replacement = answer.replacement
                reason = answer.reason
                request = _changed(request, answer.replacement or "")
                verdict = answer
                continue
            if answer.verdict in ("deny", "escalate"):
                verdict = answer
                reason = answer.reason
                break
        final = (
            "modify" if verdict.verdict == "allow" and replacement is not None else verdict.verdict
        )
        if final == "allow" and replacement is None:
            reason = None
        return ChecksDecided(
            step=effect.step,
            point=effect.point,
            subject=subject.subject,
            verdict=final,
            results=tuple(records),
            reason=reason,
            replacement=replacement,
            at=driver.clock.now(),
        )


def _changed(request: CheckRequest, replacement: str) -> CheckRequest:
    """The request the next check sees after a ``modify``."""
    if request.point == "tool_call" and request.call is not None:
        return replace(request, call=replace(request.call, arguments=replacement))
    return replace(request, text=replacement)
