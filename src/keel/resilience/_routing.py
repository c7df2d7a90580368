"""Send each request to the model its declared rules choose.

::

    model = Router(
        [
            Route("short", all_of(short_input(2_000), no_tools()), OpenAIModel("gpt-4o-mini")),
            Route("few-tools", few_tools(3), AnthropicModel("claude-3-5-haiku-latest")),
        ],
        default=OpenAIModel("gpt-4o"),
    )

Rules are checked in order; the first whose ``when`` is true chooses the model, and a request
no rule takes goes to ``default``. A rule is any function of a :class:`RouteContext`, which
measures the request (estimated tokens, messages, tools, output schema, the last user text)
and holds the request itself. The response says which rule chose (``route``, ``"default"``
when none did) and which model answered (``served_by``: the chosen model's own report when it
made one, a fallback chain's for instance, else its name); the runtime journals both and prices
the answer by ``served_by``. A model error from the chosen model propagates unchanged, with its
attempts: the router has no second choice (wrap it in a fallback for that).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from keel._core.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    UserMessage,
)
from keel.errors import ConfigurationError
from keel.ports import Model

__all__ = [
    "DEFAULT_ROUTE",
    "Route",
    "RouteContext",
    "RoutePredicate",
    "Router",
    "all_of",
    "any_of",
    "few_tools",
    "no_tools",
    "short_input",
]

DEFAULT_ROUTE = "default"
"""The ``route`` of a response no rule chose."""

#: About how many characters make a token, across tokenizers and languages; good enough to
#: tell a short request from a long one, not to count cost.
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True, eq=False)
class RouteContext:
    """What a routing rule may look at: measurements of ``request``, computed when first
    asked for, and the request itself."""

    request: ModelRequest

    @cached_property
    def estimated_input_tokens(self) -> int:
        """About a token per 4 characters of the request's text: every message's content,
        its tool calls' names and arguments, and each tool's name, description and JSON
        schema (and the output schema, if any)."""
        return math.ceil(self.input_chars / _CHARS_PER_TOKEN)

    @cached_property
    def input_chars(self) -> int:
        """The characters :attr:`estimated_input_tokens` is counted from."""
        request = self.request
        chars = 0
        for message in request.messages:
            chars += len(message.content or "")
            if isinstance(message, AssistantMessage):
                chars += sum(len(c.name) + len(c.arguments) for c in message.tool_calls)
        for tool in request.tools:
            chars += len(tool.name) + len(tool.description) + len(_json(tool.parameters))
        if request.output_schema is not None:
            chars += len(request.output_name) + len(_json(request.output_schema))
        return chars

    @property
    def message_count(self) -> int:
        """How many messages the request holds (system, user, assistant and tool results)."""
        return len(self.request.messages)

    @property
    def tool_count(self) -> int:
        """How many tools the model is offered."""
        return len(self.request.tools)

    @property
    def has_output_schema(self) -> bool:
        """Whether the answer must follow a JSON schema (structured output)."""
        return self.request.output_schema is not None

    @cached_property
    def last_user_text(self) -> str:
        """The content of the last user message (``""`` if there is none)."""
        for message in reversed(self.request.messages):
            if isinstance(message, UserMessage):
                return message.content
        return ""


RoutePredicate = Callable[[RouteContext], bool]
"""A routing rule's test: true to take the request."""


@dataclass(frozen=True, slots=True)
class Route:
    """A named rule: requests for which ``when`` is true go to ``model``."""

    name: str
    when: RoutePredicate
    model: Model

    def __post_init__(self) -> None:
        if not self.name or self.name == DEFAULT_ROUTE:
            raise ConfigurationError(
                f"a route needs a name other than '' and {DEFAULT_ROUTE!r} (the name of "
                f"requests no route takes), got {self.name!r}"
            )
        if not callable(self.when):
            raise TypeError(f"route {self.name!r}: when must be a function of a RouteContext")


class Router(Model):
    """Chooses, per request, the model of the first route whose rule is true, else
    ``default``.

    Args:
        routes: The rules, in the order they are checked; names must be distinct.
        default: The model for requests no route takes.
        name: The router's name; by default it lists the routes, like
            ``router(short->openai:gpt-4o-mini,default->openai:gpt-4o)``.
    """

    def __init__(self, routes: Sequence[Route], default: Model, *, name: str | None = None) -> None:
        self._routes = tuple(routes)
        names = [route.name for route in self._routes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigurationError(
                f"route names must be distinct; repeated: {', '.join(duplicates)}"
            )
        self._default = default
        if name is None:
            chosen = [f"{r.name}->{r.model.name}" for r in self._routes]
            chosen.append(f"{DEFAULT_ROUTE}->{default.name}")
            name = f"router({','.join(chosen)})"
        self._name = name

    def __repr__(self) -> str:
        return f"Router({self._name!r})"

    @property
    def name(self) -> str:
        """The router's name."""
        return self._name

    @property
    def routes(self) -> tuple[Route, ...]:
        """The routes, in the order they are checked."""
        return self._routes

    @property
    def default(self) -> Model:
        """The model for requests no route takes."""
        return self._default

    def choose(self, request: ModelRequest) -> tuple[str, Model]:
        """The name of the route that takes ``request`` (``"default"`` if none) and its model."""
        context = RouteContext(request)
        for route in self._routes:
            if route.when(context):
                return route.name, route.model
        return DEFAULT_ROUTE, self._default

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send ``request`` to the chosen model; its response says the route and model."""
        route, model = self.choose(request)
        return _mark(await model.request(request), route, model)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream from the chosen model; the final response says the route and model."""
        route, model = self.choose(request)
        async for event in model.stream(request):
            if isinstance(event, StreamComplete):
                yield StreamComplete(response=_mark(event.response, route, model))
            else:
                yield event

    async def aclose(self) -> None:
        """Close every model of the router, once each."""
        seen: set[int] = set()
        for model in (*(r.model for r in self._routes), self._default):
            if id(model) not in seen:
                seen.add(id(model))
                await model.aclose()


def _mark(response: ModelResponse, route: str, model: Model) -> ModelResponse:
    return replace(response, route=route, served_by=response.served_by or model.name)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


# --- ready-made rules ---------------------------------------------------------------------


def short_input(max_tokens: int) -> RoutePredicate:
    """True when the request's estimated input is at most ``max_tokens`` tokens."""
    if max_tokens < 0:
        raise ConfigurationError(f"max_tokens must be 0 or more, got {max_tokens}")

    def short(context: RouteContext) -> bool:
        return context.estimated_input_tokens <= max_tokens

    short.__qualname__ = f"short_input({max_tokens})"
    return short


def few_tools(max_tools: int) -> RoutePredicate:
    """True when the model is offered at most ``max_tools`` tools."""
    if max_tools < 0:
        raise ConfigurationError(f"max_tools must be 0 or more, got {max_tools}")

    def few(context: RouteContext) -> bool:
        return context.tool_count <= max_tools

    few.__qualname__ = f"few_tools({max_tools})"
    return few


def no_tools() -> RoutePredicate:
    """True when the model is offered no tools."""
    return few_tools(0)


def all_of(*predicates: RoutePredicate) -> RoutePredicate:
    """True when every one of ``predicates`` is (checked in order, stopping at a false one)."""
    checked = _check_predicates("all_of", predicates)

    def every(context: RouteContext) -> bool:
        return all(predicate(context) for predicate in checked)

    return every


def any_of(*predicates: RoutePredicate) -> RoutePredicate:
    """True when one of ``predicates`` is (checked in order, stopping at a true one)."""
    checked = _check_predicates("any_of", predicates)

    def some(context: RouteContext) -> bool:
        return any(predicate(context) for predicate in checked)

    return some


def _check_predicates(
    combinator: str, predicates: tuple[RoutePredicate, ...]
) -> tuple[RoutePredicate, ...]:
    if not predicates:
        raise ConfigurationError(f"{combinator}() needs at least one rule")
    for predicate in predicates:
        if not callable(predicate):
            raise TypeError(
                f"{combinator}() takes rules (functions of a RouteContext), got "
                f"{type(predicate).__name__}"
            )
    return predicates
