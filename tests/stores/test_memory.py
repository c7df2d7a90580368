"""What only the in-memory store promises: it keeps the very objects it was given (unless
asked to check their JSON), and its lease clock can be injected."""

from __future__ import annotations

import pytest

from keel._core.events import RunFinished
from keel.errors import RunLeasedError
from keel.stores import MemoryStore

from ._data import conversation, record, started, tool_step


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now_s = now

    def now(self) -> float:
        return self.now_s

    def monotonic(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.now_s += seconds


async def test_events_records_and_messages_are_kept_as_given() -> None:
    events = [started(), *tool_step(1)]
    summary = record(last_seq=4)
    messages = conversation()
    async with MemoryStore() as store:
        await store.append(
            "run-1", events, expected_seq=0, record=summary, thread_messages=messages
        )
        loaded = await store.load("run-1")
        assert all(a is b for a, b in zip(loaded, events, strict=True))
        assert await store.get_run("run-1") is summary
        threads = (await store.thread_history("thread-1")).messages
        assert all(a is b for a, b in zip(threads, messages, strict=True))


async def test_check_json_keeps_copies_that_went_through_json() -> None:
    events = [started(), *tool_step(1)]
    async with MemoryStore(check_json=True) as store:
        await store.append(
            "run-1", events, expected_seq=0, record=record(), thread_messages=conversation()
        )
        loaded = await store.load("run-1")
        assert loaded == events
        assert all(a is not b for a, b in zip(loaded, events, strict=True))
        assert (await store.thread_history("thread-1")).messages == conversation()


async def test_check_json_refuses_what_a_durable_store_would() -> None:
    async with MemoryStore(check_json=True) as store:
        bad = RunFinished(status="completed", output=object())
        with pytest.raises(ValueError, match="serialize"):
            await store.append("run-1", [started(), bad], expected_seq=0, record=record())
        assert await store.list_runs() == []
    async with MemoryStore() as lenient:
        await lenient.append("run-1", [started(), bad], expected_seq=0, record=record())


async def test_lease_times_follow_the_injected_clock() -> None:
    clock = FakeClock(1_000.0)
    async with MemoryStore(clock=clock) as store:
        lease = await store.start_run("run-1", [started()], record=record(), owner="a", ttl_s=30)
        assert lease is not None
        assert lease.expires_at == 1_030.0
        clock.now_s = 1_029.9
        with pytest.raises(RunLeasedError):
            await store.acquire_lease("run-1", owner="b", ttl_s=30)
        clock.now_s = 1_030.0  # expiry is inclusive: at expires_at the lease is over
        taken = await store.acquire_lease("run-1", owner="b", ttl_s=30)
        assert (taken.token, taken.expires_at) == (2, 1_060.0)
        assert await store.claim_runs(owner="c", ttl_s=30, limit=5) == []
        clock.now_s = 2_000.0
        (claimed,) = await store.claim_runs(owner="c", ttl_s=30, limit=5)
        assert (claimed.run_id, claimed.token, claimed.expires_at) == ("run-1", 3, 2_030.0)


async def test_closing_drops_everything() -> None:
    store = MemoryStore()
    await store.append("run-1", [started()], expected_seq=0, record=record())
    await store.close()
    assert store._runs == {}
    assert store._threads == {}
