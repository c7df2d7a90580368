"""The event of a handoff: the run goes on with another agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from keel._core.eventbase import Event, ForkCopy, event_kind
from keel._core.events_run import chain_name
from keel._core.messages import SystemMessage

if TYPE_CHECKING:
    from keel._core.state import RunState

__all__ = ["HandedOff"]


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class HandedOff(Event):
    """In step ``step`` the model called ``call_id`` (a ``transfer_to_...`` tool), and the run
    went on with agent ``to_agent``: with its ``instructions`` (as they were made for this run),
    the ``tools`` it enabled, and its ``models`` (names in fallback order; empty: model
    objects, and the run keeps the names it had)."""

    step: int
    call_id: str
    from_agent: str
    to_agent: str
    instructions: str = ""
    tools: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    type: Literal["handed_off"] = "handed_off"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        state.agent = self.to_agent
        state.tools = self.tools
        if self.models:
            state.models = self.models
            state.model = chain_name(self.models)
        state.model_index = 0
        state.output_retries = 0
        state.turns_without_progress = 0
        messages = state.messages
        if state.instructed:
            if self.instructions:
                messages[0] = SystemMessage(content=self.instructions)
            else:
                del messages[0]
                _shift(state, -1)
                state.instructed = False
        elif self.instructions:
            messages.insert(0, SystemMessage(content=self.instructions))
            _shift(state, 1)
            state.instructed = True

    def fork(self, copy: ForkCopy) -> HandedOff | None:
        return self if self.step <= copy.at_step else None


def _shift(state: RunState, by: int) -> None:
    """The messages moved by ``by`` places: so do the indexes the state keeps into them."""
    state.first_own_message += by
    if state.turn_index >= 0:
        state.turn_index += by
