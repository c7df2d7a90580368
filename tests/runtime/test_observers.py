"""Observers see every batch of events a run journals, from its start to its end, and one
that fails never breaks the run."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from keel import Agent, KeelSettings, Runtime, tool
from keel.events import Event, RunFinished, RunStarted, ToolCallFinished
from keel.testing import MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


class Recording:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def observed(self, state: object, events: Sequence[Event]) -> None:
        self.kinds.extend(type(e).__name__ for e in events)


class Broken:
    def observed(self, state: object, events: Sequence[Event]) -> None:
        raise RuntimeError("collector down")


@tool(side_effects="read")
def ping() -> str:
    """Answer pong."""
    return "pong"


async def test_observers_see_a_run_from_start_to_end_and_a_failing_one_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Recording()
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[Broken(), seen])
    agent = Agent(name="desk", model=ScriptedModel([call("ping"), "done"]), tools=[ping])

    with caplog.at_level(logging.WARNING, logger="keel.observability"):
        first = await runtime.run(agent, "ping")
        queued = await runtime.submit(agent, "again")

    assert first.status == "completed"
    assert seen.kinds[0] == RunStarted.__name__
    assert ToolCallFinished.__name__ in seen.kinds
    assert RunFinished.__name__ in seen.kinds
    assert seen.kinds[-1] == RunStarted.__name__  # the queued run's acceptance
    assert queued
    warnings = [r for r in caplog.records if "observer Broken failed" in r.getMessage()]
    assert len(warnings) == 1  # once per kind of failure, not once per step
