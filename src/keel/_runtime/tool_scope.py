"""What a tool call runs under, for the tools that start runs of their own (delegation).

The tool-run effect puts one :class:`ToolScope` per call in a context variable while the tool
runs: the runtime's kernel, the parent run's driver and the planned call. A delegating tool
(:mod:`keel._runtime.delegation`) reads it to start child runs on the same store, and writes
back the children it started and, if one of them stopped, that the call waits. The effect
then journals the call's result with its children, or the wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel._core.delegation import ChildRun

if TYPE_CHECKING:
    from keel._core.loop import RunTool
    from keel._runtime.driver import RunDriver

__all__ = ["ToolScope", "current_scope", "scoped"]


@dataclass(slots=True, kw_only=True)
class ToolScope:
    """One call's scope: where it runs, and what it started."""

    #: The runtime's kernel (``None`` where no runtime drives the call, e.g. a replay).
    kernel: Any
    driver: RunDriver
    planned: RunTool
    #: The child runs the call started, by id in order, as they stood when it ended.
    children: dict[str, ChildRun] = field(default_factory=dict)
    #: A child that stopped before ending, and why: the call waits for it.
    waiting: tuple[ChildRun, str] | None = None


_SCOPE: ContextVar[ToolScope | None] = ContextVar("keel_tool_scope", default=None)


def current_scope() -> ToolScope | None:
    """The scope of the tool call running in this context, if any."""
    return _SCOPE.get()


@contextmanager
def scoped(scope: ToolScope) -> Iterator[ToolScope]:
    """Make ``scope`` current while a call runs."""
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)
