"""Checks: what policies and guardrails are asked, and what they may answer.

A check is consulted at five points of a run: the user's **input** (before the first model
call), every **model call** (before the request is sent), every **tool call** (after its
arguments are validated, before it starts or asks for approval), every **tool result**
(before the model sees it) and the final **output** (before the run completes with it). It
answers with a :class:`CheckResult`:

- ``allow``: go on;
- ``deny``: do not: a denied tool call or result becomes an error the model reads (with the
  reason, so it can change course); a denied input fails the run; a denied model call pauses
  it;
- ``modify``: go on with ``replacement`` instead (new input text, new tool arguments as JSON,
  a new tool result: e.g. redacted);
- ``escalate``: a person decides, through the approvals (``approve`` goes on, ``reject``
  denies).

The runtime runs the checks of a point in order, as one effect of the loop, and journals their
answers as one ``ChecksDecided`` event: a check may do I/O (ask a moderation API, read a
budget), and replay answers from the journal instead of asking again. A ``modify`` hands the
changed subject to the next check; the first ``deny`` or ``escalate`` ends the round.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from keel._core.messages import Message, ToolCall
from keel._core.toolspec import SideEffects

__all__ = [
    "CHECK_POINTS",
    "CheckPoint",
    "CheckRecord",
    "CheckRequest",
    "CheckResult",
    "Verdict",
    "subject_of",
]

CheckPoint = Literal["input", "model_call", "tool_call", "tool_result", "output"]
CHECK_POINTS: tuple[CheckPoint, ...] = ("input", "model_call", "tool_call", "tool_result", "output")
Verdict = Literal["allow", "deny", "modify", "escalate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRequest:
    """What a check is asked about (one object, so fields can be added later).

    ``text`` is the input (``input``), the tool's result (``tool_result``) or the final answer
    as text (``output``); ``call`` the tool call (``tool_call``, ``tool_result``) and
    ``arguments`` its validated arguments (``tool_call``); ``messages`` what the model is about
    to be sent (``model_call``). ``side_effects`` describes the called tool (``None`` when the
    model called a tool the agent does not have); ``previous_calls`` are the run's tool calls
    that went through before this one: those it started, then the calls of this turn the
    checks let through ahead of it. ``tenant``, ``user`` and ``roles`` are who the run is for.
    """

    point: CheckPoint
    run_id: str
    thread_id: str
    agent: str
    step: int
    text: str | None = None
    call: ToolCall | None = None
    arguments: Mapping[str, Any] | None = None
    messages: Sequence[Message] = ()
    #: The run's dependencies (``deps=``), as tools get them.
    deps: Any = None
    tenant: str | None = None
    user: str | None = None
    roles: frozenset[str] = frozenset()
    side_effects: SideEffects | None = None
    previous_calls: Sequence[ToolCall] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """A check's answer; build one with :meth:`allow`, :meth:`deny`, :meth:`modify` or
    :meth:`escalate`."""

    verdict: Verdict = "allow"
    reason: str | None = None
    replacement: str | None = None

    @classmethod
    def allow(cls) -> CheckResult:
        """Go on."""
        return _ALLOW

    @classmethod
    def deny(cls, reason: str) -> CheckResult:
        """Refuse, saying why (the model reads it for tool calls and results)."""
        return cls(verdict="deny", reason=reason)

    @classmethod
    def modify(cls, replacement: str, reason: str | None = None) -> CheckResult:
        """Go on with ``replacement`` (text, or tool arguments as a JSON object)."""
        return cls(verdict="modify", replacement=replacement, reason=reason)

    @classmethod
    def escalate(cls, reason: str) -> CheckResult:
        """Let a person decide."""
        return cls(verdict="escalate", reason=reason)


_ALLOW = CheckResult()


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRecord:
    """One check's answer, as journaled."""

    check: str
    verdict: Verdict
    reason: str | None = None
    replacement: str | None = None


CheckFunction = Callable[[CheckRequest], CheckResult | Awaitable[CheckResult]]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckSpec:
    """A check as the loop knows it: its name and the points it watches."""

    name: str
    points: frozenset[CheckPoint] = field(default_factory=lambda: frozenset(CHECK_POINTS))


def subject_of(point: CheckPoint, *, step: int = 0, call_id: str = "") -> str:
    """The id a point's subject is known by (and decided on, when a check escalates)."""
    if point == "input":
        return "input"
    if point == "model_call":
        return f"model_call:{step}"
    if point == "tool_result":
        return f"result:{call_id}"
    if point == "output":
        return f"output:{step}"
    return call_id
