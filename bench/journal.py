"""Journal growth per step, and how long resuming a long run takes.

    python bench/journal.py                 # SQLite (and PostgreSQL with --postgres URL)
    python bench/journal.py --smoke         # seconds; the test suite runs this

**Bytes per step.** Runs of K = 10, 100 and 1000 steps (one tool call per step, realistic
payloads: a 200-character answer, a 300-character tool result) are journaled; the bytes are the
events' JSON as stored. Per step it must not grow with K: each step appends only its own
events, never a copy of the state (checkpointing frameworks write O(steps²)).

**Resume time.** A run paused after 1000 steps is resumed from a freshly opened store: the
time to take its lease, read its journal, fold its state, journal the resume and be ready to
call the model (measured to the first model call). The store is opened (and its connection
made) before the clock starts, as a worker's is before it recovers runs. The median of several
resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from keel import Agent, Limits, Runtime, tool
from keel._core.codec import encode_event
from keel._core.messages import AssistantMessage, ModelRequest, ModelResponse, ToolCall
from keel._core.usage import Usage
from keel.ports import Model, Store
from keel.stores import SQLiteStore

ANSWER = "Let me look that up for you. " * 7  # ~200 characters
RESULT = '{"order_id": "1042", "status": "shipped", "notes": "' + "x" * 250 + '"}'


class StepModel(Model):
    """K tool calls with realistic text, then a final answer; marks when it is first asked."""

    def __init__(self, steps: int) -> None:
        usage = Usage(requests=1, input_tokens=800, output_tokens=60)
        self._responses = [
            ModelResponse(
                message=AssistantMessage(
                    content=ANSWER,
                    tool_calls=(
                        ToolCall(id=f"c{i}", name="lookup", arguments='{"order_id": "1042"}'),
                    ),
                ),
                usage=usage,
            )
            for i in range(steps)
        ]
        self._responses.append(ModelResponse(message=AssistantMessage(content="done"), usage=usage))
        self._next = 0
        self.first_call_at: float | None = None

    @property
    def name(self) -> str:
        return "scripted"

    async def request(self, request: ModelRequest) -> ModelResponse:
        if self.first_call_at is None:
            self.first_call_at = time.perf_counter()
        response = self._responses[min(self._next, len(self._responses) - 1)]
        self._next += 1
        return response


@tool(idempotent=True, side_effects="read")
async def lookup(order_id: str) -> str:
    """Look an order up."""
    return RESULT


def _agent(model: Model, steps: int) -> Agent[str]:
    limits = Limits(
        max_steps=steps,
        max_tool_calls=steps + 1,
        max_repeated_calls=steps + 1,
        max_total_tokens=10**9,
    )
    return Agent(name="bench", model=model, tools=[lookup], limits=limits)


async def bytes_per_step(store: Store, steps: int) -> float:
    model = StepModel(steps)
    runtime = Runtime(store=store)
    result = await runtime.run(_agent(model, steps + 1), "go")
    events = await store.load(result.run_id)
    await runtime.close()
    return sum(len(encode_event(e)) for e in events) / steps


async def resume_ms(make_store: Callable[[int], Store], steps: int, repeats: int) -> list[float]:
    timings = []
    for i in range(repeats):
        store = make_store(i)
        model = StepModel(steps)
        agent = _agent(model, steps)
        runtime = Runtime(store=store, agents=[agent])
        paused = await runtime.run(agent, "go")
        assert paused.status == "paused", paused.reason
        await runtime.close()
        await store.close()
        store = make_store(i)  # a fresh store: nothing of the run is cached in the process
        # A worker's store is open before it resumes runs: opening it (a connection pool, a
        # file) is not part of resuming, so it happens before the clock starts.
        await store.list_runs(limit=1)
        resumer = StepModel(0)
        runtime = Runtime(store=store)
        started = time.perf_counter()
        done = await runtime.resume(
            paused.run_id, _agent(resumer, steps + 1), limits=Limits(max_steps=steps + 1)
        )
        assert done.status == "completed", done.reason
        assert resumer.first_call_at is not None
        timings.append((resumer.first_call_at - started) * 1000)
        await store.close()
    return timings


async def _drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        await conn.execute(drop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--postgres", metavar="URL", help="also resume from a PostgreSQL store")
    options = parser.parse_args()
    sizes = (2, 5) if options.smoke else (10, 100, 1000)
    long_run = 20 if options.smoke else 1000
    repeats = 1 if options.smoke else options.repeats
    print(
        f"# journal  ({time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()})"
    )
    with tempfile.TemporaryDirectory(prefix="keel-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        directory = Path(tmp)
        print("steps  bytes/step (SQLite journal)")
        for k in sizes:
            per_step = asyncio.run(bytes_per_step(SQLiteStore(directory / f"b{k}.db"), k))
            print(f"{k:>5}  {per_step:>10.0f}")
        timings = asyncio.run(
            resume_ms(lambda i: SQLiteStore(directory / f"resume-{i}.db"), long_run, repeats)
        )
        print(
            f"resume of a {long_run}-step run (SQLite): median "
            f"{statistics.median(timings):.1f} ms, min {min(timings):.1f} ms, "
            f"max {max(timings):.1f} ms"
        )
        if options.postgres:
            from keel.stores._postgres import PostgresStore

            schema = f"keel_bench_{os.getpid()}"

            def postgres(i: int) -> Store:
                return PostgresStore(options.postgres, schema=f"{schema}_{i}")

            try:
                timings = asyncio.run(resume_ms(postgres, long_run, repeats))
            finally:
                for i in range(repeats):
                    asyncio.run(_drop_schema(options.postgres, f"{schema}_{i}"))
            print(
                f"resume of a {long_run}-step run (PostgreSQL): median "
                f"{statistics.median(timings):.1f} ms, min {min(timings):.1f} ms, "
                f"max {max(timings):.1f} ms"
            )


if __name__ == "__main__":
    main()
