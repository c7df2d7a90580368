"""The ``Store`` contract, run over every backend.

To add a backend (PostgreSQL next), write one factory like :func:`sqlite_store` below and add it
to ``BACKENDS``, with a skip mark if it needs a server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.core.events import (
    ErrorInfo,
    Event,
    ModelResponded,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from keel.core.messages import AssistantMessage, Message, ToolCall, ToolResultMessage, UserMessage
from keel.core.usage import Usage
from keel.errors import JournalConflictError, RunNotFoundError, StoreError
from keel.ports import Store
from keel.stores import MemoryStore, SQLiteStore

from ._data import (
    T0,
    conversation,
    failed_tool_step,
    finishing_step,
    record,
    started,
    tool_step,
)

StoreFactory = Callable[[Path], AbstractAsyncContextManager[Store]]
"""Opens a fresh, empty store that may keep its files in the given empty directory."""


@asynccontextmanager
async def memory_store(_directory: Path) -> AsyncIterator[Store]:
    store = MemoryStore()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def sqlite_store(directory: Path) -> AsyncIterator[Store]:
    store = SQLiteStore(directory / "keel.db")
    try:
        yield store
    finally:
        await store.close()


BACKENDS = [
    pytest.param(memory_store, id="memory"),
    pytest.param(sqlite_store, id="sqlite"),
]


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest) -> StoreFactory:
    factory: StoreFactory = request.param
    return factory


@pytest.fixture
async def store(open_store: StoreFactory, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path) as store:
        yield store


def full_run() -> list[list[Event]]:
    """The appends of a whole run, one per step."""
    return [
        [started(), *tool_step(1)],
        failed_tool_step(2),
        tool_step(3),
        finishing_step(4),
    ]


# --- append and load ------------------------------------------------------------------------


async def test_it_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)


async def test_a_new_run_starts_at_zero_and_loads_back_equal(store: Store) -> None:
    events = [started(), *tool_step(1)]
    last = await store.append("run-1", events, expected_seq=0, record=record())
    assert last == 4
    assert await store.load("run-1") == events


async def test_appends_continue_the_sequence(store: Store) -> None:
    seq = 0
    appended: list[Event] = []
    for batch in full_run():
        new_seq = await store.append("run-1", batch, expected_seq=seq, record=record())
        assert new_seq == seq + len(batch)
        seq = new_seq
        appended += batch
    assert await store.load("run-1") == appended
    assert (await store.get_run("run-1")).last_seq == len(appended)


async def test_runs_have_independent_journals(store: Store) -> None:
    await store.append("a", [started("a")], expected_seq=0, record=record("a"))
    await store.append("b", [started("b"), *tool_step(1)], expected_seq=0, record=record("b"))
    assert await store.append("a", tool_step(1), expected_seq=1, record=record("a")) == 4
    assert await store.load("a") == [started("a"), *tool_step(1)]
    assert await store.load("b") == [started("b"), *tool_step(1)]


async def test_load_returns_a_copy(store: Store) -> None:
    events = [started(), *tool_step(1)]
    await store.append("run-1", events, expected_seq=0, record=record())
    loaded = await store.load("run-1")
    loaded.clear()
    events.clear()
    assert await store.load("run-1") == [started(), *tool_step(1)]


async def test_awkward_text_round_trips(store: Store) -> None:
    call = ToolCall(id="c\x00", name="naïve_tool", arguments='{"q": "\\u0000 \U0001f600"}')
    events: list[Event] = [
        ToolCallStarted(step=1, call=call, idempotency_key="k" * 300, at=-0.5),
        ToolCallFinished(step=1, call=call, result="x\n\t\"'\\😀" * 20_000, at=1e-300),
        ModelResponded(
            step=2,
            model="m",
            message=AssistantMessage(content=""),
            usage=Usage(),
            cost_usd=0.1 + 0.2,
            at=T0,
        ),
        RunFinished(
            status="failed",
            output=[{"deep": [[[]]], "": None}, -0.0, 2**53 + 1, "Ω"],
            error=ErrorInfo(code="tool.crashed", message="Traceback ... 'ünicode'"),
        ),
    ]
    await store.append("run-Ω", events, expected_seq=0, record=record("run-Ω"))
    assert await store.load("run-Ω") == events


async def test_an_empty_append_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="no events"):
        await store.append("run-1", [], expected_seq=0, record=record())
    with pytest.raises(RunNotFoundError):
        await store.get_run("run-1")


async def test_a_negative_expected_seq_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="expected_seq=-1"):
        await store.append("run-1", [started()], expected_seq=-1, record=record())


async def test_a_record_of_another_run_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="record of run 'run-2'"):
        await store.append("run-1", [started()], expected_seq=0, record=record("run-2"))
    assert await store.list_runs() == []


async def test_unknown_run(store: Store) -> None:
    with pytest.raises(RunNotFoundError) as load_error:
        await store.load("nope")
    assert load_error.value.run_id == "nope"
    with pytest.raises(RunNotFoundError):
        await store.get_run("nope")


# --- conflicts ------------------------------------------------------------------------------


async def test_a_stale_expected_seq_conflicts_and_writes_nothing(store: Store) -> None:
    first = [started(), *tool_step(1)]
    await store.append("run-1", first, expected_seq=0, record=record(steps=1))
    with pytest.raises(JournalConflictError) as caught:
        await store.append(
            "run-1",
            finishing_step(2),
            expected_seq=1,
            record=record(status="completed", steps=2),
            thread_messages=conversation(),
        )
    assert (caught.value.run_id, caught.value.expected, caught.value.actual) == ("run-1", 1, 4)
    assert caught.value.code == "journal_conflict"
    assert await store.load("run-1") == first
    assert await store.get_run("run-1") == record(steps=1, last_seq=4)
    assert await store.thread_messages("thread-1") == []


async def test_an_expected_seq_ahead_of_the_journal_conflicts(store: Store) -> None:
    with pytest.raises(JournalConflictError) as on_new:
        await store.append("run-1", tool_step(1), expected_seq=3, record=record())
    assert (on_new.value.expected, on_new.value.actual) == (3, 0)
    with pytest.raises(RunNotFoundError):
        await store.load("run-1")
    assert await store.list_runs() == []

    await store.append("run-1", [started()], expected_seq=0, record=record())
    with pytest.raises(JournalConflictError) as on_existing:
        await store.append("run-1", tool_step(1), expected_seq=2, record=record())
    assert (on_existing.value.expected, on_existing.value.actual) == (2, 1)
    assert await store.load("run-1") == [started()]


async def test_starting_an_existing_run_conflicts(store: Store) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record(agent="first"))
    with pytest.raises(JournalConflictError) as caught:
        await store.append("run-1", [started()], expected_seq=0, record=record(agent="second"))
    assert caught.value.actual == 1
    assert (await store.get_run("run-1")).agent == "first"


async def test_racing_tasks_one_wins(store: Store) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record())
    outcomes = await asyncio.gather(
        store.append("run-1", tool_step(1, call_id="a"), expected_seq=1, record=record()),
        store.append("run-1", tool_step(1, call_id="b"), expected_seq=1, record=record()),
        return_exceptions=True,
    )
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "JournalConflictError",
        "int",
    ]
    winner = "a" if outcomes[0] == 4 else "b"
    assert await store.load("run-1") == [started(), *tool_step(1, call_id=winner)]


async def test_racing_threads_one_wins_every_time(store: Store) -> None:
    rounds = 30
    barrier = threading.Barrier(2)
    winners: list[list[str]] = [[], []]
    conflicts: list[list[int]] = [[], []]

    def writer(index: int) -> None:
        async def run() -> None:
            seq = 0
            for step in range(rounds):
                barrier.wait(timeout=10)
                call_id = f"w{index}-{step}"
                try:
                    await store.append(
                        "run-1",
                        tool_step(step, call_id=call_id),
                        expected_seq=seq,
                        record=record(steps=step),
                    )
                    winners[index].append(call_id)
                except JournalConflictError as exc:
                    conflicts[index].append(exc.actual)
                seq += 3
                barrier.wait(timeout=10)

        asyncio.run(run())

    await asyncio.gather(asyncio.to_thread(writer, 0), asyncio.to_thread(writer, 1))
    assert len(winners[0]) + len(winners[1]) == rounds
    # Each loser saw the winner's three events of that round.
    assert sorted(conflicts[0] + conflicts[1]) == [3 * (step + 1) for step in range(rounds)]
    expected: list[Event] = []
    for step in range(rounds):
        winner = f"w0-{step}" if f"w0-{step}" in winners[0] else f"w1-{step}"
        expected += tool_step(step, call_id=winner)
    assert await store.load("run-1") == expected
    assert (await store.get_run("run-1")).last_seq == 3 * rounds


# --- run records ----------------------------------------------------------------------------


async def test_the_record_gets_the_real_last_seq(store: Store) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record(last_seq=999))
    assert (await store.get_run("run-1")).last_seq == 1
    await store.append("run-1", tool_step(1), expected_seq=1, record=record(last_seq=0))
    assert (await store.get_run("run-1")).last_seq == 4


async def test_every_record_field_round_trips(store: Store) -> None:
    first = record(cost_usd=None, output_preview=None, reason_code=None, reason=None)
    await store.append("run-1", [started()], expected_seq=0, record=first)
    assert await store.get_run("run-1") == dataclasses.replace(first, last_seq=1)
    paused = record(
        thread_id="thread-2",
        status="paused",
        created_at=T0 + 0.125,
        agent="weather-v2",
        model="anthropic:claude-3-5-haiku",
        updated_at=T0 + 61.5,
        input="Und in Berlin?",
        steps=3,
        tool_calls=4,
        input_tokens=123_456,
        output_tokens=7_890,
        cost_usd=0.0123456789,
        output_preview="Berlin: 12 °C",
        reason_code="limit.max_steps",
        reason="the run reached its max_steps limit (3 of 3)",
    )
    await store.append("run-1", tool_step(1), expected_seq=1, record=paused)
    assert await store.get_run("run-1") == dataclasses.replace(paused, last_seq=4)


async def test_the_latest_record_is_used_for_listing(store: Store) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record())
    await store.append("run-2", [started("run-2")], expected_seq=0, record=record("run-2"))
    await store.append(
        "run-1",
        finishing_step(1),
        expected_seq=1,
        record=record(status="completed", created_at=T0 + 5),
    )
    assert [r.run_id for r in await store.list_runs(status="running")] == ["run-2"]
    assert [r.run_id for r in await store.list_runs(status="completed")] == ["run-1"]
    assert [r.run_id for r in await store.list_runs()] == ["run-1", "run-2"]


# --- listing --------------------------------------------------------------------------------


async def seed_runs(store: Store) -> None:
    runs = [
        record("r1", thread_id="t1", status="completed", created_at=T0 + 1),
        record("r2", thread_id="t1", status="failed", created_at=T0 + 2),
        record("r3", thread_id="t2", status="completed", created_at=T0 + 3),
        record("r4", thread_id="t2", status="running", created_at=T0 + 3),
        record("r5", thread_id="t1", status="completed", created_at=T0 + 3),
        record("r0", thread_id="t3", status="paused", created_at=T0 - 100),
    ]
    for run in runs:
        await store.append(run.run_id, [started(run.run_id)], expected_seq=0, record=run)


async def test_list_runs_is_newest_first_with_ties_by_run_id_descending(store: Store) -> None:
    await seed_runs(store)
    runs = await store.list_runs()
    assert [r.run_id for r in runs] == ["r5", "r4", "r3", "r2", "r1", "r0"]
    assert all(r.last_seq == 1 for r in runs)
    assert runs[0] == record(
        "r5", thread_id="t1", status="completed", created_at=T0 + 3, last_seq=1
    )


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"thread_id": "t1"}, ["r5", "r2", "r1"]),
        ({"status": "completed"}, ["r5", "r3", "r1"]),
        ({"thread_id": "t1", "status": "completed"}, ["r5", "r1"]),
        ({"thread_id": "t2", "status": "failed"}, []),
        ({"thread_id": "nope"}, []),
        ({"limit": 2}, ["r5", "r4"]),
        ({"limit": 1, "thread_id": "t2"}, ["r4"]),
        ({"limit": 1000}, ["r5", "r4", "r3", "r2", "r1", "r0"]),
    ],
)
async def test_list_runs_filters_combine(
    store: Store, filters: dict[str, Any], expected: list[str]
) -> None:
    await seed_runs(store)
    assert [r.run_id for r in await store.list_runs(**filters)] == expected


async def test_list_runs_default_limit_is_50(store: Store) -> None:
    for i in range(55):
        run_id = f"run-{i:02d}"
        await store.append(run_id, [started(run_id)], expected_seq=0, record=record(run_id))
    runs = await store.list_runs()
    assert len(runs) == 50
    assert runs[0].run_id == "run-54"
    assert runs[-1].run_id == "run-05"


@pytest.mark.parametrize("limit", [0, -1])
async def test_list_runs_refuses_a_limit_below_one(store: Store, limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await store.list_runs(limit=limit)


async def test_an_empty_store_lists_nothing(store: Store) -> None:
    assert await store.list_runs() == []


# --- threads --------------------------------------------------------------------------------


async def test_thread_messages_accumulate_across_runs_in_order(store: Store) -> None:
    first = conversation("Weather in Paris?")
    second = conversation("And in Berlin?")
    await store.append("run-1", [started()], expected_seq=0, record=record())
    await store.append(
        "run-1", finishing_step(1), expected_seq=1, record=record(), thread_messages=first
    )
    await store.append(
        "run-2",
        [started("run-2"), *finishing_step(1)],
        expected_seq=0,
        record=record("run-2"),
        thread_messages=second,
    )
    await store.append(
        "run-3",
        [started("run-3", thread_id="other")],
        expected_seq=0,
        record=record("run-3", thread_id="other"),
        thread_messages=[UserMessage(content="elsewhere")],
    )
    assert await store.thread_messages("thread-1") == first + second
    assert await store.thread_messages("other") == [UserMessage(content="elsewhere")]


async def test_thread_messages_of_an_unknown_thread(store: Store) -> None:
    assert await store.thread_messages("nope") == []


async def test_thread_messages_returns_a_copy(store: Store) -> None:
    messages: list[Message] = [
        UserMessage(content="hi"),
        ToolResultMessage(tool_call_id="c", name="t", content="boom", is_error=True),
    ]
    await store.append(
        "run-1", [started()], expected_seq=0, record=record(), thread_messages=messages
    )
    (await store.thread_messages("thread-1")).clear()
    assert await store.thread_messages("thread-1") == messages


# --- closing --------------------------------------------------------------------------------


async def test_close_twice_is_fine(store: Store) -> None:
    await store.append("run-1", [started()], expected_seq=0, record=record())
    await store.close()
    await store.close()


async def test_a_closed_store_refuses_use(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.load("run-1")
    with pytest.raises(StoreError, match="closed"):
        await store.append("run-1", [started()], expected_seq=0, record=record())


# --- property: any batches load back equal --------------------------------------------------

texts = st.text(max_size=12)
times = st.floats(allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=2**40)
tool_calls = st.builds(ToolCall, id=texts, name=texts, arguments=texts)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | times | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
errors = st.none() | st.builds(ErrorInfo, code=texts, message=texts)
events: st.SearchStrategy[Event] = st.one_of(
    st.builds(
        RunStarted,
        run_id=texts,
        thread_id=texts,
        agent=texts,
        model=texts,
        input=texts,
        tools=st.lists(texts, max_size=3).map(tuple),
        at=times,
    ),
    st.builds(
        ModelResponded,
        step=counts,
        model=texts,
        message=st.builds(
            AssistantMessage,
            content=st.none() | texts,
            tool_calls=st.lists(tool_calls, max_size=3).map(tuple),
        ),
        usage=st.builds(Usage, input_tokens=counts, output_tokens=counts),
        cost_usd=st.none() | times,
        at=times,
    ),
    st.builds(ToolCallStarted, step=counts, call=tool_calls, idempotency_key=texts, at=times),
    st.builds(ToolCallFinished, step=counts, call=tool_calls, result=texts, error=errors, at=times),
    st.builds(
        RunFinished,
        status=st.sampled_from(["completed", "failed", "cancelled"]),
        output=json_values,
        error=errors,
        at=times,
    ),
)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(UserMessage, content=texts),
    st.builds(AssistantMessage, content=st.none() | texts),
)
batches = st.lists(
    st.tuples(st.lists(events, min_size=1, max_size=4), st.lists(messages, max_size=2)),
    min_size=1,
    max_size=5,
)


@pytest.mark.parametrize("open_store", BACKENDS)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches)
def test_any_batches_load_back_equal(
    open_store: StoreFactory, batches: list[tuple[list[Event], list[Message]]]
) -> None:
    async def check(directory: Path) -> None:
        async with open_store(directory) as store:
            seq = 0
            for batch, thread in batches:
                seq = await store.append(
                    "run", batch, expected_seq=seq, record=record("run"), thread_messages=thread
                )
            assert await store.load("run") == [event for batch, _ in batches for event in batch]
            assert (await store.get_run("run")).last_seq == seq
            assert await store.thread_messages("thread-1") == [
                message for _, thread in batches for message in thread
            ]

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(check(Path(directory)))
