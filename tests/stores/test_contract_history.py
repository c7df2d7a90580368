"""Decision history and feedback, on every backend: memory, SQLite and PostgreSQL.

Each listing test fills a store with runs that differ in one field and checks that the filter
keeps exactly the runs it should, newest first; the same data answers on every backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from keel.errors import ConfigurationError, RunNotFoundError, UsageError
from keel.ports import Feedback, FeedbackQuery, RunQuery, RunRecord, Store
from keel.stores import Keyring, SQLiteStore

from ._data import T0, record, started, tool_step


async def add(store: Store, run_id: str, **changes: Any) -> RunRecord:
    """A run with ``changes`` to its record, created at ``T0 + n`` for run ``r<n>``."""
    created = changes.pop("created_at", T0 + int(run_id.lstrip("r")))
    changes.setdefault("updated_at", created)
    written = record(run_id, created_at=created, **changes)
    await store.append(run_id, [started(run_id, at=created)], expected_seq=0, record=written)
    return written


def ids(records: list[RunRecord]) -> list[str]:
    return [r.run_id for r in records]


async def fill(store: Store) -> None:
    """Nine runs, each special in one way."""
    await add(store, "r1")
    await add(store, "r2", agent="billing", status="paused")
    await add(store, "r3", status="paused", tenant="acme")
    await add(store, "r4", tenant="acme", user="u-1", thread_id="t-2")
    await add(store, "r5", tools=("lookup", "refund"), cost_usd=0.5)
    await add(
        store, "r6", tools=("lookup",), cost_usd=0.01, status="failed", reason_code="max_steps"
    )
    await add(store, "r7", agent="billing", updated_at=T0 + 7 + 120.0)
    await add(store, "r8", status="failed", reason_code="model.error", cost_usd=2.0)
    await add(store, "r9", agent="billing", tools=("refund",), status="paused")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (RunQuery(), ["r9", "r8", "r7", "r6", "r5", "r4", "r3", "r2", "r1"]),
        (RunQuery(agent="billing"), ["r9", "r7", "r2"]),
        (RunQuery(status="paused"), ["r9", "r3", "r2"]),
        (RunQuery(status=("paused", "failed")), ["r9", "r8", "r6", "r3", "r2"]),
        (RunQuery(agent="billing", status="paused"), ["r9", "r2"]),
        (RunQuery(agent="billing", status=("paused", "running")), ["r9", "r7", "r2"]),
        (RunQuery(thread="t-2"), ["r4"]),
        (RunQuery(tenant="acme"), ["r4", "r3"]),
        (RunQuery(tenant="acme", status="paused"), ["r3"]),
        (RunQuery(user="u-1"), ["r4"]),
        (RunQuery(since=T0 + 3, until=T0 + 6), ["r5", "r4", "r3"]),
        (RunQuery(tool="refund"), ["r9", "r5"]),
        (RunQuery(tool="lookup"), ["r6", "r5"]),
        (RunQuery(tool="refund", agent="billing"), ["r9"]),
        (RunQuery(tool="lookup", since=T0 + 6), ["r6"]),
        (RunQuery(tool="lookup", tenant="acme"), []),
        (RunQuery(tool="nothing"), []),
        (RunQuery(error="max_steps"), ["r6"]),
        (RunQuery(error="model.error", status="failed"), ["r8"]),
        (RunQuery(min_cost=0.1), ["r8", "r5"]),
        (RunQuery(max_cost=1.0), ["r6", "r5"]),
        (RunQuery(min_cost=0.1, max_cost=1.0), ["r5"]),
        (RunQuery(min_duration=60), ["r7"]),
        (RunQuery(max_duration=60, agent="billing"), ["r9", "r2"]),
    ],
)
async def test_each_filter_keeps_exactly_its_runs_newest_first(
    store: Store, query: RunQuery, expected: list[str]
) -> None:
    await fill(store)
    assert ids(await store.list_runs(query, limit=None)) == expected


async def test_the_older_keywords_still_filter(store: Store) -> None:
    await fill(store)
    assert ids(await store.list_runs(status="paused", limit=2)) == ["r9", "r3"]
    assert ids(await store.list_runs(RunQuery(agent="billing"), status="paused")) == ["r9", "r2"]
    assert ids(await store.list_runs(thread_id="t-2")) == ["r4"]


async def test_pages_follow_the_cursor_and_ignore_runs_created_meanwhile(store: Store) -> None:
    await fill(store)
    first = await store.list_runs(RunQuery(status=("paused", "failed")), limit=3)
    assert ids(first) == ["r9", "r8", "r6"]
    # A newer run and one created at the same second as the page's last one, with a greater id.
    await add(store, "r10", status="paused")
    await add(store, "r61", created_at=T0 + 6, status="paused")
    second = await store.list_runs(
        RunQuery(status=("paused", "failed")), limit=3, before=first[-1].cursor
    )
    assert ids(second) == ["r3", "r2"]
    assert await store.list_runs(limit=3, before=store_cursor(second)) == [
        await store.get_run("r1")
    ]
    # Ties on created_at are broken by run id, in the same order on every backend.
    tied = await store.list_runs(RunQuery(since=T0 + 6, until=T0 + 7))
    assert ids(tied) == ["r61", "r6"]
    assert ids(await store.list_runs(RunQuery(since=T0 + 6), before=tied[0].cursor)) == ["r6"]


def store_cursor(page: list[RunRecord]) -> str:
    return page[-1].cursor


async def test_tenant_user_and_tools_are_kept_from_the_record_on_every_write(store: Store) -> None:
    written = dataclasses.replace(await add(store, "r1", tenant="acme", user="u-1"), last_seq=1)
    assert await store.get_run("r1") == written
    later = dataclasses.replace(
        written,
        status="failed",
        tools=("get_weather",),
        user="u-2",
        agent="other",
        reason_code="tool.failed",
        updated_at=T0 + 9,
    )
    await store.append("r1", tool_step(1), expected_seq=1, record=later)
    assert await store.get_run("r1") == dataclasses.replace(later, last_seq=4)
    assert ids(await store.list_runs(RunQuery(user="u-2", tool="get_weather"))) == ["r1"]
    assert ids(await store.list_runs(RunQuery(agent="other", status="failed"))) == ["r1"]
    assert ids(await store.list_runs(RunQuery(error="tool.failed"))) == ["r1"]
    assert await store.list_runs(RunQuery(user="u-1")) == []
    cleared = dataclasses.replace(later, tenant=None, reason_code=None, tools=("a", "b"))
    await store.append("r1", tool_step(2), expected_seq=4, record=cleared)
    assert await store.list_runs(RunQuery(tenant="acme")) == []
    assert await store.list_runs(RunQuery(error="tool.failed")) == []
    assert ids(await store.list_runs(RunQuery(tool="b"))) == ["r1"]


async def test_started_runs_are_listed_by_their_tools(store: Store) -> None:
    written = record("r1", tools=("refund",), tenant="acme")
    await store.start_run("r1", [started("r1")], record=written, owner="w", ttl_s=60)
    await store.start_run("r2", [started("r2")], record=record("r2"), owner=None, ttl_s=60)
    assert ids(await store.list_runs(RunQuery(tool="refund", tenant="acme"))) == ["r1"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"before": "nonsense"}, "not a page cursor"),
        ({"before": "inf/r1"}, "not a page cursor"),
        ({"query": RunQuery(agent="")}, "agent must be a non-empty string"),
        ({"query": RunQuery(min_cost=float("nan"))}, "min_cost must be a finite number"),
        ({"query": RunQuery(since="yesterday")}, "since must be a finite number"),  # type: ignore[arg-type]
        ({"query": RunQuery(thread="a"), "thread_id": "b"}, "give the thread once"),
        ({"query": RunQuery(status="paused"), "status": "failed"}, "give the status once"),
        ({"query": {"agent": "x"}}, "takes a RunQuery"),
    ],
)
async def test_a_bad_query_is_refused_with_what_to_fix(
    store: Store, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        await store.list_runs(**arguments)


# --- feedback ----------------------------------------------------------------------------


def feedback(n: int, run_id: str = "r1", **changes: Any) -> Feedback:
    base = Feedback(id=f"fb-{n}", run_id=run_id, score=1, at=T0 + 100 + n)
    return dataclasses.replace(base, **changes)


async def test_feedback_is_kept_listed_and_filtered(store: Store) -> None:
    await add(store, "r1")
    await add(store, "r2", agent="billing")
    items = [
        feedback(1, label="golden", comment="exactly right ✓", by="ana"),
        feedback(2, step=1, score=-1, label="wrong-tool", comment=None),
        feedback(3, "r2", score=4.5, label="golden"),
        feedback(4, "r2", score=None, comment="slow"),
    ]
    for item in items:
        await store.add_feedback(item)  # type: ignore[attr-defined]
    listed = store.list_feedback  # type: ignore[attr-defined]
    assert await listed() == items[::-1]
    assert await listed(FeedbackQuery(run_id="r1")) == [items[1], items[0]]
    assert await listed(FeedbackQuery(label="golden")) == [items[2], items[0]]
    assert await listed(FeedbackQuery(min_score=1)) == [items[2], items[0]]
    assert await listed(FeedbackQuery(max_score=0)) == [items[1]]
    assert await listed(FeedbackQuery(since=T0 + 102, until=T0 + 104)) == [items[2], items[1]]
    assert await listed(FeedbackQuery(agent="billing")) == [items[3], items[2]]
    assert await listed(limit=1) == [items[3]]


async def test_feedback_is_deleted_with_its_run(store: Store) -> None:
    await add(store, "r1")
    await add(store, "r2", status="completed")
    await store.add_feedback(feedback(1))  # type: ignore[attr-defined]
    await store.add_feedback(feedback(2, "r2"))  # type: ignore[attr-defined]
    assert await store.delete_runs(["r1"]) == 1
    assert await store.list_feedback() == [feedback(2, "r2")]  # type: ignore[attr-defined]
    assert await store.delete_runs_before(T0 + 1000) == 1
    assert await store.list_feedback() == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("item", "error", "message"),
    [
        (feedback(1, "nope"), RunNotFoundError, "nope"),
        (feedback(1, score=6), UsageError, "score must be a number from -1 to 5"),
        (feedback(1, score=True), UsageError, "score must be"),
        (feedback(1, step=0), UsageError, "step must be a step number"),
        (feedback(1, score=None), UsageError, "needs a score, a label or a comment"),
        (feedback(1, label=""), UsageError, "label must be a non-empty string"),
    ],
)
async def test_bad_feedback_is_refused_and_nothing_kept(
    store: Store, item: Feedback, error: type[Exception], message: str
) -> None:
    await add(store, "r1")
    with pytest.raises(error, match=message):
        await store.add_feedback(item)  # type: ignore[attr-defined]
    assert await store.list_feedback() == []  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="limit must be at least 1"):
        await store.list_feedback(limit=0)  # type: ignore[attr-defined]


async def test_concurrent_feedback_is_all_kept(store: Store) -> None:
    await add(store, "r1")
    await asyncio.gather(*(store.add_feedback(feedback(n)) for n in range(20)))  # type: ignore[attr-defined]
    assert len(await store.list_feedback(limit=None)) == 20  # type: ignore[attr-defined]


async def test_a_feedback_comment_is_encrypted_at_rest(tmp_path: Any) -> None:
    import sqlite3

    key = Keyring.generate_key()
    path = tmp_path / "keel.db"
    async with SQLiteStore(path, keyring=Keyring([key])) as store:
        await add(store, "r1")
        await store.add_feedback(feedback(1, comment="the secret comment", label="golden"))
        assert (await store.list_feedback())[0].comment == "the secret comment"
        rotation = await store.rotate_keys()
        assert rotation.current >= 2  # the run's input and the comment
    with sqlite3.connect(path) as conn:
        (comment, label) = conn.execute("SELECT comment, label FROM feedback").fetchone()
    assert "secret" not in comment
    assert label == "golden"  # labels are filtered on in SQL: plain
