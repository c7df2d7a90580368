"""Reliability under chaos: many runs against a provider that fails 30% of requests.

    python bench/chaos.py              # 1,000 runs (the figure in docs/benchmarks.md)
    python bench/chaos.py --smoke      # a few runs; the test suite runs this

A 5-step agent (four tool calls, then an answer) runs against the loopback OpenAI-compatible
server, over real HTTP. The primary server fails 30% of requests in mixed ways: 429 with
Retry-After, 500, 503, a hang past the client's timeout, malformed JSON, a body cut in the
middle. A second, healthy server is the fallback. The runtime uses its default composition:
retries with backoff, a circuit breaker per model, and the fallback chain.

Reported: the share of runs that complete (target: at least 99.9%); the status and reason of
every other run; the longest run against its deadline (none may hang past it); the added
latency (p50 and p99 of run durations, against the same runs without faults, measured in the
same process); and what the resilience layer did (attempts, fallbacks, breaker opens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from keel import Agent, KeelSettings, Limits, Model, Runtime, tool
from keel._core.events import ModelResponded
from keel._core.usage import Usage
from keel.models._openai import OpenAIModel
from keel.resilience import BreakerPolicy, RetryPolicy
from keel.stores import MemoryStore
from keel.testing import Fault, OpenAICompatibleServer
from keel.testing._loopback import Reply

STEPS = 4  # tool calls before the answer: 5 model calls per run
RUN_DEADLINE_S = 30.0
CLIENT_TIMEOUT_S = 0.5  # a hang past this is a timeout, and retried


class StepServer(OpenAICompatibleServer):
    """Answers by the request's content, so concurrent runs each get their own next step."""

    def _next_reply(self, body: Any) -> tuple[Reply, int]:
        messages = body.get("messages", []) if isinstance(body, dict) else []
        done = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "tool")
        usage = Usage(requests=1, input_tokens=200 + 50 * done, output_tokens=20)
        with self._lock:
            self._answered += 1
            number = self._answered
        if done < STEPS:
            arguments = json.dumps({"step": done + 1})
            return Reply(tool_calls=(("work", arguments),), usage=usage), number
        return Reply(text=f"done after {done} steps", usage=usage), number


@tool(idempotent=True, side_effects="read")
async def work(step: int) -> str:
    """Do one step of work."""
    return f"step {step} done"


CHAOS = (
    Fault.status(429, retry_after=0.05),
    Fault.status(500),
    Fault.status(503),
    Fault.delay(CLIENT_TIMEOUT_S * 3),
    Fault.malformed_json(),
    Fault.cut_stream(),
)


@dataclass
class Outcome:
    statuses: Counter[str]
    reasons: Counter[str]
    durations: list[float]
    served_by: Counter[str]
    attempts: Counter[int]
    skipped: int
    breaker_opens: int


async def run_all(primary: StepServer, backup: StepServer, runs: int, concurrency: int) -> Outcome:
    settings = KeelSettings(openai_base_url="http://127.0.0.1:9/v1")
    retry = RetryPolicy(max_attempts=3, initial_backoff_s=0.02, max_backoff_s=0.2, deadline_s=10)
    breaker = BreakerPolicy(failure_threshold=5, cooldown_s=0.5)
    runtime = Runtime(store=MemoryStore(), settings=settings, retry=retry, breaker=breaker)
    for prefix, server in (("primary", primary), ("backup", backup)):

        def factory(
            model: str, s: KeelSettings, base: str = server.base_url, p: str = prefix
        ) -> Model:
            return OpenAIModel(model, base_url=base, provider=p, timeout_s=CLIENT_TIMEOUT_S)

        runtime.models.register(prefix, factory)
    agent = Agent(
        name="chaos",
        model=["primary:m", "backup:m"],
        tools=[work],
        limits=Limits(max_wall_time_s=RUN_DEADLINE_S, max_repeated_calls=10),
    )
    gate = asyncio.Semaphore(concurrency)
    outcome = Outcome(Counter(), Counter(), [], Counter(), Counter(), 0, 0)

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            result = await runtime.run(agent, f"job {i}")
            outcome.durations.append(time.perf_counter() - started)
            outcome.statuses[result.status] += 1
            if result.reason is not None:
                outcome.reasons[f"{result.reason.code}: {result.reason.message[:120]}"] += 1
            for event in await runtime.store.load(result.run_id):
                if isinstance(event, ModelResponded):
                    outcome.served_by[event.model] += 1
                    outcome.attempts[max(1, len(event.attempts))] += 1
                    outcome.skipped += sum(a.skipped for a in event.attempts)

    async with runtime:
        await asyncio.gather(*(one(i) for i in range(runs)))
    return outcome


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(runs: int, concurrency: int, rate: float) -> None:
    print(
        f"# chaos  ({time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()})"
    )
    async with StepServer() as calm_primary, StepServer() as calm_backup:
        baseline = await run_all(calm_primary, calm_backup, runs, concurrency)
    async with (
        StepServer(fail_rate=rate, chaos_faults=CHAOS, seed=7) as primary,
        StepServer() as backup,
    ):
        chaos = await run_all(primary, backup, runs, concurrency)
        requests = len(primary.requests)
    completed = chaos.statuses["completed"]
    print(
        f"runs: {runs}, concurrency {concurrency}, primary failing {rate:.0%} of requests "
        f"({requests} requests reached it)"
    )
    print(f"completed: {completed}/{runs} = {completed / runs:.2%}")
    for status, count in sorted(chaos.statuses.items()):
        if status != "completed":
            print(f"  {status}: {count}")
    for reason, count in chaos.reasons.most_common():
        print(f"  reason x{count}: {reason}")
    longest = max(chaos.durations)
    print(
        f"longest run: {longest:.2f} s (deadline {RUN_DEADLINE_S:.0f} s): "
        f"{'none hung past it' if longest <= RUN_DEADLINE_S else 'A RUN HUNG PAST ITS DEADLINE'}"
    )
    for label, result in (("without faults", baseline), ("with faults", chaos)):
        print(
            f"run duration {label}: p50 {statistics.median(result.durations) * 1000:.0f} ms, "
            f"p99 {percentile(result.durations, 0.99) * 1000:.0f} ms"
        )
    added_p50 = statistics.median(chaos.durations) - statistics.median(baseline.durations)
    added_p99 = percentile(chaos.durations, 0.99) - percentile(baseline.durations, 0.99)
    print(f"added latency: p50 {added_p50 * 1000:.0f} ms, p99 {added_p99 * 1000:.0f} ms")
    total = sum(chaos.served_by.values())
    print(
        f"model calls answered: {total}; by the fallback: {chaos.served_by['backup:m']} "
        f"({chaos.served_by['backup:m'] / total:.1%})"
    )
    print(
        f"tries per answered call: {dict(sorted(chaos.attempts.items()))}; "
        f"skipped while the breaker was open: {chaos.skipped}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--smoke", action="store_true", help="a few runs, to check it works")
    options = parser.parse_args()
    runs = 10 if options.smoke else options.runs
    asyncio.run(main(runs, options.concurrency, options.rate))
