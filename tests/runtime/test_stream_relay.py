"""Streamed text across processes: a follower in one process gets the text of a run another
process drives, through Redis, before the answer it belongs to; and nothing breaks without
Redis."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel import Agent, KeelSettings, RunDelta, RunEvent, Runtime, tool
from keel.events import ModelResponded
from keel.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    TextDelta,
)
from keel.ports import Model
from keel.testing import MemoryStore, ScriptedModel, call
from tests.runtime.relay_driver import AGENT, PIECES

ROOT = Path(__file__).resolve().parents[2]


class Gated(Model):
    """Streams its pieces once the gate opens; counts how often it was asked to stream."""

    def __init__(self, pieces: list[str], gate: asyncio.Event) -> None:
        self.pieces = pieces
        self.gate = gate
        self.streamed = 0

    @property
    def name(self) -> str:
        return "gated"

    async def request(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(message=AssistantMessage(content="".join(self.pieces)))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.streamed += 1
        for piece in self.pieces:
            await self.gate.wait()
            yield TextDelta(text=piece)
        yield StreamComplete(response=await self.request(request))


def _settings(db: Path, redis_url: str) -> KeelSettings:
    return KeelSettings.from_environ({"KEEL_DB": str(db), "KEEL_REDIS_URL": redis_url})


def _text_before_answer(seen: list[RunEvent | RunDelta]) -> str:
    """The streamed text, checked to have come before the first answer."""
    answered = next(
        i
        for i, item in enumerate(seen)
        if isinstance(item, RunEvent) and isinstance(item.event, ModelResponded)
    )
    pieces = [i for i, item in enumerate(seen) if isinstance(item, RunDelta)]
    assert pieces, "no text was streamed to the follower"
    assert max(pieces) < answered, "text came after the answer it belongs to"
    return "".join(item.text for item in seen if isinstance(item, RunDelta))


async def test_a_follower_in_another_runtime_gets_the_text_through_redis(
    tmp_path: Path, redis_url: str
) -> None:
    gate = asyncio.Event()
    pieces = ["Hel", "lo ", "from ", "afar."]
    model = Gated(pieces, gate)
    agent = Agent(name="desk", model=model)
    settings = _settings(tmp_path / "keel.db", redis_url)
    async with (
        Runtime(settings=settings, agents=[agent]) as driving,
        Runtime(settings=settings) as following,
    ):
        assert driving.owner != following.owner
        run_id = await driving.submit(agent, "Hi")
        seen: list[RunEvent | RunDelta] = []

        async def follow() -> None:
            async for item in following.events(run_id, deltas=True):
                seen.append(item)

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.2)  # the follower has asked for the text
        gate.set()
        await driving.resume(run_id, agent)
        await asyncio.wait_for(follower, 10)
    assert model.streamed == 1  # asked to stream for a follower elsewhere
    assert _text_before_answer(seen) == "".join(pieces)


async def test_with_redis_but_no_follower_anywhere_the_model_is_not_streamed(
    tmp_path: Path, redis_url: str
) -> None:
    gate = asyncio.Event()
    gate.set()
    model = Gated(["a", "b"], gate)
    async with Runtime(settings=_settings(tmp_path / "keel.db", redis_url)) as runtime:
        result = await runtime.run(Agent(name="desk", model=model), "Hi")
    assert (result.output, model.streamed) == ("ab", 0)


async def test_a_follower_gets_the_text_of_a_run_driven_by_another_process(
    tmp_path: Path, redis_url: str
) -> None:
    db = tmp_path / "keel.db"
    settings = _settings(db, redis_url)
    async with Runtime(settings=settings) as runtime:
        run_id = await runtime.submit(AGENT, "Hi")
        seen: list[RunEvent | RunDelta] = []

        async def follow() -> None:
            async for item in runtime.events(run_id, deltas=True):
                seen.append(item)

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        driver = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.runtime.relay_driver",
            str(db),
            redis_url,
            run_id,
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        try:
            out, _ = await asyncio.wait_for(driver.communicate(), 30)
        finally:
            if driver.returncode is None:
                driver.kill()
                await driver.wait()
        assert driver.returncode == 0
        assert b"streaming" in out  # the other process was asked to stream
        await asyncio.wait_for(follower, 10)
    assert _text_before_answer(seen) == "".join(PIECES)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_redis_never_breaks_a_run_or_a_follower(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = asyncio.Event()
    gate.set()
    model = Gated(["a", "b"], gate)
    agent = Agent(name="desk", model=model)
    nowhere = f"redis://127.0.0.1:{_closed_port()}/0"
    settings = _settings(tmp_path / "keel.db", nowhere)
    caplog.set_level(logging.WARNING, logger="keel.runtime")
    async with (
        Runtime(settings=settings, agents=[agent]) as driving,
        Runtime(settings=settings) as following,
    ):
        run_id = await driving.submit(agent, "Hi")

        async def follow() -> list[RunEvent | RunDelta]:
            return [item async for item in following.events(run_id, deltas=True)]

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.1)
        result = await driving.resume(run_id, agent)
        seen = await asyncio.wait_for(follower, 10)
    assert result.output == "ab"
    assert not [item for item in seen if isinstance(item, RunDelta)]
    answers = [i.event for i in seen if isinstance(i, RunEvent)]
    assert any(isinstance(e, ModelResponded) and e.message.content == "ab" for e in answers)
    assert "Redis could not be reached" in caplog.text


async def test_a_follower_in_the_driving_process_gets_each_piece_once(
    tmp_path: Path, redis_url: str
) -> None:
    gate = asyncio.Event()
    pieces = ["one ", "two ", "three"]
    agent = Agent(name="desk", model=Gated(pieces, gate))
    async with Runtime(settings=_settings(tmp_path / "keel.db", redis_url)) as runtime:
        run_id = await runtime.submit(agent, "Hi")

        async def follow() -> list[RunEvent | RunDelta]:
            return [item async for item in runtime.events(run_id, deltas=True)]

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        gate.set()
        await runtime.resume(run_id, agent)
        seen = await asyncio.wait_for(follower, 10)
    assert _text_before_answer(seen) == "".join(pieces)


async def test_a_piece_that_reaches_a_follower_after_its_answer_is_dropped() -> None:
    """A piece from another process may be late (its road is not the journal's): once the
    answer of its step was yielded, it is dropped, and later steps' pieces still come."""
    release = asyncio.Event()

    async def hold() -> str:
        await release.wait()
        return "held"

    agent = Agent(name="desk", model=ScriptedModel([call("hold"), "Done."]), tools=[tool(hold)])
    runtime = Runtime(store=MemoryStore(), settings=KeelSettings.from_environ({}))
    run_id = await runtime.submit(agent, "Hi")
    followers = runtime._kernel.followers  # the in-process end of every relay
    seen: list[RunEvent | RunDelta] = []
    answered = asyncio.Event()

    async def follow() -> None:
        async for item in runtime.events(run_id, deltas=True):
            seen.append(item)
            if isinstance(item, RunEvent) and isinstance(item.event, ModelResponded):
                answered.set()

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    driving = asyncio.create_task(runtime.resume(run_id, agent))
    await asyncio.wait_for(answered.wait(), 5)  # the first answer (a tool call) was yielded
    step = next(
        i.event.step
        for i in seen
        if isinstance(i, RunEvent) and isinstance(i.event, ModelResponded)
    )
    followers._publish(run_id, step, "late piece of the answered step")
    followers._publish(run_id, step + 1, "a piece of the next step")
    await asyncio.sleep(0.05)
    release.set()
    await driving
    await asyncio.wait_for(follower, 5)
    texts = [item.text for item in seen if isinstance(item, RunDelta)]
    assert "late piece of the answered step" not in texts
    assert texts[0] == "a piece of the next step"


async def test_a_process_whose_followers_all_left_follows_again(
    tmp_path: Path, redis_url: str
) -> None:
    settings = _settings(tmp_path / "keel.db", redis_url)
    async with Runtime(settings=settings) as driving, Runtime(settings=settings) as following:
        for number in range(2):  # the second follower finds the first one's reader gone
            gate = asyncio.Event()
            agent = Agent(name=f"desk-{number}", model=Gated([f"run {number} ", "speaks."], gate))
            run_id = await driving.submit(agent, "Hi")

            async def follow(run_id: str = run_id) -> list[RunEvent | RunDelta]:
                return [item async for item in following.events(run_id, deltas=True)]

            follower = asyncio.create_task(follow())
            await asyncio.sleep(0.2)
            gate.set()
            await driving.resume(run_id, agent)
            seen = await asyncio.wait_for(follower, 10)
            assert _text_before_answer(seen) == f"run {number} speaks."
            await asyncio.sleep(1.2)  # the reader notices nobody follows, and stops
