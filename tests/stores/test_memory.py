"""What only the in-memory store promises: it keeps the very objects it was given."""

from __future__ import annotations

from keel.stores import MemoryStore

from ._data import conversation, record, started, tool_step


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
        threads = await store.thread_messages("thread-1")
        assert all(a is b for a, b in zip(threads, messages, strict=True))


async def test_closing_drops_everything() -> None:
    store = MemoryStore()
    await store.append("run-1", [started()], expected_seq=0, record=record())
    await store.close()
    assert store._events == {}
    assert store._runs == {}
    assert store._threads == {}
