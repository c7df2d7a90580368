"""The shipped test doubles: scripted and function models, and the fake clock."""

from __future__ import annotations

import asyncio

import pytest

from keel._core.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    TextDelta,
    UserMessage,
)
from keel._core.usage import Usage
from keel.errors import ModelTimeoutError
from keel.testing import FakeClock, FunctionModel, ScriptedModel, call

REQUEST = ModelRequest(messages=[UserMessage(content="hi")])


async def test_scripted_turns_play_in_order_and_calls_get_distinct_ids() -> None:
    model = ScriptedModel(["first", [call("a", x=1), call("b", "{bad")], call("c")])

    first = await model.request(REQUEST)
    second = await model.request(REQUEST)
    third = await model.request(REQUEST)

    assert first.message.content == "first"
    assert first.finish_reason == "stop"
    assert [(c.name, c.arguments) for c in second.message.tool_calls] == [
        ("a", '{"x": 1}'),
        ("b", "{bad"),
    ]
    assert second.finish_reason == "tool_calls"
    ids = [c.id for r in (second, third) for c in r.message.tool_calls]
    assert len(set(ids)) == 3
    assert first.usage.requests == 1
    model.assert_complete()


async def test_whole_responses_and_exceptions_can_be_scripted() -> None:
    usage = Usage(requests=1, input_tokens=10, output_tokens=2)
    model = ScriptedModel(
        [
            ModelResponse(message=AssistantMessage(content="x"), usage=usage),
            ModelTimeoutError("slow", model="m"),
        ]
    )

    assert (await model.request(REQUEST)).usage == usage
    with pytest.raises(ModelTimeoutError):
        await model.request(REQUEST)


async def test_requests_are_recorded_as_they_were_at_the_time() -> None:
    model = ScriptedModel(["a", "b"])
    messages = [UserMessage(content="one")]

    await model.request(ModelRequest(messages=messages))
    messages.append(UserMessage(content="two"))
    await model.request(ModelRequest(messages=messages))

    assert [len(r.messages) for r in model.requests] == [1, 2]


async def test_running_out_of_script_names_the_request() -> None:
    model = ScriptedModel(["only"])
    await model.request(REQUEST)
    with pytest.raises(AssertionError, match="request #2 but its script has only 1 turn"):
        await model.request(REQUEST)


async def test_assert_complete_lists_unused_turns() -> None:
    model = ScriptedModel(["used", "unused"])
    await model.request(REQUEST)
    with pytest.raises(AssertionError, match=r"1 scripted turn.*'unused'"):
        model.assert_complete()


def test_unscriptable_items_are_refused_with_the_fix() -> None:
    model = ScriptedModel([42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="cannot script a model turn from int"):
        asyncio.run(model.request(REQUEST))


def test_call_takes_raw_text_or_keywords_not_both() -> None:
    with pytest.raises(TypeError, match="not both"):
        call("a", "{}", x=1)


async def test_the_default_stream_yields_the_text_then_the_response() -> None:
    events = [e async for e in ScriptedModel(["streamed"]).stream(REQUEST)]
    assert events[0] == TextDelta(text="streamed")
    assert isinstance(events[1], StreamComplete)


async def test_a_function_model_decides_each_turn_sync_or_async() -> None:
    def sync_turn(request: ModelRequest) -> str:
        return f"{len(request.messages)} messages"

    async def async_turn(request: ModelRequest) -> object:
        return call("lookup", id="1")

    assert (await FunctionModel(sync_turn).request(REQUEST)).message.content == "1 messages"
    response = await FunctionModel(async_turn).request(REQUEST)  # type: ignore[arg-type]
    assert response.message.tool_calls[0].name == "lookup"


def test_the_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start=100.0)
    assert (clock.now(), clock.monotonic()) == (100.0, 0.0)
    clock.advance(2.5)
    assert (clock.now(), clock.monotonic()) == (102.5, 2.5)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_the_fake_clock_can_tick_on_every_reading() -> None:
    clock = FakeClock(start=0.0, tick=1.0)
    assert [clock.now(), clock.now(), clock.monotonic()] == [0.0, 1.0, 2.0]
