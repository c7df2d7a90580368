"""Limits on what one tool may do: :class:`RequireApproval`, :class:`MaxCalls` and
:class:`ArgumentLimit`, each a check at ``"tool_call"`` that concerns one tool.

Their reasons name tools and argument fields, never argument values: a value may be a secret,
and reasons are journaled and shown to the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

from keel._checks import Check
from keel._core.checks import CheckRequest, CheckResult
from keel.errors import ConfigurationError
from keel.policies._common import PolicyVerdict, plural, tool_name, verdict_of

__all__ = ["ArgumentLimit", "MaxCalls", "RequireApproval"]

ArgumentPredicate = Callable[[Mapping[str, Any]], bool]
"""A condition on a call's validated arguments."""


def _answer(verdict: PolicyVerdict, reason: str) -> CheckResult:
    return CheckResult.deny(reason) if verdict == "deny" else CheckResult.escalate(reason)


class RequireApproval(Check):
    """Let a person decide on calls to ``tool``: every call, or those ``when`` picks.

    ::

        RequireApproval("refund", when=lambda args: args["amount_usd"] > 100,
                        reason="refunds over $100 need a second pair of eyes")

    The call escalates: the run waits (``awaiting_approval``) until someone approves it (it
    runs once) or rejects it (the model is told). A ``when`` that raises denies the call, as a
    failing check does, without quoting the exception (it may hold an argument's value).

    Args:
        tool: The tool's name.
        when: A condition on the validated arguments; ``None`` for every call.
        reason: What the person deciding is told (default: says the tool needs approval).
        name: How the journal names this check (default: ``require_approval:<tool>``).
        timeout_s: See :class:`keel.Check`.
    """

    def __init__(
        self,
        tool: str,
        *,
        when: ArgumentPredicate | None = None,
        reason: str | None = None,
        name: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.tool = tool_name("RequireApproval", tool)
        if when is not None and not callable(when):
            raise ConfigurationError(
                f"RequireApproval({tool!r}, when=...) must be a function of the arguments, "
                f"got {type(when).__name__}"
            )
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            raise ConfigurationError(f"RequireApproval({tool!r}, reason=...) must be some text")
        self.when = when
        self.reason = reason or (
            f"{tool} needs a person's approval"
            if when is None
            else f"this call to {tool} needs a person's approval"
        )
        super().__init__(
            self.decide,
            name=name or f"require_approval:{tool}",
            points=("tool_call",),
            timeout_s=timeout_s,
        )

    def __repr__(self) -> str:
        return f"RequireApproval({self.tool!r}, name={self.name!r})"

    def decide(self, request: CheckRequest) -> CheckResult:
        """Escalate a call to the tool that ``when`` picks; allow anything else."""
        if request.call is None or request.call.name != self.tool:
            return CheckResult.allow()
        if self.when is not None:
            try:
                picked = self.when(request.arguments or {})
            except Exception as exc:  # noqa: BLE001 - a failing condition must not let it through
                return CheckResult.deny(
                    f"the approval condition on {self.tool} failed ({type(exc).__name__}), "
                    "so the call was refused"
                )
            if not picked:
                return CheckResult.allow()
        return CheckResult.escalate(self.reason)


class MaxCalls(Check):
    """At most ``n`` calls to ``tool`` per run; past that, deny (or let a person decide).

    It counts the calls before this one in ``request.previous_calls``: the run's earlier
    turns, and the calls of this turn the checks let through.

    Args:
        tool: The tool's name.
        n: How many calls go through without further ado (``0``: none).
        per: What the count is over; only ``"run"`` for now.
        verdict: ``"deny"`` (the model is told the limit) or ``"escalate"`` (a person decides
            on each call past it).
        name: How the journal names this check (default: ``max_calls:<tool>``).
        timeout_s: See :class:`keel.Check`.
    """

    def __init__(
        self,
        tool: str,
        n: int,
        *,
        per: Literal["run"] = "run",
        verdict: PolicyVerdict = "deny",
        name: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.tool = tool_name("MaxCalls", tool)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigurationError(
                f"MaxCalls({tool!r}, n=...) must be a whole number >= 0, got {n!r}"
            )
        if per != "run":
            raise ConfigurationError(f"MaxCalls({tool!r}, per=...) must be 'run', got {per!r}")
        self.n = n
        self.per: Literal["run"] = per
        self.verdict = verdict_of(f"MaxCalls({tool!r})", verdict)
        super().__init__(
            self.decide,
            name=name or f"max_calls:{tool}",
            points=("tool_call",),
            timeout_s=timeout_s,
        )

    def __repr__(self) -> str:
        return f"MaxCalls({self.tool!r}, {self.n}, verdict={self.verdict!r})"

    def decide(self, request: CheckRequest) -> CheckResult:
        """Allow the call while the run has made fewer than ``n`` calls to the tool."""
        if request.call is None or request.call.name != self.tool:
            return CheckResult.allow()
        made = sum(1 for c in request.previous_calls if c.name == self.tool)
        if made < self.n:
            return CheckResult.allow()
        limit = f"{self.tool} may be called at most {plural(self.n, 'time')} per run"
        if self.verdict == "deny":
            return CheckResult.deny(f"{limit}, and it was already called {plural(made, 'time')}")
        return CheckResult.escalate(f"{limit} without a person's approval; this is call {made + 1}")


class ArgumentLimit(Check):
    """Keep a number among a call's arguments within bounds: ``field`` of ``tool``.

    ::

        ArgumentLimit("refund", "amount_usd", max=500)

    A call whose ``field`` is below ``min`` or above ``max`` is denied (or escalated); the
    reason gives the bound, never the value. A call without the field goes through (the
    tool's schema says whether it is required); one whose field is not a number is refused.

    Args:
        tool: The tool's name.
        field: The argument's name.
        max: The highest value allowed.
        min: The lowest value allowed.
        verdict: ``"deny"`` or ``"escalate"``.
        name: How the journal names this check (default: ``argument_limit:<tool>.<field>``).
        timeout_s: See :class:`keel.Check`.
    """

    def __init__(
        self,
        tool: str,
        field: str,
        *,
        max: float | None = None,
        min: float | None = None,
        verdict: PolicyVerdict = "deny",
        name: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.tool = tool_name("ArgumentLimit", tool)
        where = f"ArgumentLimit({tool!r}, {field!r})"
        if not isinstance(field, str) or not field:
            raise ConfigurationError(f"{where}: field must be an argument's name")
        if max is None and min is None:
            raise ConfigurationError(f"{where}: give max=..., min=... or both")
        for label, bound in (("max", max), ("min", min)):
            if bound is not None and not _is_number(bound):
                raise ConfigurationError(f"{where}: {label} must be a finite number, got {bound!r}")
        if max is not None and min is not None and min > max:
            raise ConfigurationError(f"{where}: min ({_shown(min)}) is above max ({_shown(max)})")
        self.field = field
        self.max = max
        self.min = min
        self.verdict = verdict_of(where, verdict)
        super().__init__(
            self.decide,
            name=name or f"argument_limit:{tool}.{field}",
            points=("tool_call",),
            timeout_s=timeout_s,
        )

    def __repr__(self) -> str:
        return f"ArgumentLimit({self.tool!r}, {self.field!r}, max={self.max!r}, min={self.min!r})"

    def decide(self, request: CheckRequest) -> CheckResult:
        """Allow the call if its ``field`` is within bounds (or absent)."""
        if request.call is None or request.call.name != self.tool:
            return CheckResult.allow()
        arguments = request.arguments or {}
        if self.field not in arguments:
            return CheckResult.allow()
        value = arguments[self.field]
        if not _is_number(value):
            return CheckResult.deny(f"{self.field} of {self.tool} must be a number to be checked")
        if self.max is not None and value > self.max:
            bound = f"may be at most {_shown(self.max)}"
            return _answer(self.verdict, f"{self.field} of {self.tool} {bound}")
        if self.min is not None and value < self.min:
            return _answer(
                self.verdict, f"{self.field} of {self.tool} must be at least {self.min:g}"
            )
        return CheckResult.allow()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(bound: float) -> str:
    """``500`` rather than ``500.0``; a bound is configuration, never a secret."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)
