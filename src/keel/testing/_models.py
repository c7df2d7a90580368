"""Models for tests: a scripted model that plays back answers, and a function model.

::

    model = ScriptedModel([
        call("lookup_order", order_id="123"),      # turn 1: one tool call
        "Your order ships today.",                  # turn 2: the final answer
    ])
    result = await runtime.run(agent, "Where is order 123?", model=model)
    model.assert_complete()
    assert model.requests[1].messages[-1].content == '{"status": "shipped"}'
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from keel._core.messages import AssistantMessage, ModelRequest, ModelResponse, ToolCall
from keel._core.usage import Usage
from keel.ports import Model

__all__ = ["FunctionModel", "Scripted", "ScriptedModel", "call"]

Scripted = str | ToolCall | Sequence[ToolCall] | AssistantMessage | ModelResponse | BaseException
"""One scripted turn: final text, one or several tool calls, a whole message or response, or
an exception to raise (e.g. a :class:`keel.errors.ModelHTTPError` to simulate an outage)."""


def call(name: str, arguments: Mapping[str, Any] | str | None = None, /, **kwargs: Any) -> ToolCall:
    """A tool call for a script: ``call("lookup", order_id="1")`` or ``call("lookup", "{bad")``.

    A str is sent as the raw argument text, unparsed, to script malformed arguments.
    """
    if isinstance(arguments, str):
        if kwargs:
            raise TypeError("call() takes raw argument text or keyword arguments, not both")
        text = arguments
    else:
        text = json.dumps({**(arguments or {}), **kwargs})
    return ToolCall(id="", name=name, arguments=text)


_ONE_REQUEST = Usage(requests=1)


def _as_response(item: Scripted, model: str, number: int) -> ModelResponse:
    # The two common turns are built in one go: a test double must cost less than the
    # runtime it tests.
    if isinstance(item, str):
        return ModelResponse(
            message=AssistantMessage(content=item),
            usage=_ONE_REQUEST,
            model=model,
            finish_reason="stop",
        )
    if isinstance(item, ToolCall):
        named = (
            item
            if item.id
            else ToolCall(id=f"call_{number}_0", name=item.name, arguments=item.arguments)
        )
        return ModelResponse(
            message=AssistantMessage(tool_calls=(named,)),
            usage=_ONE_REQUEST,
            model=model,
            finish_reason="tool_calls",
        )
    if isinstance(item, ModelResponse):
        response = item
    elif isinstance(item, AssistantMessage):
        response = ModelResponse(message=item)
    elif isinstance(item, str):
        response = ModelResponse(message=AssistantMessage(content=item))
    elif isinstance(item, ToolCall):
        response = ModelResponse(message=AssistantMessage(tool_calls=(item,)))
    elif isinstance(item, Sequence) and all(isinstance(c, ToolCall) for c in item):
        calls = tuple(c for c in item if isinstance(c, ToolCall))
        response = ModelResponse(message=AssistantMessage(tool_calls=calls))
    else:
        raise TypeError(
            f"cannot script a model turn from {type(item).__name__}; use a str, call(...), a "
            "list of call(...), an AssistantMessage, a ModelResponse or an exception"
        )
    message = response.message
    if any(not c.id for c in message.tool_calls):
        calls = tuple(
            c if c.id else replace(c, id=f"call_{number}_{i}")
            for i, c in enumerate(message.tool_calls)
        )
        message = replace(message, tool_calls=calls)
    usage = response.usage if response.usage.requests else replace(response.usage, requests=1)
    finish = response.finish_reason or ("tool_calls" if message.tool_calls else "stop")
    return replace(
        response, message=message, usage=usage, model=response.model or model, finish_reason=finish
    )


class ScriptedModel(Model):
    """Plays back a script, one item per request, and records every request it gets.

    Running out of script raises ``AssertionError`` naming the request; :meth:`assert_complete`
    checks that the whole script was used. ``name`` decides pricing (``scripted`` is free).
    """

    def __init__(self, script: Iterable[Scripted], *, name: str = "scripted") -> None:
        self._script = list(script)
        self._name = name
        self._next = 0
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        """The model's name."""
        return self._name

    @property
    def remaining(self) -> int:
        """How many scripted turns have not been played."""
        return len(self._script) - self._next

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The next scripted turn (or raise the scripted exception)."""
        # A copy of the messages: the runtime's list keeps growing after this call.
        self.requests.append(replace(request, messages=list(request.messages)))
        if self._next >= len(self._script):
            raise AssertionError(
                f"ScriptedModel got request #{len(self.requests)} but its script has only "
                f"{len(self._script)} turn(s); add more turns to the script"
            )
        item = self._script[self._next]
        self._next += 1
        if isinstance(item, BaseException):
            raise item
        return _as_response(item, self._name, self._next)

    def assert_complete(self) -> None:
        """Raise ``AssertionError`` if some scripted turns were never requested."""
        if self.remaining:
            unused = self._script[self._next :]
            raise AssertionError(
                f"ScriptedModel: {self.remaining} scripted turn(s) were not used: {unused!r}"
            )


FunctionResult = Scripted
ModelFunction = Callable[[ModelRequest], FunctionResult | Awaitable[FunctionResult]]


class FunctionModel(Model):
    """A model whose every turn is decided by a Python function (sync or async).

    The function receives the :class:`ModelRequest` and returns what a script item may be.
    It is meant to cost less than the runtime it tests: it counts requests (``calls``) but
    keeps none unless asked (``record=True`` keeps a copy of each in ``requests``).
    """

    def __init__(
        self, function: ModelFunction, *, name: str = "function", record: bool = False
    ) -> None:
        self._function = function
        self._name = name
        self._record = record
        self._async = inspect.iscoroutinefunction(function)
        self.calls = 0
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        """The model's name."""
        return self._name

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Ask the function for this turn."""
        self.calls += 1
        if self._record:
            self.requests.append(replace(request, messages=list(request.messages)))
        result = self._function(request)
        if self._async or inspect.isawaitable(result):
            result = await result  # type: ignore[misc]
        if isinstance(result, BaseException):
            raise result
        return _as_response(result, self._name, self.calls)
