"""The @tool decorator: bare and with options, context injection, and definition errors."""

from __future__ import annotations

from typing import Any

import pytest

from keel import RunContext, Tool, tool
from keel._core.usage import Usage
from keel._tools import as_tool
from keel.errors import ToolDefinitionError


def context(deps: Any = None) -> RunContext[Any]:
    return RunContext(
        deps=deps,
        run_id="run_1",
        thread_id="t",
        agent="a",
        step=1,
        tool_name="x",
        tool_call_id="c",
        idempotency_key="run_1:1:0",
        usage=Usage(),
    )


def test_bare_decorator_keeps_the_function_callable() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    assert isinstance(add, Tool)
    assert add(2, 3) == 5
    assert add.name == "add"
    assert add.__doc__ == "Add two numbers."
    assert add.spec.side_effects == "write"  # the cautious default
    assert not add.spec.idempotent
    assert not add.is_async


def test_options_are_kept_in_the_spec() -> None:
    @tool(name="find", idempotent=True, side_effects="read", timeout_s=3, description="Look.")
    async def lookup(order_id: str) -> str:
        """Ignored: description= wins."""
        return order_id

    assert lookup.name == "find"
    assert lookup.is_async
    assert (lookup.spec.idempotent, lookup.spec.side_effects, lookup.spec.timeout_s) == (
        True,
        "read",
        3,
    )
    assert lookup.spec.description == "Look."
    assert lookup.spec.safe_to_repeat


def test_write_tools_are_safe_to_repeat_only_when_idempotent() -> None:
    def pay(amount: float) -> None:
        """Pay."""

    assert not tool(pay).spec.safe_to_repeat
    assert tool(idempotent=True)(pay).spec.safe_to_repeat


def test_the_run_context_is_injected_and_hidden_from_the_model() -> None:
    @tool
    def greet(ctx: RunContext[str], name: str) -> str:
        """Greet someone."""
        return f"{ctx.deps}, {name}"

    assert greet.context_param == "ctx"
    assert list(greet.spec.parameters["properties"]) == ["name"]
    assert greet.bind(context("Hello"), {"name": "Ana"})() == "Hello, Ana"


def test_the_context_parameter_may_have_any_name_and_position() -> None:
    @tool
    def greet(name: str, run: RunContext[Any]) -> str:
        """Greet."""
        return f"{name} in {run.run_id}"

    assert greet.context_param == "run"
    assert greet.bind(context(), {"name": "Ana"})() == "Ana in run_1"


def test_two_context_parameters_are_refused() -> None:
    def f(a: RunContext[Any], b: RunContext[Any]) -> None:
        """x"""

    with pytest.raises(ToolDefinitionError, match="several RunContext parameters"):
        tool(f)


def test_decorating_twice_returns_the_same_tool() -> None:
    @tool
    def ping() -> str:
        """Ping."""
        return "pong"

    assert tool(ping) is ping
    assert as_tool(ping) is ping


def test_plain_functions_become_tools_with_default_options() -> None:
    def ping() -> str:
        """Ping."""
        return "pong"

    wrapped = as_tool(ping)
    assert isinstance(wrapped, Tool)
    assert wrapped.name == "ping"


def test_non_callables_are_refused() -> None:
    with pytest.raises(ToolDefinitionError, match="needs a function"):
        tool(42)  # type: ignore[call-overload]


def test_retries_are_refused_for_tools_that_are_not_safe_to_repeat() -> None:
    def pay(amount_usd: float) -> str:
        """Pay."""
        return "paid"

    with pytest.raises(ToolDefinitionError, match="not safe to repeat: a retry could act twice"):
        tool(retries=2)(pay)
    assert tool(retries=2, idempotent=True)(pay).spec.retries == 2
    with pytest.raises(ToolDefinitionError, match="retries must be 0 or more"):
        tool(retries=-1, side_effects="read")(pay)
