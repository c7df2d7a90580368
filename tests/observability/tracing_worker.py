"""Another process that continues a run, traced: the span-tree test's second half.

    python tracing_worker.py --db path/keel.db --run RUN_ID --spans path/spans.json

It resumes the run from the shared SQLite journal with the scenario's agent, under a tracer
provider of its own that keeps spans in memory, writes them to ``--spans`` as JSON and prints
the run's status. Nothing passes between the processes but the journal.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from keel import KeelSettings, Runtime
from keel.observability import Tracing
from tests.observability import tracing_scenario as scenario


async def main(db: str, run_id: str, spans: Path) -> None:
    provider, exporter = scenario.memory_provider()
    runtime = Runtime(
        store=db,
        settings=KeelSettings.from_environ({}),
        checks=scenario.checks(),
        observers=[Tracing(provider, capture_content=True)],
        recover_on_start=False,
    )
    try:
        result = await runtime.resume(run_id, scenario.agent())
    finally:
        await runtime.close()
    provider.force_flush()
    scenario.write_spans(exporter.get_finished_spans(), spans)
    print(result.status, flush=True)  # noqa: T201 - the test reads it


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--spans", required=True, type=Path)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.db, arguments.run, arguments.spans))
