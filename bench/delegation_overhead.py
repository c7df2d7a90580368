"""What delegating costs: a run whose one tool call is another agent (a child run) against
the same run whose tool is a plain async function, with models that answer at once.

    python bench/delegation_overhead.py            # the figures in docs/benchmarks.md
    python bench/delegation_overhead.py --smoke    # seconds; the test suite runs this

A parent run asks for one tool call, then answers: two model steps. With a plain tool, the
tool returns at once. With a delegated one (``child.as_tool()``), the call starts a child run
(its own journal: started, one model step, finished) and returns its answer; the parent then
adds the child's cost to its own. Reported per store (memory; SQLite on disk with its default
``synchronous=FULL``, i.e. durable): microseconds per parent run, median and best of the
repeats, the ratio delegated / plain and the extra time a delegated call adds, all measured
in one process, one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from keel import Agent, Runtime, Usage, tool
from keel.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResultMessage,
)
from keel.ports import Model, Store
from keel.stores import MemoryStore, SQLiteStore


class InstantModel(Model):
    """Asks for ``tool`` once (when given), then answers; costs nothing, takes no time."""

    def __init__(self, tool_name: str | None) -> None:
        usage = Usage(requests=1, input_tokens=10, output_tokens=5)
        arguments = '{"input": "look it up"}' if tool_name == "helper" else "{}"
        calls = (
            () if tool_name is None else (ToolCall(id="c1", name=tool_name, arguments=arguments),)
        )
        self._ask = ModelResponse(message=AssistantMessage(tool_calls=calls), usage=usage)
        self._answer = ModelResponse(message=AssistantMessage(content="done"), usage=usage)
        self._asks = bool(calls)

    @property
    def name(self) -> str:
        return "scripted"

    async def request(self, request: ModelRequest) -> ModelResponse:
        if self._asks and not isinstance(request.messages[-1], ToolResultMessage):
            return self._ask
        return self._answer


@tool(idempotent=True, side_effects="none")
async def lookup() -> str:
    """Answer at once."""
    return "done"


def agents() -> tuple[Agent[str], Agent[str]]:
    """A parent with a plain tool, and one that delegates to a child agent."""
    plain = Agent(name="plain", model=InstantModel("lookup"), tools=[lookup])
    child = Agent(name="helper", model=InstantModel(None))
    delegating = Agent(name="delegating", model=InstantModel("helper"), tools=[child.as_tool()])
    return plain, delegating


async def per_run_us(runtime: Runtime, agent: Agent[str], runs: int) -> float:
    """Microseconds per run of ``agent``, ``runs`` one after the other."""
    started = time.perf_counter()
    for _ in range(runs):
        result = await runtime.run(agent, "go")
        assert result.status == "completed", result.reason
    return (time.perf_counter() - started) / runs * 1e6


async def measure(store: Store, runs: int, repeats: int) -> dict[str, list[float]]:
    plain, delegating = agents()
    found: dict[str, list[float]] = {"plain": [], "delegated": []}
    async with Runtime(store=store, recover_on_start=False) as runtime:
        await per_run_us(runtime, plain, 3)  # warm up both paths
        await per_run_us(runtime, delegating, 3)
        for _ in range(repeats):  # interleaved, so that both see the same machine
            found["plain"].append(await per_run_us(runtime, plain, runs))
            found["delegated"].append(await per_run_us(runtime, delegating, runs))
    return found


def report(name: str, found: dict[str, list[float]]) -> None:
    plain = statistics.median(found["plain"])
    delegated = statistics.median(found["delegated"])
    best_plain, best_delegated = min(found["plain"]), min(found["delegated"])
    print(
        f"| {name} | {plain:,.0f} ({best_plain:,.0f}) | {delegated:,.0f} ({best_delegated:,.0f}) "
        f"| {delegated / plain:.2f} ({best_delegated / best_plain:.2f}) "
        f"| {delegated - plain:,.0f} |"
    )


async def main(smoke: bool) -> None:
    runs, repeats = (5, 2) if smoke else (100, 9)
    print(
        f"python {platform.python_version()}, {platform.machine()}, "
        f"{runs} runs x {repeats} repeats per figure"
    )
    print("| store | plain tool µs/run median (best) | delegated µs/run | ratio | extra µs |")
    print("|---|---|---|---|---|")
    report("memory", await measure(MemoryStore(), runs, repeats))
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "bench.db")
        try:
            report("sqlite", await measure(store, runs, repeats))
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    asyncio.run(main(parser.parse_args().smoke))
    sys.exit(0)
