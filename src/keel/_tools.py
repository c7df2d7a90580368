"""Typed tools: the ``@tool`` decorator, the run context handed to tools, and ``ToolError``.

::

    @tool
    async def lookup_order(ctx: RunContext[Desk], order_id: str) -> dict[str, str]:
        \"\"\"Find an order by id.

        Args:
            order_id: The order number, e.g. 123.
        \"\"\"
        return ctx.deps.orders[order_id]

The JSON schema shown to the model comes from the type hints and the docstring. A parameter
annotated with :class:`RunContext` is injected by the runtime and hidden from the model. A
decorated function stays callable as before, so it can be unit-tested directly.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from keel._core.toolspec import ApprovalRule, SideEffects, ToolSpec, spec_from_function
from keel._core.usage import Usage
from keel.errors import ToolDefinitionError

__all__ = ["RunContext", "Tool", "ToolError", "as_tool", "tool"]

DepsT = TypeVar("DepsT")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContext(Generic[DepsT]):
    """What a tool learns about the call it serves.

    ``deps`` is whatever was passed as ``deps=`` to the run (a database handle, an API client):
    dependencies travel with the run, never through globals. ``idempotency_key`` is stable for
    this call across crashes and retries; pass it on to payment or email APIs so that a repeated
    call cannot act twice.
    """

    deps: DepsT
    run_id: str
    thread_id: str
    agent: str
    step: int
    tool_name: str
    tool_call_id: str
    idempotency_key: str
    usage: Usage
    #: 1 for a call's first attempt; more when a person let an interrupted call run again.
    attempt: int = 1


class ToolError(Exception):
    """Raise from a tool to send ``message`` to the model as the call's error result.

    Use it for failures the model can act on ("no order 999; ask the customer to check the
    number"). Any other exception is reported to the model too, as its type and message.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Tool:
    """A function the model may call, with its spec (schema and metadata).

    Calling a ``Tool`` calls the function, unchanged.
    """

    def __init__(self, function: Callable[..., Any], spec: ToolSpec, context_param: str | None):
        self.function = function
        self.spec = spec
        self.context_param = context_param
        self.is_async = inspect.iscoroutinefunction(function)
        functools.update_wrapper(self, function)

    @property
    def name(self) -> str:
        """The name the model calls the tool by."""
        return self.spec.name

    @property
    def original_name(self) -> str:
        """The name the tool was defined with: ``name`` unless that one had to be mapped to
        a name model APIs accept (``math.factorial`` is called ``math_factorial``)."""
        return self.spec.original_name or self.spec.name

    @classmethod
    def from_schema(
        cls,
        name: str,
        description: str,
        parameters_schema: Mapping[str, Any] | None,
        fn: Callable[..., Any],
        *,
        idempotent: bool = False,
        side_effects: SideEffects = "write",
        requires_approval: ApprovalRule = False,
        timeout_s: float | None = None,
        retries: int = 0,
        max_result_chars: int | None = None,
    ) -> Tool:
        """A tool from a JSON schema given as data, calling ``fn`` with the arguments.

        ``fn`` (sync or async) is called with the validated arguments as keyword arguments,
        plus the :class:`RunContext` if it has a parameter annotated with it; arguments the
        model leaves out are not passed, so ``fn``'s own defaults apply. Arguments are checked
        strictly against the schema before ``fn`` runs (missing or unknown arguments, wrong
        types, values outside an ``enum``), and refused with a message for the model.

        JSON-Schema-like schemas are accepted and normalized (``"dict"`` is ``"object"``,
        ``"float"`` is ``"number"``, ``"any"`` is no constraint...; see the guide
        "Tools from schemas"). A ``name`` that model APIs refuse (dots, spaces, over 64
        characters) is shown to the model mapped (``math.factorial`` -> ``math_factorial``);
        ``original_name`` keeps it. The other options are those of :func:`tool`.

        Raises :class:`~keel.errors.ToolDefinitionError` for a schema that is not JSON Schema
        even after normalizing, or a function that cannot take the calls the schema allows.
        """
        from keel._schema_tools import tool_from_schema

        return tool_from_schema(
            name,
            description,
            parameters_schema,
            fn,
            idempotent=idempotent,
            side_effects=side_effects,
            requires_approval=requires_approval,
            timeout_s=timeout_s,
            retries=retries,
            max_result_chars=max_result_chars,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        original = (
            "" if self.spec.original_name is None else f", original_name={self.original_name!r}"
        )
        return f"Tool(name={self.spec.name!r}{original}, idempotent={self.spec.idempotent})"

    def bind(self, context: RunContext[Any], arguments: dict[str, Any]) -> Callable[[], Any]:
        """A zero-argument callable that runs the tool with validated ``arguments``."""
        kwargs = arguments
        if self.context_param is not None:
            kwargs = {self.context_param: context, **arguments}
        return functools.partial(self.function, **kwargs)


def _context_param(function: Callable[..., Any]) -> str | None:
    """The name of the parameter annotated with ``RunContext``, if there is one."""
    try:
        hints = typing.get_type_hints(function)
    except (TypeError, NameError):
        return None  # spec_from_function reports unreadable annotations with a clear message
    found = [
        name
        for name, hint in hints.items()
        if name != "return" and (hint is RunContext or typing.get_origin(hint) is RunContext)
    ]
    if len(found) > 1:
        raise ToolDefinitionError(
            f"tool '{getattr(function, '__name__', function)}' has several RunContext "
            f"parameters ({', '.join(found)}); keep one"
        )
    return found[0] if found else None


def _make(
    function: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    idempotent: bool,
    side_effects: SideEffects,
    requires_approval: ApprovalRule,
    timeout_s: float | None,
    retries: int,
    coerce: bool = False,
    max_result_chars: int | None = None,
) -> Tool:
    if isinstance(function, Tool):
        return function
    if not callable(function):
        raise ToolDefinitionError(f"@tool needs a function, got {type(function).__name__}")
    context_param = _context_param(function)
    spec = spec_from_function(
        function,
        name=name,
        description=description,
        skip=(context_param,) if context_param else (),
        idempotent=idempotent,
        side_effects=side_effects,
        requires_approval=requires_approval,
        timeout_s=timeout_s,
        retries=retries,
        coerce=coerce,
        max_result_chars=max_result_chars,
    )
    return Tool(function, spec, context_param)


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool = False,
    side_effects: SideEffects = "write",
    requires_approval: ApprovalRule = False,
    timeout_s: float | None = None,
    retries: int = 0,
    coerce: bool = False,
    max_result_chars: int | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool = False,
    side_effects: SideEffects = "write",
    requires_approval: ApprovalRule = False,
    timeout_s: float | None = None,
    retries: int = 0,
    coerce: bool = False,
    max_result_chars: int | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function (sync or async) into a :class:`Tool`; usable bare or with options.

    Args:
        name: The name shown to the model (default: the function's name).
        description: Overrides the docstring as the tool's description.
        idempotent: Calling twice with the same idempotency key acts once. Only idempotent
            tools are re-run after a crash or retried.
        side_effects: ``"none"``, ``"read"`` or ``"write"`` (the default, the cautious one).
        requires_approval: ``True``, or a predicate on the validated arguments, to make a
            person approve the call first.
        timeout_s: Per-call timeout; defaults to the run's ``Limits.tool_timeout_s``.
        retries: Try a call that raised or timed out this many more times (with a short
            backoff) before its error goes to the model. Only for tools that are safe to
            repeat: ``idempotent=True`` or ``side_effects`` ``"none"``/``"read"``.
            A call of a tool that is not safe to repeat that times out is not retried: its
            effect is in doubt, and the run asks a person, as after a crash.
        coerce: Let pydantic convert arguments that do not match the schema exactly (``"3"``
            for an ``int``); by default they are refused and the model is told why.
        max_result_chars: Cut results longer than this (default: the run's
            ``Limits.max_tool_result_chars``); the model is told the result was cut.
    """
    options: dict[str, Any] = {
        "name": name,
        "description": description,
        "idempotent": idempotent,
        "side_effects": side_effects,
        "requires_approval": requires_approval,
        "timeout_s": timeout_s,
        "retries": retries,
        "coerce": coerce,
        "max_result_chars": max_result_chars,
    }
    if function is not None:
        return _make(function, **options)
    return lambda fn: _make(fn, **options)


def as_tool(candidate: Tool | Callable[..., Any]) -> Tool:
    """A :class:`Tool` as is; a plain function wrapped with the default options."""
    return candidate if isinstance(candidate, Tool) else tool(candidate)
