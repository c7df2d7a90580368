"""What calling a tool through MCP costs, against calling the same function directly.

The tool is one function that returns at once (``lookup(key)``), called four ways in one run
of this script:

1. **direct**: ``await lookup(key=...)``, the plain async function;
2. **keel run, direct tool**: one Keel run per call (an in-memory store, a model that answers
   at once: one tool call, then the answer), the function as a ``@tool``;
3. **the mcp SDK alone**: the same function served by an MCP server (the ``mcp`` package's
   ``MCPServer``) in a subprocess over stdio, called with the package's own ``Client``;
4. **MCP over stdio through Keel**: the same, through :class:`keel.mcp.MCPServer`'s tool
   (argument validation, result mapping, the reconnect bookkeeping on top of 3);
5. **keel run, MCP tool**: a Keel run per call as in 2, the tool being the MCP one of 4.

Reported: microseconds per call (the median of the repeats), and the ratios to the direct call
and to the run with a direct tool (what putting a tool behind MCP adds to a run).

    python bench/mcp_overhead.py            # the figures in docs/benchmarks.md
    python bench/mcp_overhead.py --smoke    # seconds; the test suite runs this
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from keel import Agent, Runtime, tool
from keel._core.messages import AssistantMessage, ModelRequest, ModelResponse, ToolCall
from keel._core.usage import Usage
from keel.mcp import MCPServer
from keel.ports import Model
from keel.stores import MemoryStore
from mcp import Client, StdioServerParameters

TABLE = {"a": "apple", "b": "banana"}

SERVER = textwrap.dedent(
    '''
    from mcp.server.mcpserver import MCPServer
    from mcp_types import ToolAnnotations

    server = MCPServer("bench", log_level="ERROR")
    TABLE = {"a": "apple", "b": "banana"}


    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    async def lookup(key: str) -> str:
        """Look a key up."""
        return TABLE.get(key, "unknown")


    server.run("stdio")
    '''
)


async def lookup(key: str) -> str:
    """Look a key up."""
    return TABLE.get(key, "unknown")


class InstantModel(Model):
    """One tool call, then the answer; costs nothing."""

    def __init__(self) -> None:
        self._turn = 0
        self._call = ModelResponse(
            message=AssistantMessage(
                tool_calls=(ToolCall(id="c1", name="lookup", arguments='{"key": "a"}'),)
            ),
            usage=Usage(requests=1),
        )
        self._answer = ModelResponse(message=AssistantMessage(content="done"), usage=Usage())

    @property
    def name(self) -> str:
        return "instant"

    async def request(self, request: ModelRequest) -> ModelResponse:
        self._turn += 1
        return self._call if self._turn % 2 else self._answer


async def timed(
    ways: dict[str, tuple[Callable[[], Awaitable[object]], int]], repeats: int
) -> dict[str, float]:
    """Microseconds per call of each way: the median of ``repeats`` batches of its number of
    calls. The ways take turns within each repeat, so that a busy moment of the shared
    machine falls on all of them rather than on one."""
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for work, calls in ways.values():
        for _ in range(min(calls, 20)):  # warm up
            await work()
    for _ in range(repeats):
        for name, (work, calls) in ways.items():
            started = time.perf_counter()
            for _ in range(calls):
                await work()
            samples[name].append((time.perf_counter() - started) / calls * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


async def main(calls: int, repeats: int) -> None:
    runtime = Runtime(store=MemoryStore())
    direct_agent = Agent(
        name="direct", model=InstantModel(), tools=[tool(side_effects="read")(lookup)]
    )

    async def direct_run() -> None:
        result = await runtime.run(direct_agent, "a?")
        assert result.status == "completed"

    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "bench_server.py"
        script.write_text(SERVER)
        parameters = StdioServerParameters(command=sys.executable, args=[str(script)])
        async with (
            Client(parameters, cache=None) as sdk,
            MCPServer.stdio(sys.executable, args=[str(script)]) as server,
        ):
            [remote] = server.current_tools()
            mcp_agent = Agent(name="mcp", model=InstantModel(), tools=[remote])

            async def mcp_call() -> None:
                assert await remote(key="a") == "apple"

            async def sdk_call() -> None:
                result = await sdk.call_tool("lookup", {"key": "a"})
                assert not result.is_error

            async def mcp_run() -> None:
                result = await runtime.run(mcp_agent, "a?")
                assert result.status == "completed"

            figures = await timed(
                {
                    "direct call": (lambda: lookup("a"), calls * 10),
                    "keel run, direct tool": (direct_run, calls),
                    "the mcp SDK alone over stdio": (sdk_call, calls),
                    "MCP call over stdio through Keel": (mcp_call, calls),
                    "keel run, MCP tool": (mcp_run, calls),
                },
                repeats,
            )
    await runtime.close()
    direct = figures["direct call"]
    run = figures["keel run, direct tool"]
    print(f"{calls} calls x {repeats} repeats (median per call), Python {sys.version.split()[0]}")
    print("| way | µs per call | x direct call | x keel run, direct tool |")
    print("|---|---:|---:|---:|")
    for way, micros in figures.items():
        print(f"| {way} | {micros:,.1f} | {micros / direct:,.0f} | {micros / run:.2f} |")
    sdk_alone = figures["the mcp SDK alone over stdio"]
    through_keel = figures["MCP call over stdio through Keel"]
    print(f"Keel's MCP tool / the SDK's own call: {through_keel / sdk_alone:.2f}")
    added = figures["keel run, MCP tool"] - run
    print(
        f"MCP adds {added:,.0f} µs to a run with one tool call ({added / sdk_alone:.2f} SDK calls)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few calls: seconds")
    arguments = parser.parse_args()
    if arguments.smoke:
        asyncio.run(main(calls=20, repeats=2))
    else:
        asyncio.run(main(calls=100, repeats=15))
