"""A Keel process for the Prometheus test: runs an agent once with metrics on, serves them
on a loopback port (printed on stdout), and stays up until its stdin closes."""

from __future__ import annotations

import asyncio
import sys

from keel import Agent, KeelSettings, Runtime
from keel.observability import Metrics
from keel.testing import MemoryStore, ScriptedModel


async def main() -> None:
    metrics = Metrics()
    runtime = Runtime(
        store=MemoryStore(), settings=KeelSettings.from_environ({}), observers=[metrics]
    )
    metrics.watch(runtime, min_interval_s=0)
    agent = Agent(name="scraped", model=ScriptedModel(["All good."]))
    await runtime.run(agent, "How are things?")
    exporter = metrics.serve(0)
    sys.stdout.write(f"{exporter.port}\n")
    sys.stdout.flush()
    # Keep the loop running (scrapes ask it for the queue) until the test closes our stdin.
    await asyncio.to_thread(sys.stdin.read)
    exporter.close()


if __name__ == "__main__":
    asyncio.run(main())
