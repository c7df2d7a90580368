"""Keel's overhead per agent step, with the model and the tool taking no time.

A model that answers instantly asks for one tool call per step, K steps per run, then gives a
final answer; the tool is an async function that returns at once. What remains is Keel: the
pure loop, argument validation, the tool call machinery, the events and the journal appends.

    python bench/step_overhead.py            # the figures in docs/benchmarks.md
    python bench/step_overhead.py --quick    # a fast first look
    python bench/step_overhead.py --smoke    # seconds; the test suite runs this
    python bench/step_overhead.py --governance   # only: every governance feature on vs off
    python bench/step_overhead.py --observability   # only: traces, metrics, logs on vs off

Reported per store (memory; SQLite synchronous=FULL on disk, i.e. durable; SQLite NORMAL;
PostgreSQL with --postgres) and for K = 10, 100 and 1000: microseconds per step, the median and
the best of the repeats (on a shared machine the best is the least disturbed measurement of the
same work), the per-step ratio of K to K=10 (1.0 means the cost does not grow with the run's
length), and bare commits measured in the same process, so durable figures can be read as
"commits per step". SQLite's bare commit writes what a step writes (the run's summary and the
step's three events, taken from a real run) on a plain connection to a warm file made by the
store, so the ratio is Keel's cost over the commit itself; PostgreSQL's is a one-row insert.
Peak memory of one K-step run is measured in a separate pass with tracemalloc (which slows
everything, so it is not timed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from keel import Agent, Limits, ModelSettings, Price, Runtime, tool
from keel._core.codec import encode_event
from keel._core.events import Event
from keel._core.messages import AssistantMessage, ModelRequest, ModelResponse, ToolCall
from keel._core.usage import Usage
from keel.ports import Model, RunRecord, Store
from keel.stores import MemoryStore, SQLiteStore


class InstantModel(Model):
    """Answers from precomputed responses: K tool calls, then a final answer. Costs nothing."""

    def __init__(self, steps: int) -> None:
        call = AssistantMessage(tool_calls=(ToolCall(id="c1", name="ping", arguments="{}"),))
        usage = Usage(requests=1, input_tokens=10, output_tokens=5)
        self._responses = [ModelResponse(message=call, usage=usage)] * steps
        self._responses.append(ModelResponse(message=AssistantMessage(content="done"), usage=usage))
        self._next = 0

    @property
    def name(self) -> str:
        return "scripted"

    def reset(self) -> None:
        self._next = 0

    async def request(self, request: ModelRequest) -> ModelResponse:
        response = self._responses[self._next]
        self._next += 1
        return response


@tool(idempotent=True, side_effects="none")
async def ping() -> str:
    """Answer at once."""
    return "pong"


@tool(idempotent=True, side_effects="none")
def ping_sync() -> str:
    """Answer at once, from a thread."""
    return "pong"


def _agent(steps: int, *, sync_tool: bool = False) -> tuple[Agent[str], InstantModel]:
    model = InstantModel(steps)
    if sync_tool:
        model = InstantModel(steps)
        model._responses = [
            ModelResponse(
                message=AssistantMessage(
                    tool_calls=(ToolCall(id="c1", name="ping_sync", arguments="{}"),)
                ),
                usage=r.usage,
            )
            if r.message.tool_calls
            else r
            for r in model._responses
        ]
    agent = Agent(
        name="bench",
        model=model,
        tools=[ping_sync if sync_tool else ping],
        limits=Limits(max_steps=steps + 1, max_tool_calls=steps + 1, max_repeated_calls=steps + 1),
    )
    return agent, model


FEATURES = ("policy", "secret", "rate limit", "budget", "audit")


def _governed(
    store: Store, agent: Agent[str], features: Sequence[str] = FEATURES
) -> tuple[Runtime, Agent[str]]:
    """A runtime with some governance features on: a policy (tool permissions), a known
    secret to mask, a tenant rate limit, a tenant budget (its ledger beside the journal) and
    the audit log (beside the journal too)."""
    from keel.budgets import Budget
    from keel.policies import ToolPermissions
    from keel.resilience import RateLimit

    options: dict[str, Any] = {}
    if "secret" in features:
        options["secrets"] = ["sk-bench-secret-0000000000"]
    if "rate limit" in features:
        options["rate_limits"] = [RateLimit(requests_per_minute=10**9, scope="tenant")]
    if "budget" in features:
        options["budgets"] = [Budget("tenant", 1e9)]
        options["prices"] = {"scripted": Price(input_per_mtok=1.0, output_per_mtok=1.0)}
    if "audit" in features:
        options["audit"] = True
    runtime = Runtime(store=store, **options)
    checked = Agent(
        name=agent.name,
        model=agent.model,
        tools=list(agent.tools),
        limits=agent.limits,
        checks=[ToolPermissions()] if "policy" in features else [],
        model_settings=ModelSettings(max_tokens=64),
    )
    return runtime, checked


async def _time_runs(
    store: Store,
    steps: int,
    runs: int,
    *,
    sync_tool: bool = False,
    governed: Sequence[str] = (),
) -> float:
    """Microseconds per step over ``runs`` runs of ``steps`` steps (plus the final answer)."""
    agent, model = _agent(steps, sync_tool=sync_tool)
    runtime = Runtime(store=store)
    if governed:
        runtime, agent = _governed(store, agent, governed)
    tenant, user = ("acme", "ann") if governed else (None, None)
    # Warm up: imports, statement caches, pydantic validators.
    model.reset()
    await runtime.run(agent, "warm up", tenant=tenant, user=user)
    started = time.perf_counter()
    for _ in range(runs):
        model.reset()
        result = await runtime.run(agent, "go", tenant=tenant, user=user)
        assert result.status == "completed", result.reason
    elapsed = time.perf_counter() - started
    await runtime.close()
    return elapsed / (runs * steps) * 1e6


class _Recording(SQLiteStore):
    """A SQLite store that keeps what each append wrote: its events and the run's summary."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.appends: list[tuple[list[Event], RunRecord]] = []

    async def append(self, run_id: str, events: Sequence[Event], **options: Any) -> int:
        self.appends.append((list(events), options["record"]))
        return await super().append(run_id, events, **options)


async def _one_step(path: Path) -> tuple[list[Event], RunRecord, int]:
    """The events and the run summary one step appends, taken from a real 3-step run (its
    second append: the first tool's result, the model's next answer and its tool call), and
    how many events the run has."""
    agent, _ = _agent(3)
    store = _Recording(path)
    runtime = Runtime(store=store)
    await runtime.run(agent, "go")
    await runtime.close()
    await store.close()
    events, record = store.appends[1]
    return events, record, store.appends[-1][1].last_seq


def _bare_commit_us(directory: Path, count: int = 300) -> float:
    """One durable commit of the rows a step writes, on a plain sqlite3 connection to a warm
    file made by the store (same schema): the run's summary updated and the step's events
    inserted, ``synchronous=FULL``, no Keel code in between."""
    path = directory / f"bare-{time.perf_counter_ns()}.db"
    events, record, seq = asyncio.run(_one_step(path))
    rows = [(event.type, float(event.at), encode_event(event).decode()) for event in events]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    summary = {
        column: getattr(record, column)
        for column in (
            "agent",
            "model",
            "updated_at",
            "input",
            "steps",
            "tool_calls",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "output_preview",
            "reason_code",
            "reason",
        )
    }
    settings = ", ".join(f"{column} = :{column}" for column in summary)
    update = f"UPDATE runs SET {settings}, last_seq = :last_seq WHERE run_id = :run_id"
    insert = "INSERT INTO events (run_id, seq, type, at, body) VALUES (?, ?, ?, ?, ?)"
    started = time.perf_counter()
    for _ in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(update, {**summary, "last_seq": seq + len(rows), "run_id": record.run_id})
        conn.executemany(insert, [(record.run_id, seq + i, *row) for i, row in enumerate(rows, 1)])
        conn.execute("COMMIT")
        seq += len(rows)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed / count * 1e6


async def _bare_pg_commit_us(url: str, count: int = 300) -> float:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TEMP TABLE t (k int PRIMARY KEY, v text)")
        started = time.perf_counter()
        for i in range(count):
            await conn.execute("INSERT INTO t VALUES (%s, %s)", (i, "x" * 300), prepare=False)
        elapsed = time.perf_counter() - started
    return elapsed / count * 1e6


async def _drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def _peak_memory_kib(steps: int) -> float:
    agent, model = _agent(steps)

    async def one() -> float:
        runtime = Runtime(store=MemoryStore())
        await runtime.run(agent, "warm up")
        model.reset()
        tracemalloc.start()
        await runtime.run(agent, "go")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        await runtime.close()
        return peak / 1024

    return asyncio.run(one())


def _median(measure: Callable[[], float], repeats: int) -> float:
    return statistics.median(measure() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, for a first look")
    parser.add_argument("--smoke", action="store_true", help="tiny runs: checks the script works")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--governance", action="store_true", help="only compare governance on and off"
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="only compare traces, metrics and logs all on against all off",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure a PostgreSQL store (a fresh schema, dropped afterwards), e.g. "
        "postgresql://postgres@127.0.0.1:5432/test",
    )
    options = parser.parse_args()
    repeats = 1 if options.quick or options.smoke else options.repeats
    budget = 300 if options.quick else 3000  # steps per measurement
    sizes: tuple[int, ...] = (10, 100) if options.quick else (10, 100, 1000)
    if options.smoke:
        budget, sizes = 6, (2, 3)

    print(
        f"# step overhead  ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()})"
    )
    with tempfile.TemporaryDirectory(prefix="keel-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        directory = Path(tmp)
        commit = _median(lambda: _bare_commit_us(directory), repeats)
        print(
            f"bare SQLite FULL commit of one step's rows (run summary + 3 events): {commit:.0f} us"
        )
        schema = f"keel_bench_{os.getpid()}"
        stores: dict[str, Callable[[], Store]] = {
            "memory": MemoryStore,
            "sqlite-full": lambda: SQLiteStore(directory / f"f{time.perf_counter_ns()}.db"),
            "sqlite-normal": lambda: SQLiteStore(
                directory / f"n{time.perf_counter_ns()}.db", synchronous="normal"
            ),
        }
        baselines = {"sqlite-full": commit}
        if options.governance:
            _governance(stores, budget, repeats)
            return
        if options.observability:
            _observability(budget, repeats)
            return
        if options.postgres:
            from keel.stores._postgres import PostgresStore

            stores["postgres"] = lambda: PostgresStore(options.postgres, schema=schema)
            # A bare commit on the same server, for the ratio.
            pg_commit = _median(lambda: asyncio.run(_bare_pg_commit_us(options.postgres)), repeats)
            print(f"bare PostgreSQL commit (one-row insert): {pg_commit:.0f} us")
            baselines["postgres"] = pg_commit
        print("store          K   median us/step   best us/step   K/10-ratio  commits/step")
        for label, make in stores.items():
            per_k: dict[int, float] = {}
            for k in sizes:

                def measure(make: Callable[[], Store] = make, k: int = k) -> float:
                    return asyncio.run(_time_runs(make(), k, max(1, budget // k)))

                samples = [measure() for _ in range(repeats)]
                per_k[k] = statistics.median(samples)
                ratio = per_k[k] / per_k[sizes[0]]
                base = baselines.get(label)
                commits = per_k[k] / base if base else float("nan")
                print(
                    f"{label:<13} {k:>4} {per_k[k]:>16.1f} {min(samples):>14.1f} "
                    f"{ratio:>12.2f} {commits:>13.2f}"
                )

        if options.postgres:
            asyncio.run(_drop_schema(options.postgres, schema))

        def sync_tool_run() -> float:
            runs = max(1, budget // 100)
            return asyncio.run(_time_runs(MemoryStore(), 100, runs, sync_tool=True))

        sync_us = _median(sync_tool_run, repeats)
        print(f"memory, sync tool (runs in a thread), K=100: {sync_us:.1f} us/step")

        _governance(stores, budget, repeats)
    for k in sizes:
        print(f"peak memory of one run, K={k}: {_peak_memory_kib(k):.0f} KiB")
    for label, us in _test_doubles(2000 if options.smoke else 50_000).items():
        print(f"test double {label}: {us:.1f} us per request")
    sys.stdout.flush()


def _governance(stores: dict[str, Callable[[], Store]], budget: int, repeats: int) -> None:
    """Per step at K=100: each governance feature alone, then all, against none; each
    configuration measured interleaved with the plain one, so noise favours neither."""
    for label in ("memory", "sqlite-full"):
        make = stores[label]

        def one(features: Sequence[str], make: Callable[[], Store] = make) -> float:
            runs = max(1, budget // 100)
            return asyncio.run(_time_runs(make(), 100, runs, governed=features))

        configurations = [(f,) for f in FEATURES] + [("policy", "audit"), FEATURES]
        for features in configurations:
            plain, governed = [], []
            for _ in range(repeats):
                plain.append(one(()))
                governed.append(one(features))
            ratio = statistics.median(governed) / statistics.median(plain)
            name = "all of them" if features == FEATURES else " + ".join(features)
            print(
                f"governance {label:<11} K=100 {name:<16} {statistics.median(governed):8.1f} "
                f"us/step against {statistics.median(plain):7.1f} (ratio {ratio:.2f})"
            )


def _observability(budget: int, repeats: int) -> None:
    """Per step at K=100 in memory: traces (the SDK with a batch processor and an exporter
    that drops what it gets), metrics and logs (INFO, JSON, to a discarding stream) all on,
    against none; interleaved so that noise favours neither."""
    import io
    import logging

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from keel.observability import Logging, Metrics, Tracing, configure_logging

    class Dropping(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    handler = configure_logging(level="INFO", format="json", stream=io.StringIO())

    def observers(which: str) -> list[Any]:
        found: list[Any] = []
        if which in ("traces", "all"):
            found.append(Tracing(tracer_provider=provider))
        if which in ("metrics + logs", "all"):
            found += [Metrics(), Logging()]
        return found

    async def one(which: str) -> float:
        agent, model = _agent(100)
        runtime = Runtime(store=MemoryStore(), observers=observers(which))
        model.reset()
        await runtime.run(agent, "warm up")
        runs = max(1, budget // 100)
        started = time.perf_counter()
        for _ in range(runs):
            model.reset()
            result = await runtime.run(agent, "go")
            assert result.status == "completed", result.reason
        elapsed = time.perf_counter() - started
        await runtime.close()
        return elapsed / (runs * 100) * 1e6

    for which in ("metrics + logs", "traces", "all"):
        plain, observed = [], []
        for _ in range(repeats):
            plain.append(asyncio.run(one("none")))
            observed.append(asyncio.run(one(which)))
        ratio = statistics.median(observed) / statistics.median(plain)
        print(
            f"observability memory K=100 {which:<15} {statistics.median(observed):8.1f} us/step "
            f"against {statistics.median(plain):7.1f} (ratio {ratio:.2f})"
        )
    logging.getLogger("keel").removeHandler(handler)
    provider.shutdown()


def _test_doubles(count: int) -> dict[str, float]:
    """What a request to each shipped test model costs: they must cost less than a step."""
    from keel.messages import UserMessage
    from keel.testing import FunctionModel, ScriptedModel, call

    request = ModelRequest(messages=[UserMessage(content="hi")])
    turn = call("ping")

    async def per_request(model: Model) -> float:
        started = time.perf_counter()
        for _ in range(count):
            await model.request(request)
        return (time.perf_counter() - started) / count * 1e6

    return {
        "FunctionModel (a tool call)": asyncio.run(per_request(FunctionModel(lambda r: turn))),
        "ScriptedModel (a tool call)": asyncio.run(per_request(ScriptedModel([turn] * count))),
    }


if __name__ == "__main__":
    main()
