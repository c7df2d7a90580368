"""Event kinds are open: a new kind is one class and one registration, and the codec, the fold,
steps, forks and the timeline all find it through the registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pytest
from pydantic import ValidationError

from keel._cli.timeline import describe
from keel._core.codec import decode_event, encode_event
from keel._core.eventbase import EventRegistry, ForkCopy
from keel._core.fold import apply, start
from keel._core.steps import fork_events, steps_of
from keel._core.usage import Usage
from keel.events import Event, ModelResponded, RunStarted, event_kind
from keel.messages import AssistantMessage

if TYPE_CHECKING:
    from keel._core.state import RunState


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetNoted(Event):
    """A made-up kind, as a later layer (budgets) would add one."""

    step: int
    spent_usd: float
    type: Literal["test_budget_noted"] = "test_budget_noted"
    v: Literal[1] = 1

    def fold(self, state: RunState) -> None:
        state.cost_usd = (state.cost_usd or 0) + self.spent_usd

    def fork(self, copy: ForkCopy) -> BudgetNoted | None:
        return self if self.step <= copy.at_step else None


def journal() -> list[Event]:
    return [
        RunStarted(run_id="r", thread_id="t", agent="a", model="m", input="hi"),
        ModelResponded(
            step=1, model="m", message=AssistantMessage(content="x"), usage=Usage(), cost_usd=0.0
        ),
        BudgetNoted(step=1, spent_usd=0.5),
        ModelResponded(
            step=2, model="m", message=AssistantMessage(content="y"), usage=Usage(), cost_usd=0.0
        ),
        BudgetNoted(step=2, spent_usd=0.25),
    ]


def test_a_registered_kind_round_trips_through_the_codec() -> None:
    event = BudgetNoted(step=3, spent_usd=1.5, at=12.0)
    assert decode_event(encode_event(event)) == event


def test_the_fold_applies_it_through_its_own_method() -> None:
    events = journal()
    first = events[0]
    assert isinstance(first, RunStarted)
    state = start(first)
    for event in events[1:]:
        apply(state, event)
    assert state.cost_usd == 0.75


def test_steps_place_it_in_its_step_and_forks_copy_it_as_it_says() -> None:
    events = journal()
    steps = steps_of(events)
    assert [type(e).__name__ for e in steps[0].events] == ["BudgetNoted"]
    copied = fork_events(events, at_step=1)
    assert [type(e).__name__ for e in copied] == ["ModelResponded", "BudgetNoted"]


def test_the_timeline_shows_a_kind_it_has_no_renderer_for_by_its_fields() -> None:
    first, *rest = describe(BudgetNoted(step=1, spent_usd=0.5))
    assert first == "test_budget_noted"
    assert '"spent_usd": 0.5' in " ".join(rest)


def test_a_type_tag_no_kind_registered_is_refused() -> None:
    with pytest.raises(ValidationError):
        decode_event(b'{"type": "os_system", "v": 1, "command": "rm -rf /"}')


def test_a_tag_cannot_be_taken_by_another_class() -> None:
    registry = EventRegistry()
    registry.register(BudgetNoted)

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Impostor(Event):
        type: Literal["test_budget_noted"] = "test_budget_noted"
        v: Literal[1] = 1

    with pytest.raises(ValueError, match="already registered"):
        registry.register(Impostor)
