"""Guards around each model call: what must hold before a call is made, and be settled after.

A guard is asked before every model call of a run (``before``): it may let the call go, wait
(a rate limit), or refuse it with a reason, and then the run pauses with that reason instead of
calling. After an answer it is told the call's cost and usage (``after``); when the driver stops
it may flush what it deferred (``finish``). The per-run cost cap (``Limits.max_cost_usd``) and
the budgets are guards (:mod:`keel._runtime.spending`), and so are the rate limits
(:mod:`keel._runtime.throttling`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from keel._core.eventbase import ErrorInfo
from keel._core.messages import AssistantMessage, Message, ModelRequest, ModelResponse
from keel._core.pricing import Price, PriceTable
from keel._core.state import RunState
from keel.errors import ModelError

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "GUARDED",
    "CallGuard",
    "CallPlan",
    "PromptCounter",
    "ended",
    "guarded",
    "prompt_tokens",
    "worst_case",
]

#: The reason codes of the pauses guards make (a replay refuses the same calls).
GUARDED = frozenset({"budget.exhausted", "budget.unpriced", "limit.max_cost_usd", "rate_limited"})

#: The output a call may produce when the agent sets no ``max_tokens`` and a cost cap applies:
#: the cap can only hold if every call's output is bounded, so it is bounded here.
DEFAULT_MAX_OUTPUT_TOKENS = 4096

# A conservative count: real tokenizers give about 4 bytes of English a token; 3 over-counts
# most text (and code), and every message carries a few tokens of framing.
_BYTES_PER_TOKEN = 3
_PER_MESSAGE = 8


def _count(text: str) -> int:
    return math.ceil(len(text.encode()) / _BYTES_PER_TOKEN)


def _message_tokens(message: Message) -> int:
    total = _PER_MESSAGE
    content = getattr(message, "content", None)
    if isinstance(content, str):
        total += _count(content)
    if isinstance(message, AssistantMessage):
        for call in message.tool_calls:
            total += _count(call.name) + _count(call.arguments) + _PER_MESSAGE
    return total


def prompt_tokens(request: ModelRequest) -> int:
    """A conservative estimate of the tokens ``request`` sends (messages, tools, schema)."""
    return sum(_message_tokens(m) for m in request.messages) + _fixed_tokens(request)


def _fixed_tokens(request: ModelRequest) -> int:
    total = 0
    for tool in request.tools:
        total += _count(tool.name) + _count(tool.description)
        total += _count(json.dumps(tool.parameters, separators=(",", ":")))
    if request.output_schema is not None:
        total += _count(json.dumps(request.output_schema, separators=(",", ":")))
    return total


class PromptCounter:
    """:func:`prompt_tokens` for the growing conversation of one run, counting each message
    once: a run's messages are appended to (and now and then one is replaced), so counting
    them all before every call would cost O(steps²) over the run."""

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._total = 0
        self._fixed: tuple[ModelRequest, int] | None = None

    def __call__(self, request: ModelRequest) -> int:
        messages = list(request.messages)
        known = len(self._messages)
        # List equality checks identity first, item by item, in C: the common case (the same
        # messages, more at the end) costs no Python per message. A replaced message that is
        # equal costs the same tokens anyway.
        if len(messages) >= known and messages[:known] == self._messages:
            self._total += sum(_message_tokens(m) for m in messages[known:])
        else:
            self._total = sum(_message_tokens(m) for m in messages)
        self._messages = messages
        if self._fixed is None or self._fixed[0] is not request:
            self._fixed = (request, _fixed_tokens(request))
        return self._total + self._fixed[1]


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What a call is about to be: the run, the step, the models that may serve it, its
    prompt estimate and the output it may produce."""

    state: RunState
    step: int
    models: tuple[str, ...]
    prompt_tokens: int
    max_output_tokens: int


def worst_case(plan: CallPlan, prices: PriceTable) -> tuple[float | None, str | None]:
    """The most the call can cost on any model that may serve it, or ``(None, model)`` naming
    a model whose price is unknown."""
    highest = 0.0
    for name in plan.models:
        price: Price | None = prices.price(name)
        if price is None:
            return None, name
        cost = (
            plan.prompt_tokens * price.input_per_mtok
            + plan.max_output_tokens * price.output_per_mtok
        ) / 1_000_000
        highest = max(highest, cost)
    return highest, None


class CallGuard(Protocol):
    """Asked around every model call of one run (see the module docstring)."""

    async def before(self, plan: CallPlan) -> ErrorInfo | None:
        """``None`` lets the call go; an error pauses the run with it as the reason."""
        ...

    async def after(
        self,
        plan: CallPlan,
        response: ModelResponse | None,
        cost: float | None,
        error: ModelError | None = None,
    ) -> None:
        """The call ended: with an answer and its cost (``None``: unknown), or failed (with
        the model's error, when it raised one); neither: it was not made after all (a later
        guard refused it)."""
        ...

    async def finish(self) -> None:
        """The driver stops driving the run: flush what was deferred."""
        ...


async def ended(
    guards: Sequence[CallGuard],
    plan: CallPlan | None,
    response: ModelResponse | None = None,
    cost: float | None = None,
    error: ModelError | None = None,
) -> None:
    """Tell every guard how the call ended (nothing to tell when no guard planned it)."""
    if plan is None:
        return
    for guard in guards:
        await guard.after(plan, response, cost, error)


async def guarded(guards: Sequence[CallGuard], plan: CallPlan) -> ErrorInfo | None:
    """Ask each guard in order; the first refusal wins: later guards are not asked, and the
    earlier ones are told the call was not made (``after`` with neither answer nor error)."""
    for index, guard in enumerate(guards):
        refused = await guard.before(plan)
        if refused is not None:
            for earlier in guards[:index]:
                await earlier.after(plan, None, None, None)
            return refused
    return None
