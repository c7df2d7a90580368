"""Observers: what watches a run's events as they are journaled (traces, metrics, logs).

An observer is told of every batch of events this process appends to a run's journal, with
the run's state after them, right after the append: a run's start (or its acceptance into the
queue), each step, people's decisions, its end. It must be quick and must not do I/O on the
caller's time (an exporter batches in the background). It can never break a run: an observer
that raises is logged once and ignored afterwards for that kind of failure, and the run goes
on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from keel._core.eventbase import Event
from keel._core.state import RunState

__all__ = ["Observer", "Observers"]

_log = logging.getLogger("keel.observability")


class Observer(Protocol):
    """Watches journaled events (see the module docstring)."""

    def observed(self, state: RunState, events: Sequence[Event]) -> None:
        """``events`` were just appended to the journal of the run in ``state``."""
        ...


class Observers:
    """The observers of one runtime; telling them is isolated from the run."""

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self._observers = list(observers)
        self._reported: set[tuple[int, str]] = set()

    def __bool__(self) -> bool:
        return bool(self._observers)

    def add(self, observer: Observer) -> None:
        """Tell ``observer`` too, from now on."""
        self._observers.append(observer)

    def __call__(self, state: RunState, events: Sequence[Event]) -> None:
        """Tell every observer; one that fails is logged (once per kind of failure)."""
        for observer in self._observers:
            try:
                observer.observed(state, events)
            except Exception as exc:  # noqa: BLE001 - observing must never break a run
                key = (id(observer), type(exc).__name__)
                if key not in self._reported:
                    self._reported.add(key)
                    _log.warning(
                        "observer %s failed (%s); the run goes on",
                        type(observer).__name__,
                        type(exc).__name__,
                    )
