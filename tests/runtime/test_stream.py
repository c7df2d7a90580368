"""Following a run: every event as it becomes durable, numbered by its sequence, from any
point; the model's text as it streams; from the process that drives the run and from others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel import Agent, KeelSettings, Limits, RunDelta, RunEvent, Runtime, UsageError
from keel.events import ModelResponded, RunFinished, RunStarted
from keel.messages import ModelRequest, ModelResponse, StreamComplete, StreamEvent, TextDelta
from keel.ports import Model
from keel.stores import SQLiteStore
from keel.testing import MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


class Streaming(Model):
    """Streams its answer in pieces, waiting on a gate between them."""

    def __init__(self, pieces: list[str], gate: asyncio.Event) -> None:
        self._pieces = pieces
        self._gate = gate
        self.streamed = 0

    @property
    def name(self) -> str:
        return "streaming"

    async def request(self, request: ModelRequest) -> ModelResponse:
        from keel.messages import AssistantMessage

        return ModelResponse(message=AssistantMessage(content="".join(self._pieces)))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.streamed += 1
        for piece in self._pieces:
            await self._gate.wait()
            yield TextDelta(text=piece)
        yield StreamComplete(response=await self.request(request))


async def test_events_come_numbered_and_can_be_followed_from_any_sequence(
    store: MemoryStore,
) -> None:
    agent = Agent(name="desk", model=ScriptedModel([call("nothing"), "Done."]))
    runtime = Runtime(store=store, settings=NO_MODELS)
    result = await runtime.run(agent, "Hi")

    everything = [item async for item in runtime.events(result.run_id)]
    assert all(isinstance(item, RunEvent) for item in everything)
    events = [item for item in everything if isinstance(item, RunEvent)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert isinstance(events[0].event, RunStarted)
    assert isinstance(events[-1].event, RunFinished)
    later = [item async for item in runtime.events(result.run_id, after=2)]
    assert [e.seq for e in later if isinstance(e, RunEvent)] == [e.seq for e in events[2:]]
    with pytest.raises(UsageError, match="after must be"):
        _ = [item async for item in runtime.events(result.run_id, after=-1)]


async def test_a_follower_sees_events_live_and_the_text_as_it_streams(store: MemoryStore) -> None:
    gate = asyncio.Event()
    model = Streaming(["Hel", "lo ", "there."], gate)
    agent = Agent(name="desk", model=model)
    runtime = Runtime(store=store, settings=NO_MODELS)
    run_id = await runtime.submit(agent, "Hi")
    seen: list[RunEvent | RunDelta] = []

    async def follow() -> None:
        async for item in runtime.events(run_id, deltas=True):
            seen.append(item)
            if isinstance(item, RunEvent) and item.seq == 1:
                gate.set()  # let the model speak once we follow

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.01)
    driving = asyncio.create_task(runtime.resume(run_id, agent))
    await asyncio.wait_for(follower, 5)
    await driving

    deltas = [item.text for item in seen if isinstance(item, RunDelta)]
    assert "".join(deltas) == "Hello there."
    assert model.streamed == 1  # asked to stream because someone followed
    kinds = [type(item.event) for item in seen if isinstance(item, RunEvent)]
    assert ModelResponded in kinds
    assert kinds[-1] is RunFinished
    answered = next(
        i
        for i, item in enumerate(seen)
        if isinstance(item, RunEvent) and isinstance(item.event, ModelResponded)
    )
    pieces = [i for i, item in enumerate(seen) if isinstance(item, RunDelta)]
    assert max(pieces) < answered  # the text came before the answer it belongs to


async def test_a_run_nobody_follows_is_not_streamed(store: MemoryStore) -> None:
    gate = asyncio.Event()
    gate.set()
    model = Streaming(["a", "b"], gate)
    result = await Runtime(store=store, settings=NO_MODELS).run(Agent(name="d", model=model), "Hi")
    assert (result.output, model.streamed) == ("ab", 0)


async def test_another_runtime_on_the_same_store_follows_the_run(store: MemoryStore) -> None:
    agent = Agent(name="desk", model=ScriptedModel(["Done."]))
    driver = Runtime(store=store, settings=NO_MODELS, agents=[agent])
    watcher = Runtime(store=store, settings=NO_MODELS)
    run_id = await driver.submit(agent, "Hi")

    async def follow() -> list[int]:
        return [item.seq async for item in watcher.events(run_id) if isinstance(item, RunEvent)]

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.01)
    await driver.worker().run(until_idle=True)

    seqs = await asyncio.wait_for(following, 5)
    assert seqs == list(range(1, len(await store.load(run_id)) + 1))


async def test_following_until_finished_goes_on_through_a_pause(store: MemoryStore) -> None:
    stuck = Agent(
        name="desk", model=ScriptedModel([call("nothing"), "Done."]), limits=Limits(max_steps=1)
    )
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[stuck])
    paused = await runtime.run(stuck, "Hi")
    stopped = [item async for item in runtime.events(paused.run_id)]
    assert stopped  # "stopped" ends at the pause

    async def follow() -> list[RunEvent | RunDelta]:
        return [item async for item in runtime.events(paused.run_id, until="finished")]

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.01)
    assert not following.done()
    await runtime.resume(paused.run_id, limits=Limits(max_steps=5))
    items = await asyncio.wait_for(following, 5)
    last = items[-1]
    assert isinstance(last, RunEvent)
    assert isinstance(last.event, RunFinished)


async def _streamed_text(runtime: Runtime, agent: Agent[str], pieces: list[str]) -> str:
    run_id = await runtime.submit(agent, "Hi")
    seen: list[str] = []

    async def follow() -> None:
        async for item in runtime.events(run_id, deltas=True):
            if isinstance(item, RunDelta):
                seen.append(item.text)

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.01)
    await runtime.resume(run_id, agent)
    await asyncio.wait_for(follower, 5)
    return "".join(seen)


async def test_a_known_secret_split_across_streamed_pieces_never_reaches_a_follower(
    store: MemoryStore,
) -> None:
    secret = "sk-live-4f9a8b7c6d5e"
    gate = asyncio.Event()
    gate.set()
    pieces = ["Your key is sk-li", "ve-4f9a", "8b7c6d5e, keep it ", "safe."]
    model = Streaming(pieces, gate)
    runtime = Runtime(store=store, settings=NO_MODELS, secrets=[secret])
    text = await _streamed_text(runtime, Agent(name="desk", model=model), pieces)
    assert model.streamed == 1
    assert secret not in text
    assert "sk-li" not in text
    assert text == "Your key is [REDACTED], keep it safe."


async def test_text_a_redactor_rewrites_is_not_streamed(store: MemoryStore) -> None:
    gate = asyncio.Event()
    gate.set()
    model = Streaming(["Mail ana@", "example.com now."], gate)
    runtime = Runtime(
        store=store, settings=NO_MODELS, redact=lambda text: text.replace("ana@example.com", "X")
    )
    text = await _streamed_text(runtime, Agent(name="desk", model=model), [])
    assert (text, model.streamed) == ("", 0)


async def test_on_sqlite_every_piece_of_text_arrives_before_its_answer(tmp_path: Path) -> None:
    """Text streamed while the follower reads the journal (a thread's work on SQLite) comes
    before the answer read in that same pass, and none is lost when the run ends there."""
    gate = asyncio.Event()
    gate.set()
    pieces = [f"piece {n} " for n in range(20)]
    runtime = Runtime(store=SQLiteStore(tmp_path / "keel.db"), settings=NO_MODELS)
    for number in range(10):
        agent = Agent(name=f"desk-{number}", model=Streaming(pieces, gate))
        run_id = await runtime.submit(agent, "Hi")
        seen: list[RunEvent | RunDelta] = []

        async def follow(run_id: str = run_id, seen: list[RunEvent | RunDelta] = seen) -> None:
            async for item in runtime.events(run_id, deltas=True):
                seen.append(item)

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.01)
        await runtime.resume(run_id, agent)
        await asyncio.wait_for(follower, 5)
        text = [item.text for item in seen if isinstance(item, RunDelta)]
        assert "".join(text) == "".join(pieces)
        answered = next(
            i
            for i, item in enumerate(seen)
            if isinstance(item, RunEvent) and isinstance(item.event, ModelResponded)
        )
        assert max(i for i, item in enumerate(seen) if isinstance(item, RunDelta)) < answered
    await runtime.close()
