"""``HandedOff``: the run's agent, instructions, tools and models change, and the indexes the
state keeps into its messages follow the instructions' place."""

from __future__ import annotations

from keel._core.codec import decode_event, encode_event
from keel._core.events import HandedOff, ModelResponded, RunStarted, ToolCallFinished
from keel._core.fold import apply, fold, start
from keel._core.limits import Limits
from keel._core.messages import AssistantMessage, SystemMessage, ToolCall, UserMessage
from keel._core.steps import fork_events
from keel._core.usage import Usage

CALL = ToolCall(id="c1", name="transfer_to_billing", arguments="{}")


def journal(instructions: str) -> list[object]:
    return [
        RunStarted(
            run_id="r",
            thread_id="t",
            agent="triage",
            model="m1",
            models=("m1",),
            input="Invoice?",
            instructions=instructions,
            tools=("lookup",),
            limits=Limits(),
        ),
        ModelResponded(
            step=1,
            model="m1",
            message=AssistantMessage(tool_calls=(CALL,)),
            usage=Usage(requests=1),
        ),
        ToolCallFinished(step=1, call=CALL, result="Transferred"),
    ]


def handed(instructions: str) -> HandedOff:
    return HandedOff(
        step=1,
        call_id="c1",
        from_agent="triage",
        to_agent="billing",
        instructions=instructions,
        tools=("invoice",),
        models=("m2", "m3"),
    )


def test_a_handoff_replaces_the_instructions_and_switches_agent_tools_and_models() -> None:
    state = fold([*journal("Route."), handed("Bill.")])  # type: ignore[list-item]

    assert (state.agent, state.tools, state.models) == ("billing", ("invoice",), ("m2", "m3"))
    assert state.model == "fallback(m2,m3)"
    assert state.messages[0] == SystemMessage(content="Bill.")
    assert state.own_messages[0] == UserMessage(content="Invoice?")


def test_instructions_given_by_a_handoff_to_a_run_without_them_come_first() -> None:
    state = fold(journal(""))  # type: ignore[arg-type]
    assert (state.first_own_message, state.turn_index) == (0, 1)

    apply(state, handed("Bill."))

    assert state.messages[0] == SystemMessage(content="Bill.")
    assert (state.first_own_message, state.turn_index) == (1, 2)
    assert state.own_messages[0] == UserMessage(content="Invoice?")


def test_a_handoff_to_an_agent_without_instructions_drops_the_old_ones() -> None:
    state = fold([*journal("Route."), handed("")])  # type: ignore[list-item]

    assert not any(isinstance(m, SystemMessage) for m in state.messages)
    assert state.own_messages[0] == UserMessage(content="Invoice?")
    assert state.first_own_message == 0


def test_a_handoff_round_trips_and_is_copied_by_a_fork_that_includes_its_step() -> None:
    event = handed("Bill.")
    assert decode_event(encode_event(event)) == event
    events = [*journal("Route."), event]
    first = start(events[0])  # type: ignore[arg-type]
    assert first.agent == "triage"
    assert event in fork_events(events, at_step=1, tool_results=None)  # type: ignore[arg-type]
