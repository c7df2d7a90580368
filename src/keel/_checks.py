"""Checks that the runtime consults at four points of every run: the ``@check`` decorator.

::

    @check(points=["tool_call"])
    def small_refunds_only(request: CheckRequest) -> CheckResult:
        if request.call and request.call.name == "refund" and request.arguments["amount"] > 500:
            return CheckResult.escalate("refunds over $500 need a second pair of eyes")
        return CheckResult.allow()

    agent = Agent(name="desk", model="rules", tools=[refund], checks=[small_refunds_only])

A check is a plain function, sync or async, from a :class:`CheckRequest` to a
:class:`CheckResult` (see :mod:`keel._core.checks` for what each answer does). Async checks may
do I/O; sync checks run on the event loop, so keep them quick. A check that raises, or takes
longer than its ``timeout_s``, denies: a safety check that cannot answer must not let things
through.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, overload

from keel._core.checks import CHECK_POINTS, CheckPoint, CheckRequest, CheckResult
from keel.errors import ConfigurationError

__all__ = ["Check", "CheckFunction", "as_check", "check"]

CheckFunction = Callable[[CheckRequest], CheckResult | Awaitable[CheckResult]]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")


class Check:
    """A function consulted at some points of a run, under a name journaled with its answers.

    Args:
        function: ``(CheckRequest) -> CheckResult``, sync or async.
        name: How the check is named in the journal (default: the function's name).
        points: Where it is consulted (default: all four points).
        timeout_s: How long it may take; past it, it denies.
    """

    def __init__(
        self,
        function: CheckFunction,
        *,
        name: str | None = None,
        points: Iterable[CheckPoint] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if not callable(function):
            raise ConfigurationError(f"a check must be a function, got {type(function).__name__}")
        chosen = name if name is not None else getattr(function, "__name__", "")
        if not isinstance(chosen, str) or not _NAME.match(chosen):
            raise ConfigurationError(
                f"check name {chosen!r} is not allowed: use 1 to 100 letters, digits, '_', "
                "'.', ':' or '-'; pass name=... to @check"
            )
        wanted = tuple(CHECK_POINTS if points is None else points)
        unknown = [p for p in wanted if p not in CHECK_POINTS]
        if unknown or not wanted:
            raise ConfigurationError(
                f"check '{chosen}': points must be some of {', '.join(CHECK_POINTS)}, got "
                f"{list(wanted)!r}"
            )
        if not timeout_s > 0:
            raise ConfigurationError(f"check '{chosen}': timeout_s must be positive")
        self.function = function
        self.name = chosen
        self.points: frozenset[CheckPoint] = frozenset(wanted)
        self.timeout_s = float(timeout_s)
        self.is_async = inspect.iscoroutinefunction(function)

    def __repr__(self) -> str:
        return f"Check(name={self.name!r}, points={sorted(self.points)})"

    async def __call__(self, request: CheckRequest) -> CheckResult:
        """Ask the check; an exception, a timeout or a wrong answer denies."""
        try:
            async with asyncio.timeout(self.timeout_s):
                answer: Any = self.function(request)
                if inspect.isawaitable(answer):
                    answer = await answer
        except TimeoutError:
            return CheckResult.deny(
                f"check '{self.name}' did not answer within {self.timeout_s:g}s"
            )
        except Exception as exc:  # noqa: BLE001 - a failing safety check must not let things through
            return CheckResult.deny(f"check '{self.name}' failed: {type(exc).__name__}: {exc}")
        if not isinstance(answer, CheckResult):
            return CheckResult.deny(
                f"check '{self.name}' returned {type(answer).__name__}, not a CheckResult"
            )
        if answer.verdict == "modify" and (
            answer.replacement is None or request.point == "model_call"
        ):
            return CheckResult.deny(
                f"check '{self.name}' asked to modify "
                + (
                    "a model call, which cannot be modified"
                    if answer.replacement is not None
                    else "without a replacement"
                )
            )
        return answer


@overload
def check(
    function: CheckFunction,
    /,
    *,
    name: str | None = None,
    points: Iterable[CheckPoint] | None = None,
    timeout_s: float = 30.0,
) -> Check: ...


@overload
def check(
    *,
    name: str | None = None,
    points: Iterable[CheckPoint] | None = None,
    timeout_s: float = 30.0,
) -> Callable[[CheckFunction], Check]: ...


def check(
    function: CheckFunction | None = None,
    /,
    *,
    name: str | None = None,
    points: Iterable[CheckPoint] | None = None,
    timeout_s: float = 30.0,
) -> Check | Callable[[CheckFunction], Check]:
    """Turn a function into a :class:`Check`; usable bare or with options."""
    if function is not None:
        return Check(function, name=name, points=points, timeout_s=timeout_s)
    return lambda fn: Check(fn, name=name, points=points, timeout_s=timeout_s)


def as_check(candidate: Check | CheckFunction) -> Check:
    """A :class:`Check` as is; a plain function made into one, consulted at every point."""
    return candidate if isinstance(candidate, Check) else Check(candidate)
