"""Observers: what watches a run's events as they are journaled (traces, metrics, logs).

An observer is told of every batch of events this process appends to a run's journal, with
the run's state after them, right after the append: a run's start (or its acceptance into the
queue), each step, people's decisions, its end. It must be quick and must not do I/O on the
caller's time (an exporter batches in the background). It can never break a run: an observer
that raises is logged once and ignored afterwards for that kind of failure, and the run goes
on.

An observer may also watch tools live: with a ``tool_context(context)`` method (see
:class:`ToolWatcher`), the context manager it returns is entered around each tool call, in the
task (and the thread, for a sync tool) that runs the tool, e.g. to make a span current so that
the tool's own HTTP calls carry the trace. Without such observers a call costs nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from keel._core.eventbase import Event
from keel._core.state import RunState
from keel._tools import RunContext

__all__ = ["Observer", "Observers", "ToolWatcher"]

_log = logging.getLogger("keel.observability")


class Observer(Protocol):
    """Watches journaled events (see the module docstring)."""

    def observed(self, state: RunState, events: Sequence[Event]) -> None:
        """``events`` were just appended to the journal of the run in ``state``."""
        ...


class ToolWatcher(Protocol):
    """An observer that also watches tool calls live (see the module docstring)."""

    def tool_context(self, context: RunContext[Any]) -> AbstractContextManager[object] | None:
        """What to enter around the call ``context`` describes (``None``: nothing)."""
        ...


class Observers:
    """The observers of one runtime; telling them is isolated from the run."""

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self._observers: list[Observer] = []
        self._watchers: list[tuple[object, Callable[[RunContext[Any]], Any]]] = []
        self._reported: set[tuple[int, str]] = set()
        for observer in observers:
            self.add(observer)

    def __bool__(self) -> bool:
        return bool(self._observers)

    @property
    def watch_tools(self) -> bool:
        """Whether some observer watches tool calls live."""
        return bool(self._watchers)

    def add(self, observer: Observer) -> None:
        """Tell ``observer`` too, from now on (and let it watch tool calls, if it does)."""
        self._observers.append(observer)
        watch = getattr(observer, "tool_context", None)
        if callable(watch):
            self._watchers.append((observer, watch))

    def __call__(self, state: RunState, events: Sequence[Event]) -> None:
        """Tell every observer; one that fails is logged (once per kind of failure)."""
        for observer in self._observers:
            try:
                observer.observed(state, events)
            except Exception as exc:  # noqa: BLE001 - observing must never break a run
                self.failed(observer, exc)

    def tool_context(self, context: RunContext[Any]) -> AbstractContextManager[None]:
        """What to enter around one tool call: every watcher's context, each isolated."""
        return _Watching(self, context)

    def failed(self, observer: object, exc: BaseException) -> None:
        """Log that ``observer`` failed, once per kind of failure."""
        key = (id(observer), type(exc).__name__)
        if key not in self._reported:
            self._reported.add(key)
            _log.warning(
                "observer %s failed (%s); the run goes on",
                type(observer).__name__,
                type(exc).__name__,
            )


class _Watching(AbstractContextManager[None]):
    """The watchers' contexts around one tool call; one that fails is skipped (and logged),
    and none can swallow what the call raises."""

    def __init__(self, observers: Observers, context: RunContext[Any]) -> None:
        self._observers = observers
        self._context = context
        self._entered: list[tuple[object, AbstractContextManager[object]]] = []

    def __enter__(self) -> None:
        for observer, watch in self._observers._watchers:
            try:
                entered = watch(self._context)
                if entered is not None:
                    entered.__enter__()
                    self._entered.append((observer, entered))
            except Exception as exc:  # noqa: BLE001 - watching must never break a run
                self._observers.failed(observer, exc)

    def __exit__(self, *exc_info: Any) -> None:
        while self._entered:
            observer, entered = self._entered.pop()
            try:
                entered.__exit__(*exc_info)
            except Exception as exc:  # noqa: BLE001 - watching must never break a run
                self._observers.failed(observer, exc)
