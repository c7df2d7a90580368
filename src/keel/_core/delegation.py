"""Delegation in the journal: child runs, their ids, and a call that waits for one.

A tool may start **child runs** (an agent used as a tool, or a fan-out of several): each is a
run of its own, with its own journal, linked both ways. The child's ``RunStarted`` names its
parent run, step and call; the parent's ``ToolCallFinished`` names its children
(:class:`ChildRun`), with what each cost, and rolls that up into the parent's usage and cost.
Rolling up at the finish, which a call has once, is what makes the sum exact: a crash and a
resume journal no second finish, so nothing is counted twice.

A child's id is derived from its parent's run id and call id (and its place in a fan-out), so
a parent that crashed and runs the call again finds the child it started instead of starting a
second one.

A child that stops for a person (an approval) or a limit stops its parent too: the parent's
call is journaled as waiting (:class:`ToolCallWaiting`), which pauses the parent with the
reason ``child_waiting`` naming the child. The call stays started without a result; the
delegating tool is safe to repeat, so resuming the parent runs it again, and it joins the
child where it stands.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from keel._core.eventbase import ErrorInfo, Event, RunStatus, event_kind
from keel._core.messages import ToolCall
from keel._core.usage import Usage

if TYPE_CHECKING:
    from keel._core.state import RunState

__all__ = ["CHILD_WAITING", "ChildRun", "ToolCallWaiting", "child_run_id", "roll_up"]

CHILD_WAITING = "child_waiting"
"""The reason code of a run paused because a child run waits (for a person, or a resume)."""

_RUN_ID = re.compile(r"^run_([0-9a-f]{12})[0-9a-f]{16}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRun:
    """A run a tool call started, where it stood when the call ended (or waited), and what it
    cost: its own model calls and those of its children."""

    run_id: str
    agent: str
    status: RunStatus
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0


def child_run_id(parent_run_id: str, call_id: str, index: int | None = None) -> str:
    """The id of the child run that call ``call_id`` of ``parent_run_id`` starts (``index``:
    its place in a fan-out). The same arguments always give the same id. It looks like any
    run id (``run_`` and 28 hex digits) and shares the parent's time prefix, so it sorts
    beside its parent."""
    key = f"{parent_run_id}\x00{call_id}" + ("" if index is None else f"\x00{index}")
    digest = hashlib.sha256(key.encode()).hexdigest()
    found = _RUN_ID.match(parent_run_id)
    prefix = found.group(1) if found else digest[16:28]
    return f"run_{prefix}{digest[:16]}"


def roll_up(state: RunState, children: tuple[ChildRun, ...]) -> None:
    """Add what ``children`` used and cost to the run's totals (an unknown cost makes the
    run's unknown too, as a model call with no price does)."""
    for child in children:
        state.usage = state.usage + child.usage
        if state.cost_usd is not None:
            state.cost_usd = None if child.cost_usd is None else state.cost_usd + child.cost_usd


@event_kind
@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallWaiting(Event):
    """A started call waits for a child run that stopped before ending (it waits for a
    person, or was paused by a limit): the run pauses until it is resumed, and the call runs
    again then (it is safe to repeat), joining the child where it stands."""

    step: int
    call: ToolCall
    child: ChildRun
    reason: ErrorInfo
    type: Literal["tool_call_waiting"] = "tool_call_waiting"
    v: Literal[1] = 1

    # Not copied into a fork (the default): a pause is the original's own history.

    def fold(self, state: RunState) -> None:
        state.status = "paused"
        state.reason = self.reason
