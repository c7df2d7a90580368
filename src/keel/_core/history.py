"""How much of a thread's conversation a run sends to the model.

A thread grows with every run; sending all of it would make turn 200 cost 800 messages. A
:class:`History` budget keeps the latest messages (by count, and optionally by an estimate of
tokens). The cut is made at the start of a user's message, so a tool call is never separated
from its result. What is left out can be summed up by a hook (``summarize``), whose answer the
runtime journals with the run, so a replay or a resume sees the same history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from keel._core.messages import AssistantMessage, Message
from keel.errors import ConfigurationError

__all__ = ["History", "Summarizer", "estimate_tokens", "history_start"]

Summarizer = Callable[[Sequence[Message]], str | Awaitable[str]]
"""Sums up the messages left out of a run's history (sync or async)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """The part of a thread's conversation a run is given.

    Attributes:
        max_messages: Keep at most this many of the latest messages (``None``: no count limit).
        max_tokens: Keep at most about this many tokens of them (an estimate: four characters
            a token; ``None``: no token limit).
        summarize: Called with the messages left out; its text is shown to the model as a
            summary of the earlier conversation.
    """

    max_messages: int | None = 100
    max_tokens: int | None = None
    summarize: Summarizer | None = None

    def __post_init__(self) -> None:
        for name in ("max_messages", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigurationError(
                    f"History.{name} must be None or an int of at least 1, got {value!r}"
                )


def estimate_tokens(message: Message) -> int:
    """About how many tokens a message costs (four characters a token, at least one)."""
    size = len(message.content or "") if hasattr(message, "content") else 0
    if isinstance(message, AssistantMessage):
        size += sum(len(call.name) + len(call.arguments) for call in message.tool_calls)
    return max(1, size // 4)


def history_start(messages: Sequence[Message], budget: History) -> int:
    """The index of the first message of ``messages`` to keep under ``budget``.

    The kept part starts at a user's message. If the budget is smaller than the latest
    exchange, the latest exchange is kept whole anyway: a run never starts mid-exchange.
    """
    total = len(messages)
    start = 0
    if budget.max_messages is not None and total > budget.max_messages:
        start = total - budget.max_messages
    if budget.max_tokens is not None:
        tokens = 0
        index = total
        while index > start:
            cost = estimate_tokens(messages[index - 1])
            if tokens + cost > budget.max_tokens:
                break
            tokens += cost
            index -= 1
        start = index
    if start == 0:
        return 0
    for index in range(start, total):
        if messages[index].role == "user":
            return index
    for index in range(start - 1, -1, -1):  # no user message within budget: the last exchange
        if messages[index].role == "user":
            return index
    return 0
