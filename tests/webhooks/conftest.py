"""A runtime on a SQLite file with a fake clock, agents that answer at once, and a receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from keel import Agent, RunContext, Runtime, tool
from keel.testing import FakeClock, FunctionModel, ScriptedModel, call
from tests.webhooks.receiver import Receiver, receiving

START = 1_700_000_000.0


def answering(name: str = "support", text: str = "All done.") -> Agent[str]:
    """An agent that answers ``text`` at once."""
    return Agent(name=name, model=FunctionModel(lambda request: text))


def refunding() -> Agent[str]:
    """An agent that asks for a refund a person must approve, then says it is done."""

    @tool(requires_approval=True)
    def refund(ctx: RunContext[None], order_id: str) -> str:
        """Refund an order."""
        return f"refunded {order_id}"

    model = ScriptedModel([call("refund", order_id="42"), "Refunded."])
    return Agent(name="desk", model=model, tools=[refund])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "keel.db")


@pytest.fixture
async def runtime(db: str, clock: FakeClock) -> AsyncIterator[Runtime]:
    async with Runtime(store=db, clock=clock) as made:
        yield made


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as made:
        yield made


def payloads(receiver: Receiver) -> list[Any]:
    return [r.json for r in receiver.received]
