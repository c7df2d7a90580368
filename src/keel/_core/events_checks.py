"""The journaled answer of the checks (policies, guardrails) at one point of a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from keel._core.checks import CheckPoint, CheckRecord, Verdict
from keel._core.eventbase import Event, ForkCopy, event_kind
from keel._core.events_tools import replace_result, rewrite_call
from keel._core.messages import AssistantMessage, UserMessage

if TYPE_CHECKING:
    from keel._core.state import RunState

__all__ = ["ChecksDecided", "withheld_text"]


def withheld_text(check: str, reason: str | None) -> str:
    """What stands in for a tool result a check held back for a person."""
    why = f": {reason}" if reason else ""
    return f"(withheld by check '{check}' until a person decides{why})"


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class ChecksDecided(Event):
    """The checks at ``point`` answered for ``subject`` (see :func:`keel._core.checks.
    subject_of`): every check that ran, in order, and the outcome. ``replacement`` is the
    subject as the last ``modify`` left it."""

    step: int
    point: CheckPoint
    subject: str
    verdict: Verdict
    results: tuple[CheckRecord, ...] = ()
    reason: str | None = None
    replacement: str | None = None
    type: Literal["checks_decided"] = "checks_decided"
    v: Literal[1] = 1

    @property
    def deciding_check(self) -> str:
        """The check whose answer decided (the last one that ran), or ``""``."""
        return self.results[-1].check if self.results else ""

    def fold(self, state: RunState) -> None:
        state.checks[(self.point, self.subject)] = self
        if self.point == "input":
            if self.verdict == "modify" and self.replacement is not None:
                state.messages[state.first_own_message] = UserMessage(content=self.replacement)
        elif self.point == "output":
            if self.verdict == "modify" and self.replacement is not None:
                replace_answer(state, self.replacement)
        elif self.point == "tool_call":
            if self.verdict == "modify" and self.replacement is not None:
                rewrite_call(state, self.subject, self.replacement)
        elif self.point == "tool_result":
            call_id = self.subject.removeprefix("result:")
            if self.verdict == "modify" and self.replacement is not None:
                replace_result(state, call_id, self.replacement)
            elif self.verdict == "deny":
                text = f"Error: check '{self.deciding_check}' withheld this result"
                text += f": {self.reason}" if self.reason else ""
                replace_result(state, call_id, text, error=True)
            elif self.verdict == "escalate":
                original = (
                    self.replacement if self.replacement is not None else _result(state, call_id)
                )
                state.withheld[self.subject] = original
                replace_result(state, call_id, withheld_text(self.deciding_check, self.reason))

    def fork(self, copy: ForkCopy) -> ChecksDecided | None:
        return self if self.step <= copy.at_step else None


def replace_answer(state: RunState, text: str) -> None:
    """A check changed the final answer: the run ends with, and the thread keeps, ``text``."""
    state.final_text = text
    for index in range(len(state.messages) - 1, -1, -1):
        if isinstance(state.messages[index], AssistantMessage):
            state.messages[index] = AssistantMessage(content=text)
            return


def _result(state: RunState, call_id: str) -> str:
    for message in reversed(state.messages):
        if getattr(message, "tool_call_id", None) == call_id:
            return str(getattr(message, "content", ""))
    return ""
