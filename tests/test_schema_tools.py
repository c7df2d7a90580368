"""Tool.from_schema: tools from a schema given as data, checked strictly before they run, with
names mapped to ones model APIs accept, and through the runtime with a scripted model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keel import Agent, RunContext, Runtime, Tool
from keel._core.events import ToolCallFinished, ToolCallStarted
from keel._core.toolspec import ToolArgumentsError
from keel.errors import ToolDefinitionError
from keel.testing import MemoryStore, ScriptedModel, call
from tests.test_tools import context

FACTORIAL = {
    "type": "dict",
    "properties": {
        "number": {"type": "integer", "description": "The number."},
        "style": {"type": "string", "enum": ["plain", "scientific"], "default": "plain"},
    },
    "required": ["number"],
}


def factorial_tool(calls: list[dict[str, Any]]) -> Tool:
    def factorial(number: int, style: str = "plain") -> int:
        calls.append({"number": number, "style": style})
        result = 1
        for n in range(2, number + 1):
            result *= n
        return result

    return Tool.from_schema("math.factorial", "Compute n!.", FACTORIAL, factorial)


def test_the_model_sees_a_safe_name_and_json_schema_and_the_original_name_is_kept() -> None:
    tool = factorial_tool([])

    assert (tool.name, tool.original_name) == ("math_factorial", "math.factorial")
    assert tool.spec.definition.name == "math_factorial"
    assert tool.spec.parameters == {
        "type": "object",
        "properties": FACTORIAL["properties"],
        "required": ["number"],
        "additionalProperties": False,
    }
    assert "original_name='math.factorial'" in repr(tool)


def test_a_name_models_accept_is_kept_as_it_is() -> None:
    tool = Tool.from_schema("lookup", "", {"type": "object", "properties": {}}, lambda: None)
    assert (tool.name, tool.original_name, tool.spec.original_name) == ("lookup", "lookup", None)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "missing required argument 'number'"),
        ({"number": "5"}, 'number: expected integer, got string "5"'),
        ({"number": 5.0}, "number: expected integer, got number 5.0"),
        ({"number": True}, "number: expected integer, got boolean true"),
        ({"number": 5, "style": "fancy"}, 'style: "fancy" is not one of "plain", "scientific"'),
        ({"number": 5, "digits": 3}, "unexpected argument 'digits'"),
    ],
)
def test_bad_arguments_are_refused_with_a_message_naming_the_field(
    arguments: dict[str, Any], problem: str
) -> None:
    calls: list[dict[str, Any]] = []
    tool = factorial_tool(calls)

    with pytest.raises(ToolArgumentsError) as raised:
        tool.spec.validate(json.dumps(arguments))

    assert raised.value.message.startswith(
        "invalid arguments for tool 'math_factorial' (math.factorial): "
    )
    assert problem in raised.value.message
    assert raised.value.message.endswith("Expected: number (integer), style (string, optional)")
    assert calls == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "are not valid JSON"),
        ('{"number": NaN}', "NaN is not a JSON number"),
        ("[5]", "must be a JSON object"),
    ],
)
def test_malformed_arguments_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ToolArgumentsError, match=problem):
        factorial_tool([]).spec.validate(text)


def test_valid_arguments_reach_the_function_as_keywords_and_left_out_ones_are_not_passed() -> None:
    calls: list[dict[str, Any]] = []
    tool = factorial_tool(calls)

    arguments = tool.spec.validate('{"number": 5}')

    assert arguments == {"number": 5}
    assert tool.bind(context(), arguments)() == 120
    assert calls == [{"number": 5, "style": "plain"}]  # the function's own default


def test_nested_fields_are_checked_and_named_by_their_path() -> None:
    schema = {
        "type": "dict",
        "properties": {
            "trip": {
                "type": "dict",
                "properties": {"city": {"type": "string"}, "nights": {"type": "integer"}},
                "required": ["city"],
            }
        },
    }
    tool = Tool.from_schema("book", "", schema, lambda trip=None: trip)

    with pytest.raises(ToolArgumentsError) as raised:
        tool.spec.validate('{"trip": {"nights": "2"}}')

    assert "trip: missing required field 'city'" in raised.value.message
    assert 'trip.nights: expected integer, got string "2"' in raised.value.message


def test_a_schema_that_allows_more_arguments_passes_them_on() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    tool = Tool.from_schema("free", "", {**schema, "additionalProperties": True}, lambda **kw: kw)
    assert tool.spec.validate('{"a": 1, "b": 2}') == {"a": 1, "b": 2}


async def test_an_async_function_with_a_run_context_gets_the_context() -> None:
    async def greet(ctx: RunContext[str], name: str) -> str:
        return f"{ctx.deps}, {name}"

    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    tool = Tool.from_schema("greet", "Greet.", schema, greet)

    assert (tool.is_async, tool.context_param) == (True, "ctx")
    assert await tool.bind(context("Hello"), {"name": "Ana"})() == "Hello, Ana"


@pytest.mark.parametrize(
    ("schema", "fn", "problem"),
    [
        ({"type": "object", "properties": {"a": {"type": "integer"}}}, lambda: 1, "'a'"),
        ({"type": "object", "properties": {}}, lambda a: a, "requires 'a'"),
        ({"type": "object", "properties": {"a": {}}}, lambda a: a, "requires 'a'"),
        ({"type": "object", "additionalProperties": True}, lambda: 1, "does not name"),
    ],
)
def test_a_function_that_cannot_take_the_calls_the_schema_allows_is_refused(
    schema: dict[str, Any], fn: Any, problem: str
) -> None:
    with pytest.raises(ToolDefinitionError, match=problem):
        Tool.from_schema("t", "", schema, fn)


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {"type": "decimal"}}}, "properties.a.type"),
        ({"type": "object", "required": "a"}, "not valid JSON Schema at required"),
        ({"type": "string"}, "must describe an object"),
        ([1], "must be a JSON object"),
    ],
)
def test_a_schema_that_is_not_json_schema_even_normalized_is_refused(
    schema: Any, problem: str
) -> None:
    with pytest.raises(ToolDefinitionError, match=problem):
        Tool.from_schema("t", "", schema, lambda **kw: kw)


@pytest.mark.parametrize("name", ["", "  ", None])
def test_a_tool_needs_a_name(name: Any) -> None:
    with pytest.raises(ToolDefinitionError, match="non-empty name"):
        Tool.from_schema(name, "", {}, lambda: 1)


def test_an_agent_refuses_two_tools_whose_mapped_names_collide() -> None:
    first = Tool.from_schema("math.sum", "", {}, lambda: 1)
    second = Tool.from_schema("math_sum", "", {}, lambda: 2)

    with pytest.raises(ToolDefinitionError) as raised:
        Agent(name="a", model="rules", tools=[first, second])

    assert "two tools named 'math_sum'" in str(raised.value)
    assert "defined as 'math.sum' and 'math_sum'" in str(raised.value)


async def test_the_runtime_runs_a_call_by_its_safe_name_and_sends_a_wrong_one_back() -> None:
    calls: list[dict[str, Any]] = []
    model = ScriptedModel(
        [
            call("math_factorial", number=5),
            call("math_factorial", number="5"),
            "5! is 120.",
        ]
    )
    agent = Agent(name="calc", model=model, tools=[factorial_tool(calls)])
    runtime = Runtime(store=MemoryStore())

    result = await runtime.run(agent, "What is 5!?")

    assert (result.status, result.output) == ("completed", "5! is 120.")
    assert calls == [{"number": 5, "style": "plain"}]  # the wrong call never ran
    events = await runtime.store.load(result.run_id)
    [started] = [e for e in events if isinstance(e, ToolCallStarted)]
    ran, refused = [e for e in events if isinstance(e, ToolCallFinished)]
    assert (started.call.name, ran.result, ran.error) == ("math_factorial", "120", None)
    assert refused.error is not None
    assert refused.error.code == "tool_arguments_invalid"
    assert "(math.factorial)" in refused.error.message  # the original name, findable
    assert 'number: expected integer, got string "5"' in refused.error.message
    told = model.requests[2].messages[-1]
    assert told.role == "tool"
    assert "expected integer" in str(told)
    # From the journal's name back to the definition's.
    assert agent.tools_by_name[started.call.name].original_name == "math.factorial"
