"""Which tasks' results depend on the order of the calls one model turn makes.

A turn's calls run concurrently, so their order is not promised. For each turn of
:func:`grouped_turns` with several changes, :func:`order_sensitive_turns` applies the task's
actions with that turn's calls in every other order (directly, no runtime) and compares the
final database with the one the published order gives. A difference means running the turn's
calls concurrently can leave another state: those calls touch the same data.

:func:`in_reverse` makes the same hazard show through a runtime: it wraps the tools so that the
calls of one turn run in the reverse of the order the model listed them, one of the orders
concurrent calls to a remote database may finish in.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from examples.tau_retail.db import RetailDB
from examples.tau_retail.tasks import Action, RetailTask, Turn, apply_actions, grouped_turns
from keel import RunContext, Tool

__all__ = ["OrderSensitivity", "in_reverse", "order_sensitive_turns"]

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


class _Turn:
    """The gated calls of one model turn, in the order they arrived."""

    def __init__(self) -> None:
        self.calls: list[asyncio.Future[None]] = []


def in_reverse(tools: Sequence[Tool]) -> tuple[Tool, ...]:
    """The same tools (same specs), as async tools that run the calls of one model turn in
    the reverse of the order the model listed them, as concurrent calls to a remote database
    may finish. Tools without a run context run at once."""
    turns: dict[tuple[str, int], _Turn] = {}
    return tuple(_reversed(t, turns) for t in tools)


def _reversed(tool: Tool, turns: dict[tuple[str, int], _Turn]) -> Tool:
    original = tool.function
    context_param = tool.context_param

    async def gated(**kwargs: Any) -> Any:
        context = kwargs.get(context_param) if context_param else None
        if not isinstance(context, RunContext):
            return original(**kwargs)
        key = (context.run_id, context.step)
        turn = turns.setdefault(key, _Turn())
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        turn.calls.append(mine)
        # The runtime starts a turn's calls together, each running until its first wait:
        # once this one resumes, every call of the turn has arrived.
        await asyncio.sleep(0)
        if mine is turn.calls[-1]:
            mine.set_result(None)  # the last one listed goes first
        await mine
        try:
            return original(**kwargs)
        finally:
            index = turn.calls.index(mine)
            if index:
                turn.calls[index - 1].set_result(None)
            else:
                del turns[key]

    return Tool(gated, tool.spec, context_param)
