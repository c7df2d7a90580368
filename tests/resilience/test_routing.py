"""The router: declared rules choose the model per request."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keel._core.messages import (
    AssistantMessage,
    Attempt,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from keel.errors import ModelHTTPError
from keel.resilience._routing import (
    DEFAULT_ROUTE,
    Route,
    RouteContext,
    RoutePredicate,
    Router,
    all_of,
    any_of,
    few_tools,
    no_tools,
    short_input,
)
from keel.testing._models import ScriptedModel


def tool(name: str) -> ToolDefinition:
    return ToolDefinition(name=name, description="d", parameters={"type": "object"})


def ask(text: str = "hi", *, tools: int = 0, schema: bool = False) -> ModelRequest:
    return ModelRequest(
        messages=[UserMessage(content=text)],
        tools=[tool(f"t{i}") for i in range(tools)],
        output_schema={"type": "object"} if schema else None,
    )


# --- the context ----------------------------------------------------------------------------


def test_context_measures_the_request() -> None:
    request = ModelRequest(
        messages=[
            SystemMessage(content="s" * 40),
            UserMessage(content="first question"),
            AssistantMessage(tool_calls=(ToolCall(id="1", name="abc", arguments='{"x":1}'),)),
            ToolResultMessage(tool_call_id="1", name="abc", content="r" * 13),
            UserMessage(content="second question"),
        ],
        tools=[ToolDefinition(name="abc", description="d" * 10, parameters={"type": "object"})],
        output_schema={"type": "string"},
        output_name="out",
    )

    context = RouteContext(request)

    # 40 + 14 + (3 + 7) + 13 + 15 messages, 3 + 10 + 17 the tool, 3 + 17 the output schema
    assert context.input_chars == 142
    assert context.estimated_input_tokens == 36  # ceil(142 / 4)
    assert context.message_count == 5
    assert context.tool_count == 1
    assert context.has_output_schema
    assert context.last_user_text == "second question"
    assert context.request is request


def test_context_of_a_request_without_user_text() -> None:
    context = RouteContext(ModelRequest(messages=[SystemMessage(content="")]))

    assert context.last_user_text == ""
    assert context.estimated_input_tokens == 0
    assert not context.has_output_schema


# --- predicates -----------------------------------------------------------------------------


def test_short_input_compares_estimated_tokens() -> None:
    assert short_input(1)(RouteContext(ask("abcd")))
    assert not short_input(1)(RouteContext(ask("abcde")))
    assert short_input(0)(RouteContext(ask("")))


def test_tool_predicates_count_tools() -> None:
    assert no_tools()(RouteContext(ask()))
    assert not no_tools()(RouteContext(ask(tools=1)))
    assert few_tools(2)(RouteContext(ask(tools=2)))
    assert not few_tools(2)(RouteContext(ask(tools=3)))


def test_combinators() -> None:
    yes, no = (lambda _: True), (lambda _: False)
    context = RouteContext(ask())

    assert all_of(yes, yes)(context)
    assert not all_of(yes, no)(context)
    assert any_of(no, yes)(context)
    assert not any_of(no, no)(context)
    assert all_of(short_input(10), any_of(no_tools(), few_tools(1)))(context)


def test_combinators_stop_at_the_first_deciding_rule() -> None:
    seen: list[str] = []

    def rule(name: str, result: bool) -> RoutePredicate:
        def check(_: RouteContext) -> bool:
            seen.append(name)
            return result

        return check

    context = RouteContext(ask())
    all_of(rule("a", False), rule("b", True))(context)
    any_of(rule("c", True), rule("d", True))(context)

    assert seen == ["a", "c"]


def test_predicates_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        short_input(-1)
    with pytest.raises(ValueError, match="max_tools"):
        few_tools(-1)
    with pytest.raises(ValueError, match="at least one"):
        all_of()
    with pytest.raises(ValueError, match="at least one"):
        any_of()
    with pytest.raises(TypeError, match="takes rules"):
        any_of(3)  # type: ignore[arg-type]


# --- routes ---------------------------------------------------------------------------------


def test_a_route_needs_a_real_name_and_a_rule() -> None:
    model = ScriptedModel([])
    with pytest.raises(ValueError, match="name"):
        Route("", no_tools(), model)
    with pytest.raises(ValueError, match="name"):
        Route(DEFAULT_ROUTE, no_tools(), model)
    with pytest.raises(TypeError, match="when must be"):
        Route("x", "always", model)  # type: ignore[arg-type]


def test_route_names_must_be_distinct() -> None:
    model = ScriptedModel([])
    with pytest.raises(ValueError, match="repeated: a"):
        Router([Route("a", no_tools(), model), Route("a", no_tools(), model)], default=model)


# --- the router -----------------------------------------------------------------------------


def make_router() -> tuple[Router, ScriptedModel, ScriptedModel, ScriptedModel]:
    small = ScriptedModel(["small", "small again"], name="openai:gpt-4o-mini")
    tools = ScriptedModel(["tools"], name="anthropic:claude-haiku")
    big = ScriptedModel(["big"], name="openai:gpt-4o")
    router = Router(
        [
            Route("short", all_of(short_input(10), no_tools()), small),
            Route("few-tools", few_tools(2), tools),
        ],
        default=big,
    )
    return router, small, tools, big


def test_router_name_lists_the_routes() -> None:
    router, *_ = make_router()

    assert router.name == (
        "router(short->openai:gpt-4o-mini,few-tools->anthropic:claude-haiku,default->openai:gpt-4o)"
    )
    assert Router([], default=ScriptedModel([]), name="mine").name == "mine"
    assert repr(Router([], default=ScriptedModel([]), name="mine")) == "Router('mine')"


async def test_the_first_route_whose_rule_is_true_chooses() -> None:
    router, small, tools, big = make_router()

    short = await router.request(ask("hi"))
    with_tools = await router.request(ask("hi", tools=1))  # short, but has tools
    long = await router.request(ask("x" * 100, tools=5))

    assert (short.message.content, short.route, short.served_by) == (
        "small",
        "short",
        "openai:gpt-4o-mini",
    )
    assert (with_tools.route, with_tools.served_by) == ("few-tools", "anthropic:claude-haiku")
    assert (long.route, long.served_by) == ("default", "openai:gpt-4o")
    assert [len(m.requests) for m in (small, tools, big)] == [1, 1, 1]
    assert router.choose(ask("hi")) == ("short", small)
    assert router.routes[0].name == "short"
    assert router.default is big


async def test_served_by_of_the_chosen_model_is_kept() -> None:
    fallback_answer = ModelResponse(
        message=AssistantMessage(content="from the backup"), served_by="openai:backup"
    )
    router = Router([], default=ScriptedModel([fallback_answer], name="chain"))

    response = await router.request(ask())

    assert response.served_by == "openai:backup"
    assert response.route == DEFAULT_ROUTE


async def test_a_model_error_propagates_with_its_attempts() -> None:
    error = ModelHTTPError("down", status=503, model="openai:gpt-4o")
    error.attempts = (Attempt(model="openai:gpt-4o", code="model_server_error"),)
    router = Router(
        [Route("short", short_input(10), ScriptedModel([error]))], default=ScriptedModel([])
    )

    with pytest.raises(ModelHTTPError) as caught:
        await router.request(ask())

    assert caught.value is error
    assert caught.value.attempts == (Attempt(model="openai:gpt-4o", code="model_server_error"),)


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


async def test_stream_goes_to_the_chosen_model_and_marks_the_response() -> None:
    router, small, _, _ = make_router()

    events = await collect(router.stream(ask("hi")))

    assert events[0] == TextDelta(text="small")
    complete = events[-1]
    assert isinstance(complete, StreamComplete)
    assert (complete.response.route, complete.response.served_by) == (
        "short",
        "openai:gpt-4o-mini",
    )
    assert len(small.requests) == 1


async def test_aclose_closes_each_model_once() -> None:
    closed: list[str] = []

    class Closing(ScriptedModel):
        async def aclose(self) -> None:
            closed.append(self.name)

    shared, other = Closing([], name="shared"), Closing([], name="other")
    router = Router(
        [Route("a", no_tools(), shared), Route("b", few_tools(1), shared)], default=other
    )

    await router.aclose()

    assert closed == ["shared", "other"]


async def test_a_route_may_use_the_last_user_text() -> None:
    code = ScriptedModel(["code"], name="coder")
    router = Router(
        [Route("code", lambda c: "```" in c.last_user_text, code)], default=ScriptedModel([])
    )

    response = await router.request(ask("fix ```x = 1```"))

    assert response.route == "code"
    assert response.served_by == "coder"
