"""Which tasks' results depend on the order of the calls one model turn makes.

A turn's calls run concurrently, so their order is not promised. For each turn of
:func:`grouped_turns` with several changes, :func:`order_sensitive_turns` applies the task's
actions with that turn's calls in every other order (directly, no runtime) and compares the
final database with the one the published order gives. A difference means running the turn's
calls concurrently can leave another state: those calls touch the same data.

:func:`with_latency` makes the same hazard show through a runtime: it wraps the tools so each
call waits before it runs, as a call to a remote database would, so the calls of a turn finish
in the order their waits decide rather than the order the model listed them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from examples.tau_retail.db import RetailDB
from examples.tau_retail.tasks import Action, RetailTask, Turn, apply_actions, grouped_turns
from keel import RunContext, Tool

__all__ = ["OrderSensitivity", "order_sensitive_turns", "with_latency"]

_MAX_PERMUTED = 6  # 720 orders; larger turns are tried reversed only


@dataclass(frozen=True, slots=True)
class OrderSensitivity:
    """A turn whose calls, run in ``order`` (indexes into ``turn``), leave another database."""

    task: RetailTask
    turn: Turn
    order: tuple[int, ...]
    differences: tuple[str, ...]


def _orders(size: int, reversed_only: bool) -> Sequence[tuple[int, ...]]:
    if size <= _MAX_PERMUTED and not reversed_only:
        return list(itertools.permutations(range(size)))[1:]
    return [tuple(reversed(range(size)))]


def order_sensitive_turns(
    pristine: RetailDB,
    task: RetailTask,
    turns: Sequence[Turn] | None = None,
    *,
    reversed_only: bool = False,
) -> list[OrderSensitivity]:
    """The turns (default: :func:`grouped_turns`) of ``task`` whose calls, in some other
    order, leave a different final database; for each, the first such order found.
    ``reversed_only`` tries only the reverse of the published order."""
    plan = list(grouped_turns(task) if turns is None else turns)
    expected = pristine.fresh()
    apply_actions(expected, [a for turn in plan for a in turn])
    found = []
    for index, turn in enumerate(plan):
        if sum(a.writes for a in turn) < 2:
            continue
        before = [a for t in plan[:index] for a in t]
        after = [a for t in plan[index + 1 :] for a in t]
        for order in _orders(len(turn), reversed_only):
            db = pristine.fresh()
            shuffled: list[Action] = [turn[i] for i in order]
            apply_actions(db, [*before, *shuffled, *after])
            if not db.same_state(expected):
                found.append(OrderSensitivity(task, turn, order, tuple(db.differences(expected))))
                break
    return found


Delay = Callable[[RunContext[Any]], float]
"""Seconds a call waits before it runs, chosen from its context (e.g. its call id)."""


def with_latency(tools: Sequence[Tool], delay: Delay) -> tuple[Tool, ...]:
    """The same tools (same specs) as async tools that first wait ``delay(ctx)`` seconds."""
    return tuple(_delayed(t, delay) for t in tools)


def _delayed(tool: Tool, delay: Delay) -> Tool:
    original = tool.function
    context_param = tool.context_param

    async def delayed(**kwargs: Any) -> Any:
        context = kwargs.get(context_param) if context_param else None
        if isinstance(context, RunContext):
            await asyncio.sleep(delay(context))
        return original(**kwargs)

    return Tool(delayed, tool.spec, context_param)
