"""The chaos model: seeded, typed faults in place of a model's answers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from keel._core.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UserMessage,
)
from keel.errors import (
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelResponseError,
    ModelTimeoutError,
)
from keel.ports import Model
from keel.testing._chaos import FAULTS, ChaosModel
from keel.testing._models import FunctionModel, ScriptedModel, call

REQUEST = ModelRequest(messages=[UserMessage(content="hi")])


def echo() -> FunctionModel:
    return FunctionModel(lambda _: "the whole answer", name="echo")


async def outcome(model: ChaosModel) -> str:
    """The fault a request met, or ``ok``."""
    try:
        response = await model.request(REQUEST)
    except ModelError as exc:
        return exc.code
    return "ok" if response.message.content == "the whole answer" else "changed"


async def test_the_same_seed_gives_the_same_faults() -> None:
    runs = []
    for _ in range(2):
        chaos = ChaosModel(echo(), rate=0.5, seed=42)
        runs.append([await outcome(chaos) for _ in range(40)])

    other = ChaosModel(echo(), rate=0.5, seed=43)
    different = [await outcome(other) for _ in range(40)]

    assert runs[0] == runs[1]
    assert runs[0] != different
    assert "ok" in runs[0]
    assert len(set(runs[0])) > 3


async def test_rate_zero_injects_nothing() -> None:
    chaos = ChaosModel(echo(), rate=0.0)

    results = [await outcome(chaos) for _ in range(50)]

    assert set(results) == {"ok"}
    assert chaos.injected == Counter()


async def test_rate_one_always_injects() -> None:
    chaos = ChaosModel(echo(), rate=1.0, faults=("timeout", "server_error"))

    results = [await outcome(chaos) for _ in range(50)]

    assert set(results) == {"model_timeout", "model_server_error"}
    assert sum(chaos.injected.values()) == 50
    assert set(chaos.injected) == {"timeout", "server_error"}


@pytest.mark.parametrize(
    ("fault", "error_type", "code"),
    [
        ("timeout", ModelTimeoutError, "model_timeout"),
        ("rate_limit", ModelHTTPError, "model_rate_limited"),
        ("server_error", ModelHTTPError, "model_server_error"),
        ("malformed", ModelResponseError, "model_response_error"),
        ("cut_stream", ModelConnectionError, "model_connection_error"),
    ],
)
async def test_each_fault_raises_the_providers_error(
    fault: str, error_type: type[ModelError], code: str
) -> None:
    inner = ScriptedModel([])
    chaos = ChaosModel(inner, rate=1.0, faults=[fault], retry_after_s=2.5)

    with pytest.raises(error_type) as caught:
        await chaos.request(REQUEST)

    error = caught.value
    assert type(error) is error_type
    assert error.code == code
    assert error.retryable
    assert error.model == "scripted"
    assert "injected by ChaosModel" in error.message
    assert chaos.injected == Counter({fault: 1})
    assert inner.requests == []  # the fault did not use up a scripted turn


async def test_rate_limit_carries_retry_after_and_status() -> None:
    chaos = ChaosModel(echo(), rate=1.0, faults=["rate_limit"], retry_after_s=2.5)

    with pytest.raises(ModelHTTPError) as caught:
        await chaos.request(REQUEST)

    assert (caught.value.status, caught.value.retry_after) == (429, 2.5)


async def test_server_error_is_status_500() -> None:
    chaos = ChaosModel(echo(), rate=1.0, faults=["server_error"])

    with pytest.raises(ModelHTTPError) as caught:
        await chaos.request(REQUEST)

    assert caught.value.status == 500


def assert_unparsable(arguments: str) -> None:
    assert arguments.strip()  # the runtime reads "" as {}
    with pytest.raises(ValueError, match=r"."):
        json.loads(arguments)


async def test_bad_tool_arguments_corrupt_every_call_of_the_answer() -> None:
    inner = ScriptedModel([[call("lookup", order_id="42"), call("empty", "{}"), call("none", "")]])
    chaos = ChaosModel(inner, rate=1.0, faults=["bad_tool_arguments"])

    response = await chaos.request(REQUEST)

    calls = response.message.tool_calls
    assert [c.name for c in calls] == ["lookup", "empty", "none"]
    for c in calls:
        assert_unparsable(c.arguments)
    assert calls[0].arguments == '{"order_i'  # cut off half-way
    assert chaos.injected == Counter({"bad_tool_arguments": 1})


async def test_bad_tool_arguments_never_parse_even_when_half_is_valid_json() -> None:
    chaos = ChaosModel(ScriptedModel([call("n", "1234")]), rate=1.0, faults=["bad_tool_arguments"])

    response = await chaos.request(REQUEST)

    assert_unparsable(response.message.tool_calls[0].arguments)


async def test_bad_tool_arguments_without_tool_calls_is_no_fault() -> None:
    chaos = ChaosModel(echo(), rate=1.0, faults=["bad_tool_arguments"])

    assert await outcome(chaos) == "ok"
    assert chaos.injected == Counter()


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


async def test_stream_without_fault_passes_through() -> None:
    chaos = ChaosModel(echo(), rate=0.0)

    events = await collect(chaos.stream(REQUEST))

    assert events[0] == TextDelta(text="the whole answer")
    assert isinstance(events[-1], StreamComplete)


class Chunked(Model):
    """Streams its answer in four pieces."""

    @property
    def name(self) -> str:
        return "chunked"

    async def request(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(message=AssistantMessage(content="one two three four"))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        for piece in ("one ", "two ", "three ", "four"):
            yield TextDelta(text=piece)
        yield StreamComplete(response=await self.request(request))


async def until_error(events: AsyncIterator[StreamEvent]) -> tuple[list[StreamEvent], ModelError]:
    """What a stream yielded before it failed, and its error."""
    received: list[StreamEvent] = []
    try:
        async for event in events:
            received.append(event)
    except ModelError as exc:
        return received, exc
    raise AssertionError(f"the stream did not fail; it yielded {received!r}")


async def test_a_cut_stream_yields_part_of_the_answer_then_raises() -> None:
    chaos = ChaosModel(Chunked(), rate=1.0, faults=["cut_stream"])

    received, error = await until_error(chaos.stream(REQUEST))

    assert received == [TextDelta(text="one "), TextDelta(text="two ")]
    assert isinstance(error, ModelConnectionError)
    assert error.retryable
    assert chaos.injected == Counter({"cut_stream": 1})


async def test_a_cut_stream_of_one_piece_yields_half_the_text() -> None:
    chaos = ChaosModel(echo(), rate=1.0, faults=["cut_stream"])

    received, error = await until_error(chaos.stream(REQUEST))

    assert received == [TextDelta(text="the whol")]
    assert isinstance(error, ModelConnectionError)


async def test_a_cut_stream_of_a_tool_call_answer_yields_nothing_first() -> None:
    chaos = ChaosModel(ScriptedModel([call("t")]), rate=1.0, faults=["cut_stream"])

    with pytest.raises(ModelConnectionError):
        await collect(chaos.stream(REQUEST))


async def test_stream_raises_the_other_faults_before_anything() -> None:
    chaos = ChaosModel(echo(), rate=1.0, faults=["timeout"])

    with pytest.raises(ModelTimeoutError):
        await collect(chaos.stream(REQUEST))


async def test_stream_with_bad_tool_arguments_streams_the_corrupted_calls() -> None:
    chaos = ChaosModel(
        ScriptedModel([call("lookup", order_id="42")]), rate=1.0, faults=["bad_tool_arguments"]
    )

    events = await collect(chaos.stream(REQUEST))

    delta, complete = events
    assert isinstance(delta, ToolCallDelta)
    assert isinstance(complete, StreamComplete)
    assert delta.arguments == complete.response.message.tool_calls[0].arguments
    assert_unparsable(delta.arguments)


async def test_stream_with_bad_tool_arguments_replaces_the_streamed_call_deltas() -> None:
    class StreamsCalls(Chunked):
        async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
            yield ToolCallDelta(index=0, id="c1", name="lookup", arguments='{"id":')
            yield ToolCallDelta(index=0, arguments=' "42"}')
            message = AssistantMessage(tool_calls=(call("lookup", id="42"),))
            yield StreamComplete(response=ModelResponse(message=message))

    chaos = ChaosModel(StreamsCalls(), rate=1.0, faults=["bad_tool_arguments"])

    events = await collect(chaos.stream(REQUEST))

    assert len(events) == 2
    delta = events[0]
    assert isinstance(delta, ToolCallDelta)
    assert_unparsable(delta.arguments)


async def test_stream_with_bad_tool_arguments_and_no_calls_is_untouched() -> None:
    chaos = ChaosModel(Chunked(), rate=1.0, faults=["bad_tool_arguments"])

    events = await collect(chaos.stream(REQUEST))

    assert [e for e in events if isinstance(e, TextDelta)] == [
        TextDelta(text=t) for t in ("one ", "two ", "three ", "four")
    ]
    assert chaos.injected == Counter()


async def test_stream_keeps_text_deltas_before_corrupted_calls() -> None:
    answer = AssistantMessage(content="let me look", tool_calls=(call("t", x=1),))
    chaos = ChaosModel(ScriptedModel([answer]), rate=1.0, faults=["bad_tool_arguments"])

    events = await collect(chaos.stream(REQUEST))

    assert events[0] == TextDelta(text="let me look")
    assert isinstance(events[1], ToolCallDelta)


async def test_delay_waits_before_each_injected_fault() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    chaos = ChaosModel(echo(), rate=1.0, faults=["timeout"], delay_s=1.5, sleep=sleep)

    with pytest.raises(ModelTimeoutError):
        await chaos.request(REQUEST)

    assert waits == [1.5]


async def test_delay_with_the_real_sleep() -> None:
    chaos = ChaosModel(echo(), rate=1.0, faults=["timeout"], delay_s=0.001)

    with pytest.raises(ModelTimeoutError):
        await chaos.request(REQUEST)


@pytest.mark.parametrize("rate", [-0.1, 1.1, float("nan"), "0.5"])
def test_rate_must_be_a_probability(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be a probability"):
        ChaosModel(echo(), rate=rate)


def test_unknown_faults_are_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'explode'.*timeout, rate_limit, server_error") as caught:
        ChaosModel(echo(), rate=0.5, faults=["timeout", "explode"])

    for name in FAULTS:
        assert name in str(caught.value)


def test_faults_must_be_a_non_empty_sequence_of_names() -> None:
    with pytest.raises(ValueError, match="none"):
        ChaosModel(echo(), rate=0.5, faults=[])
    with pytest.raises(ValueError, match="not one string"):
        ChaosModel(echo(), rate=0.5, faults="timeout")


@pytest.mark.parametrize("field", ["retry_after_s", "delay_s"])
def test_times_must_be_non_negative(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ChaosModel(echo(), rate=0.5, **{field: -1.0})  # type: ignore[arg-type]


async def test_properties_and_close() -> None:
    closed: list[bool] = []

    class Closing(ScriptedModel):
        async def aclose(self) -> None:
            closed.append(True)

    inner = Closing([])
    chaos = ChaosModel(inner, rate=0.25, faults=("timeout", "timeout", "malformed"), seed=1)

    assert chaos.name == "scripted"
    assert chaos.model is inner
    assert chaos.rate == 0.25
    assert chaos.faults == ("timeout", "timeout", "malformed")
    assert "rate=0.25" in repr(chaos)
    await chaos.aclose()
    assert closed == [True]


async def test_a_broken_inner_stream_is_reported() -> None:
    class NoComplete(Chunked):
        async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
            yield TextDelta(text="dangling")

    chaos = ChaosModel(NoComplete(), rate=1.0, faults=["cut_stream"])

    with pytest.raises(ModelResponseError, match="without StreamComplete"):
        await collect(chaos.stream(REQUEST))
