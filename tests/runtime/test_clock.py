"""One clock: every wait and timeout of a runtime goes through its clock, so a test clock
makes retries, tool retries, queue waits and wall-time limits instant and checkable."""

from __future__ import annotations

import time
from typing import Any

from keel import Agent, KeelSettings, Limits, RunContext, Runtime, tool
from keel.errors import ModelConnectionError
from keel.messages import AssistantMessage, ModelRequest, ModelResponse
from keel.ports import Model
from keel.testing import FakeClock, FunctionModel, MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


class Flaky(Model):
    """Fails twice with a retryable error, then answers."""

    def __init__(self) -> None:
        self.calls = 0

    @property
    def name(self) -> str:
        return "flaky:model"

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.calls < 3:
            raise ModelConnectionError("reset", model=self.name)
        return ModelResponse(message=AssistantMessage(content="at last"))


async def test_model_retries_wait_on_the_runtime_clock() -> None:
    clock = FakeClock()
    flaky = Flaky()
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, clock=clock)
    runtime.models.register("flaky", lambda name, settings: flaky)
    started = time.monotonic()

    result = await runtime.run(Agent(name="a", model="flaky:model"), "Hi")

    assert (result.output, flaky.calls) == ("at last", 3)
    assert clock.slept > 0  # the backoffs were slept on the test clock...
    assert time.monotonic() - started < 1.0  # ...and took no real time


async def test_tool_retries_wait_on_the_runtime_clock() -> None:
    clock = FakeClock()
    tries: list[int] = []

    @tool(idempotent=True, retries=3)
    def shaky(ctx: RunContext[None]) -> str:
        """Fails twice."""
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("busy")
        return "ok"

    agent = Agent(name="a", model=ScriptedModel([call("shaky"), "done"]), tools=[shaky])
    result = await Runtime(store=MemoryStore(), settings=NO_MODELS, clock=clock).run(agent, "Go")

    assert (result.status, len(tries)) == ("completed", 3)
    assert clock.slept > 0


async def test_the_wall_time_limit_is_measured_by_the_runtime_clock() -> None:
    clock = FakeClock()

    def slow(request: ModelRequest) -> Any:
        clock.advance(100)  # the model "takes" 100 s of the run's time
        return call("nothing")

    agent = Agent(name="a", model=FunctionModel(slow), limits=Limits(max_wall_time_s=250))
    result = await Runtime(store=MemoryStore(), settings=NO_MODELS, clock=clock).run(agent, "Go")

    assert result.status == "paused"
    assert result.reason is not None
    assert result.reason.code == "limit.max_wall_time_s"
    assert result.steps == 3
