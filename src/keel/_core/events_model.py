"""Events of model calls: an answer, a failure, a switch to the next model, a rejected answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from keel._core.eventbase import ErrorInfo, Event, ForkCopy, event_kind
from keel._core.messages import AssistantMessage, Attempt, UserMessage
from keel._core.state import canonical_arguments, correction_message
from keel._core.usage import Usage

if TYPE_CHECKING:
    from keel._core.state import RunState
    from keel._core.steps import StepBuilder

__all__ = ["ModelFailed", "ModelResponded", "ModelSwitched", "OutputRejected"]


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResponded(Event):
    """A model answered step ``step``."""

    step: int
    model: str
    message: AssistantMessage
    usage: Usage
    cost_usd: float | None = None
    latency_ms: float = 0.0
    finish_reason: str | None = None
    #: Every try it took (retries, fallbacks), when resilience wrappers were in play.
    attempts: tuple[Attempt, ...] = ()
    #: Answered from the response cache: nothing was sent, nothing was paid.
    cached: bool = False
    #: The routing rule that chose the model, when a router did.
    route: str | None = None
    type: Literal["model_responded"] = "model_responded"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        state.step = self.step
        state.last_call_cost = self.cost_usd
        state.usage = state.usage + self.usage
        if state.cost_usd is not None:
            state.cost_usd = None if self.cost_usd is None else state.cost_usd + self.cost_usd
        calls = self.message.tool_calls
        if calls:
            state.call_ids.update(call.id for call in calls)
            state.turn_index = len(state.messages)
            state.turn_successes = 0
            state.call_keys = {}
            state.positions = {call.id: i for i, call in enumerate(calls)}
            for call in calls:
                key = (call.name, canonical_arguments(call.arguments))
                state.call_counts[key] = state.call_counts.get(key, 0) + 1
                state.call_keys[call.id] = key
        state.messages.append(self.message)
        state.awaiting = {call.id: call for call in calls}
        state.decisions = {}
        state.ran.clear()
        state.final_text = None if calls else (self.message.content or "")

    def fork(self, copy: ForkCopy) -> ModelResponded | None:
        if self.step > copy.at_step:
            return None
        copy.calls.update(call.id for call in self.message.tool_calls)
        return self

    def place(self, steps: StepBuilder) -> None:
        from keel._core.steps import ToolStep

        step = steps.step(self.step)
        step.response = self
        for call in self.message.tool_calls:
            tool_step = steps.calls[call.id] = ToolStep(call=call)
            step.tools.append(tool_step)


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFailed(Event):
    """A model call for step ``step`` failed."""

    step: int
    model: str
    error: ErrorInfo
    retryable: bool = False
    status: int | None = None
    latency_ms: float = 0.0
    attempts: tuple[Attempt, ...] = ()
    type: Literal["model_failed"] = "model_failed"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        state.reason = self.error

    def place(self, steps: StepBuilder) -> None:
        steps.step(self.step).failure = self


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class OutputRejected(Event):
    """The model's final answer failed ``output_type`` validation, or a check refused it, and
    it was sent back. ``withheld`` names the check that refused it: the answer itself is then
    replaced in the conversation (what a check refuses, such as a card number, is kept
    neither in the thread nor in what the model is sent again)."""

    step: int
    error: str
    withheld: str | None = None
    type: Literal["output_rejected"] = "output_rejected"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        state.output_retries += 1
        state.final_text = None
        if self.withheld is None:
            state.messages.append(UserMessage(content=correction_message(self.error)))
            return
        for index in range(len(state.messages) - 1, -1, -1):
            if isinstance(state.messages[index], AssistantMessage):
                text = f"(an answer withheld by check '{self.withheld}')"
                state.messages[index] = AssistantMessage(content=text)
                break
        state.messages.append(
            UserMessage(content=f"Your last answer was not accepted: {self.error}. Answer again.")
        )

    def fork(self, copy: ForkCopy) -> OutputRejected | None:
        return self if self.step <= copy.at_step else None


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSwitched(Event):
    """The run moves on to the next model of its fallback chain (``model_index`` counts from
    0), because the current one kept producing invalid answers."""

    step: int
    model_index: int
    reason: ErrorInfo
    #: What the next model is told about the last invalid answer (``None``: nothing to say).
    correction: str | None = None
    type: Literal["model_switched"] = "model_switched"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        state.model_index = self.model_index
        state.output_retries = 0
        state.turns_without_progress = 0
        if self.correction is not None:
            # The next model answers afresh, told what was wrong with the last answer.
            state.final_text = None
            state.messages.append(UserMessage(content=self.correction))
