"""The OpenAI-compatible endpoint, streamed: server-sent chunks through uvicorn, read by the
official openai client, from a real runtime driving offline models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from pydantic import BaseModel

from keel import Agent, KeelSettings, Model, Runtime, tool
from keel.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    TextDelta,
    ToolResultMessage,
    UserMessage,
)
from keel.testing import FunctionModel, call
from tests.server.openai_app import CountsAnswers, ServedApp, client, serve_openai

NO_MODELS = KeelSettings.from_environ({})
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Where is order 123?"}]
PIECES = ("Hel", "lo ", "there.")


class Typist(Model):
    """Streams its answer in set pieces; with a gate, waits for it after the first piece."""

    def __init__(self, pieces: Sequence[str], gate: asyncio.Event | None = None) -> None:
        self.pieces = tuple(pieces)
        self.gate = gate
        self.streamed = 0

    @property
    def name(self) -> str:
        return "typist"

    async def request(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(message=AssistantMessage(content="".join(self.pieces)))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.streamed += 1
        for number, piece in enumerate(self.pieces):
            if number == 1 and self.gate is not None:
                await self.gate.wait()
            yield TextDelta(text=piece)
        yield StreamComplete(response=await self.request(request))


@tool
def lookup_order(order_id: str) -> dict[str, str]:
    """Find an order by id."""
    return {"order_id": order_id, "status": "shipped"}


@tool(requires_approval=True)
def refund_order(order_id: str) -> str:
    """Refund an order."""
    return f"order {order_id} refunded"


class Order(BaseModel):
    order_id: str
    status: str


def _users_said(request: ModelRequest) -> str:
    return " | ".join(m.content for m in request.messages if isinstance(m, UserMessage))


def _chatty(request: ModelRequest) -> AssistantMessage | str:
    """Says what it is about to do before calling a tool, then answers."""
    if isinstance(request.messages[-1], ToolResultMessage):
        return "It shipped."
    if "refund" in _users_said(request).lower():
        return AssistantMessage(
            content="Refunding it now.", tool_calls=(call("refund_order", order_id="7"),)
        )
    return AssistantMessage(
        content="Let me look.", tool_calls=(call("lookup_order", order_id="7"),)
    )


def _agents(typist: Typist) -> list[Agent[Any]]:
    return [
        Agent(name="typist", model=typist),
        Agent(name="orders", model="rules", tools=[lookup_order, refund_order]),
        Agent(name="typed", model="rules", tools=[lookup_order], output_type=Order),
        Agent(name="recall", model=FunctionModel(_users_said)),
        Agent(name="chatty", model=FunctionModel(_chatty), tools=[lookup_order, refund_order]),
    ]


@pytest.fixture(scope="module")
def typist() -> Typist:
    return Typist(PIECES)


# One server per store for the whole module: every test names threads of its own.
@pytest.fixture(scope="module", params=["memory", "sqlite"])
def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, typist: Typist
) -> Runtime:
    store = "memory" if request.param == "memory" else str(tmp_path_factory.mktemp("db") / "k.db")
    return Runtime(store=store, settings=NO_MODELS, agents=_agents(typist))


@pytest.fixture(scope="module")
def served(runtime: Runtime) -> Iterator[ServedApp]:
    with serve_openai(runtime) as app:
        yield app


@pytest.fixture
def anyone(served: ServedApp) -> Iterator[openai.OpenAI]:
    with client(served) as connected:
        yield connected


def _stream(
    connected: openai.OpenAI, model: str, messages: Any = USER, **options: Any
) -> list[ChatCompletionChunk]:
    with connected.chat.completions.create(
        model=model, messages=messages, stream=True, **options
    ) as chunks:
        return list(chunks)


def _read_into(said: list[str], chunks: Iterable[ChatCompletionChunk]) -> None:
    for chunk in chunks:
        said.append(chunk.choices[0].delta.content or "")


def _text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_the_answer_streams_in_the_pieces_the_model_wrote() -> None:
    # On the memory store a read of the journal never yields to the driver, so every piece
    # reaches the follower before the answer it belongs to; SQLite's reads may wait for a
    # commit, and pieces published meanwhile then come joined (see the tests below).
    typist = Typist(PIECES)
    runtime = Runtime(store="memory", settings=NO_MODELS, agents=[Agent(name="t", model=typist)])
    with serve_openai(runtime) as served, client(served) as anyone:
        chunks = _stream(anyone, "t", stream_options={"include_usage": True})
        run_id = chunks[0].id.removeprefix("chatcmpl-")
        result = served.call(runtime.result(run_id))

    *answer, last = chunks
    assert answer[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in answer[1:-1]]
    assert pieces == list(PIECES)  # as they were written, not whole at the end
    assert typist.streamed == 1
    assert answer[-1].choices[0].finish_reason == "stop"
    assert {c.choices[0].finish_reason for c in answer[:-1]} == {None}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert result.output == "Hello there."
    # The usage chunk comes last, with no choices.
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens == result.usage.total_tokens
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        result.usage.input_tokens,
        result.usage.output_tokens,
    )


def test_the_model_is_asked_to_stream(anyone: openai.OpenAI, typist: Typist) -> None:
    before = typist.streamed
    chunks = _stream(anyone, "typist")
    assert typist.streamed == before + 1
    assert _text(chunks) == "Hello there."


def test_without_include_usage_there_is_no_usage_chunk(anyone: openai.OpenAI) -> None:
    chunks = _stream(anyone, "typist")
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("agent", ["typist", "orders", "typed"])
def test_the_streamed_answer_is_the_answer(anyone: openai.OpenAI, agent: str) -> None:
    answered = anyone.chat.completions.create(model=agent, messages=USER)
    assert _text(_stream(anyone, agent)) == answered.choices[0].message.content


def test_a_structured_answer_streams_whole_as_json(anyone: openai.OpenAI) -> None:
    chunks = _stream(anyone, "typed")
    contents = [c.choices[0].delta.content for c in chunks[1:] if c.choices[0].delta.content]
    assert len(contents) == 1
    assert Order.model_validate(json.loads(contents[0])) == Order(order_id="123", status="shipped")


def test_what_the_model_says_before_calling_tools_streams_too(anyone: openai.OpenAI) -> None:
    assert _text(_stream(anyone, "chatty")) == "Let me look.\n\nIt shipped."


def test_a_thread_remembers_streamed_turns(anyone: openai.OpenAI) -> None:
    thread = {"thread": "remembers"}
    _stream(anyone, "recall", [{"role": "user", "content": "I am Ada."}], extra_body=thread)
    chunks = _stream(anyone, "recall", [{"role": "user", "content": "Who?"}], extra_body=thread)
    assert _text(chunks) == "I am Ada. | Who?"


def test_a_run_that_waits_for_approval_before_saying_anything_is_an_error_status(
    served: ServedApp, anyone: openai.OpenAI, runtime: Runtime
) -> None:
    refund: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Please refund order 4512"}
    ]
    with pytest.raises(openai.ConflictError) as waiting:
        anyone.chat.completions.create(
            model="orders", messages=refund, stream=True, extra_body={"thread": "waits"}
        )
    assert waiting.value.code == "awaiting_approval"
    run_id = waiting.value.response.headers["x-keel-run-id"]

    # The thread is busy: a streamed message is refused before any run is made for it.
    with pytest.raises(openai.ConflictError) as busy:
        anyone.chat.completions.create(
            model="orders", messages=USER, stream=True, extra_body={"thread": "waits"}
        )
    assert busy.value.code == "thread_busy"
    assert busy.value.response.headers["x-keel-run-id"] == run_id
    runs = served.call(runtime.store.list_runs(thread_id="waits"))
    assert [r.run_id for r in runs] == [run_id]


def test_a_run_that_stops_after_saying_something_ends_the_stream_with_an_error(
    anyone: openai.OpenAI,
) -> None:
    said: list[str] = []
    refund: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Refund order 7"}]
    chunks = anyone.chat.completions.create(model="chatty", messages=refund, stream=True)
    with chunks, pytest.raises(openai.APIError) as stopped:
        _read_into(said, chunks)
    assert "".join(said) == "Refunding it now."
    assert isinstance(stopped.value.body, dict)
    assert stopped.value.body["code"] == "awaiting_approval"
    assert "refund_order" in stopped.value.message


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_client_that_goes_away_does_not_stop_the_run(store: str, tmp_path: Path) -> None:
    gate = asyncio.Event()
    agent = Agent(name="slow", model=Typist(PIECES, gate))
    location = "memory" if store == "memory" else str(tmp_path / "keel.db")
    runtime = Runtime(store=location, settings=NO_MODELS, agents=[agent])
    counted: list[CountsAnswers] = []

    def counting(app: Any) -> CountsAnswers:
        counted.append(CountsAnswers(app))
        return counted[0]

    with serve_openai(runtime, wrap=counting) as served, client(served) as leaving:
        with leaving.chat.completions.create(model="slow", messages=USER, stream=True) as chunks:
            first = next(chunks)
            assert next(chunks).choices[0].delta.content == "Hel"
        counted[0].wait_for(1)  # the server is done with the request the client left
        served.loop.call_soon_threadsafe(gate.set)
        result = served.call(runtime.wait(first.id.removeprefix("chatcmpl-")))
        assert (result.status, result.output) == ("completed", "Hello there.")
