"""Custom policies: :func:`policy`, ``@check`` with plainer answers.

::

    @policy(points=["tool_call"])
    def office_hours(request: CheckRequest) -> bool | str:
        if request.call and request.call.name == "refund" and not desk_open():
            return "refunds are issued in office hours only; offer to call back"
        return True

A policy answers like a check (a :class:`~keel.CheckResult`) or more briefly: ``True`` or
``None`` allows, ``False`` denies with the policy's ``reason``, and a string denies with that
string as the reason. Anything else denies, saying what came back, as ``@check`` does.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, overload

from keel._checks import Check
from keel._core.checks import CheckPoint, CheckRequest, CheckResult
from keel.errors import ConfigurationError

__all__ = ["PolicyAnswer", "PolicyFunction", "policy"]

PolicyAnswer = CheckResult | bool | str | None
"""What a policy may answer: a check's answer, or ``True``/``None`` (allow), ``False`` (deny
with the default reason) or a string (deny with that reason)."""

PolicyFunction = Callable[[CheckRequest], PolicyAnswer | Awaitable[PolicyAnswer]]

_DEFAULT_REASON = "this policy does not allow it"


def answer_of(policy_name: str, answer: Any, reason: str) -> CheckResult:
    """A policy's answer as a check's: see :func:`policy`."""
    if isinstance(answer, CheckResult):
        return answer
    if answer is None or answer is True:
        return CheckResult.allow()
    if answer is False:
        return CheckResult.deny(reason)
    if isinstance(answer, str):
        return CheckResult.deny(answer if answer.strip() else reason)
    return CheckResult.deny(
        f"policy '{policy_name}' returned {type(answer).__name__}; a policy answers with a "
        "CheckResult, True, False, None or a reason (a string)"
    )


def _make(
    function: PolicyFunction,
    name: str | None,
    points: Iterable[CheckPoint] | None,
    timeout_s: float,
    reason: str | None,
) -> Check:
    if not callable(function):
        raise ConfigurationError(f"a policy must be a function, got {type(function).__name__}")
    chosen = name if name is not None else getattr(function, "__name__", None)
    if not isinstance(chosen, str) or not chosen or chosen == "<lambda>":
        raise ConfigurationError("this policy has no usable name: pass name=... to policy()")
    if reason is not None and (not isinstance(reason, str) or not reason.strip()):
        raise ConfigurationError(f"policy '{chosen}': reason must be some text")
    refusal = reason or _DEFAULT_REASON

    async def ask(request: CheckRequest) -> CheckResult:
        answer: Any = function(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer_of(chosen, answer, refusal)

    return Check(ask, name=chosen, points=points, timeout_s=timeout_s)


@overload
def policy(
    function: PolicyFunction,
    /,
    *,
    name: str | None = None,
    points: Iterable[CheckPoint] | None = None,
    timeout_s: float = 30.0,
    reason: str | None = None,
) -> Check: ...


@overload
def policy(
    *,
    name: str | None = None,
    points: Iterable[CheckPoint] | None = None,
    timeout_s: float = 30.0,
    reason: str | None = None,
) -> Callable[[PolicyFunction], Check]: ...


def policy(
    function: PolicyFunction | None = None,
    /,
    *,
    name: str | None = None,
    points: Iterable[CheckPoint] | None = None,
    timeout_s: float = 30.0,
    reason: str | None = None,
) -> Check | Callable[[PolicyFunction], Check]:
    """Turn a function (sync or async) into a :class:`keel.Check` that may answer briefly.

    Usable bare or with options, like ``@check``. A policy that raises or takes longer than
    ``timeout_s`` denies, as a check does.

    Args:
        function: ``(CheckRequest) -> CheckResult | bool | str | None``.
        name: How the journal names it (default: the function's name).
        points: Where it is consulted (default: every point, as for ``@check``).
        timeout_s: How long it may take; past it, it denies.
        reason: The reason of a ``False`` answer (default: "this policy does not allow it").
    """
    if function is not None:
        return _make(function, name, points, timeout_s, reason)
    return lambda fn: _make(fn, name, points, timeout_s, reason)
