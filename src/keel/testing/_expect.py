"""Assertions on a run: status, output, tool calls, cost and step bounds, each failing with
the run's timeline in its message.

::

    expect(result, events).completed().output("It shipped.").calls(
        call("lookup_order", order_id="123")
    ).cost_at_most(0.01)

``events`` (the run's journal) makes the failure message the timeline ``keel runs show``
prints; without them the message lists the run's messages instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from keel._cli.timeline import format_cost, render_timeline
from keel._core.events import Event, RunStatus
from keel._core.messages import AssistantMessage, Message, ToolResultMessage, UserMessage
from keel._runtime.result import RunResult
from keel.testing._calls import (
    CallMode,
    ToolCallRecord,
    as_expected,
    calls_from_events,
    calls_from_messages,
    compare_calls,
)
from keel.testing._matchers import mismatch

__all__ = ["RunExpectation", "assert_run", "expect"]


def _message_lines(messages: Sequence[Message]) -> list[str]:
    lines = []
    for message in messages:
        if isinstance(message, UserMessage):
            lines.append(f"  user       {message.content}")
        elif isinstance(message, AssistantMessage):
            if message.content:
                lines.append(f"  assistant  {message.content}")
            lines += [f"  assistant  asks {c.name}({c.arguments})" for c in message.tool_calls]
        elif isinstance(message, ToolResultMessage):
            lines.append(f"  tool       {message.name} -> {message.content}")
    return lines


class RunExpectation:
    """Checks on one run; each method raises ``AssertionError`` (with the run's timeline) or
    returns the expectation, so checks chain. Made by :func:`expect`."""

    def __init__(self, result: RunResult[Any], events: Sequence[Event] | None = None) -> None:
        self.result = result
        self.events = list(events) if events is not None else None
        self.tool_calls: list[ToolCallRecord] = (
            calls_from_events(self.events) if self.events else calls_from_messages(result.messages)
        )

    def timeline(self) -> str:
        """The run as text: its journal's timeline, or its messages without a journal."""
        result = self.result
        head = (
            f"run {result.run_id} ({result.agent}, model {result.model}): {result.status}, "
            f"{result.steps} step(s), {result.tool_calls} tool call(s), "
            f"{result.usage.total_tokens} token(s), cost {format_cost(result.cost_usd)}"
        )
        if result.reason is not None:
            head += f"\nreason: {result.reason.message} [{result.reason.code}]"
        body = render_timeline(self.events) if self.events else _message_lines(result.messages)
        return "\n".join([head, "timeline:", *body])

    def fail(self, message: str) -> AssertionError:
        """An ``AssertionError`` saying ``message``, then the run's timeline."""
        return AssertionError(f"{message}\n\n{self.timeline()}")

    def status(self, status: RunStatus) -> RunExpectation:
        """The run ended with ``status``."""
        if self.result.status != status:
            raise self.fail(f"expected the run to be {status}, it is {self.result.status}")
        return self

    def completed(self) -> RunExpectation:
        """The run completed."""
        return self.status("completed")

    def output(self, expected: Any) -> RunExpectation:
        """The run completed with this output (matchers allowed: ``ANY``, a regex, a
        callable, nested in dicts and lists)."""
        self.completed()
        value = self.result.final_output
        data = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        why = mismatch(expected, data, "output")
        if why is not None and mismatch(expected, value, "output") is not None:
            raise self.fail(f"unexpected output: {why}")
        return self

    def output_contains(self, text: str) -> RunExpectation:
        """The run completed and its output, as text, holds ``text``."""
        self.completed()
        value = self.result.final_output
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        if text not in shown:
            raise self.fail(f"expected the output to contain {text!r}, it is {shown!r}")
        return self

    def calls(self, *expected: Any, mode: CallMode = "exact") -> RunExpectation:
        """The run's tool calls: each expected call a ``call(...)``, a name, an
        ``ExpectedCall`` or ``{"name":..., "arguments":...}``; ``mode`` is ``exact`` (these
        calls, in this order, no others), ``in_order`` (these, in this order, others
        between allowed) or ``subset`` (these, in any order)."""
        wanted = [as_expected(item) for item in expected]
        _, why = compare_calls(wanted, self.tool_calls, mode)
        if why is not None:
            made = ", ".join(str(c) for c in self.tool_calls) or "none"
            want = ", ".join(str(c) for c in wanted) or "none"
            raise self.fail(
                f"tool calls do not match ({mode}): {why}\n  expected: {want}\n  made:     {made}"
            )
        return self

    def calls_in_order(self, *expected: Any) -> RunExpectation:
        """:meth:`calls` with ``mode="in_order"``."""
        return self.calls(*expected, mode="in_order")

    def calls_include(self, *expected: Any) -> RunExpectation:
        """:meth:`calls` with ``mode="subset"``."""
        return self.calls(*expected, mode="subset")

    def no_calls(self) -> RunExpectation:
        """The run called no tool."""
        return self.calls()

    def cost_at_most(self, usd: float) -> RunExpectation:
        """The run cost at most ``usd`` dollars (an unknown cost fails)."""
        cost = self.result.cost_usd
        if cost is None or cost > usd:
            raise self.fail(
                f"expected a cost of at most {format_cost(usd)}, it was {format_cost(cost)}"
            )
        return self

    def steps_at_most(self, steps: int) -> RunExpectation:
        """The run took at most ``steps`` model turns."""
        if self.result.steps > steps:
            raise self.fail(f"expected at most {steps} step(s), took {self.result.steps}")
        return self

    def tokens_at_most(self, tokens: int) -> RunExpectation:
        """The run used at most ``tokens`` tokens in all."""
        used = self.result.usage.total_tokens
        if used > tokens:
            raise self.fail(f"expected at most {tokens} token(s), used {used}")
        return self

    def tool_calls_at_most(self, count: int) -> RunExpectation:
        """The run made at most ``count`` tool calls."""
        if self.result.tool_calls > count:
            raise self.fail(f"expected at most {count} tool call(s), made {self.result.tool_calls}")
        return self


def expect(result: RunResult[Any], events: Sequence[Event] | None = None) -> RunExpectation:
    """Checks on ``result``; pass its journal (``await runtime.store.load(result.run_id)``,
    or the ``keel_runtime`` fixture's ``events(result)``) for a full timeline on failure."""
    return RunExpectation(result, events)


_UNSET: Any = object()


def assert_run(
    result: RunResult[Any],
    *,
    status: RunStatus | None = "completed",
    output: Any = _UNSET,
    calls: Sequence[Any] | None = None,
    mode: CallMode = "exact",
    max_cost: float | None = None,
    max_steps: int | None = None,
    max_tokens: int | None = None,
    events: Sequence[Event] | None = None,
) -> RunExpectation:
    """Every check of :class:`RunExpectation` in one call, by keyword: the status (default
    ``completed``; ``None``: any), the output, the tool calls (with ``mode``), and bounds
    on cost, steps and tokens."""
    check = expect(result, events)
    if status is not None:
        check.status(status)
    if output is not _UNSET:
        check.output(output)
    if calls is not None:
        check.calls(*calls, mode=mode)
    if max_cost is not None:
        check.cost_at_most(max_cost)
    if max_steps is not None:
        check.steps_at_most(max_steps)
    if max_tokens is not None:
        check.tokens_at_most(max_tokens)
    return check
