"""Observability's cost per step in CPU instructions, counted by valgrind (callgrind): the same
work gives the same count whatever else the machine is doing, so the ratios are steady where
wall-clock ratios on a shared machine move by tens of percent.

    python bench/observability_instructions.py          # needs valgrind
    python bench/observability_instructions.py --smoke  # without valgrind: the workload once

The workload is step_overhead.py's (an instant model, one tool call per step, K = 100, memory
store). Each configuration runs twice, with 2 and with 12 runs; the difference is 1,000 steps,
so start-up and imports cancel out. Traces: ``Tracing`` on the OpenTelemetry SDK with a batch
processor and an exporter that drops what it gets (its thread's instructions count too);
metrics: ``Metrics``; logs: ``Logging`` at INFO as JSON lines to a discarding stream.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIGS = ("none", "metrics + logs", "traces", "all")


def workload(which: str, runs: int) -> None:
    """``runs`` runs of 100 steps with the observers ``which`` names."""
    sys.path.insert(0, str(Path(__file__).parent))
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from step_overhead import _agent

    from keel import Runtime
    from keel.observability import Logging, Metrics, Tracing, configure_logging
    from keel.stores import MemoryStore

    class Dropping(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    configure_logging(level="INFO", format="json", stream=io.StringIO())
    observers: list[Any] = []
    if which in ("traces", "all"):
        observers.append(Tracing(tracer_provider=provider))
    if which in ("metrics + logs", "all"):
        observers += [Metrics(), Logging()]

    async def main() -> None:
        agent, model = _agent(100)
        runtime = Runtime(store=MemoryStore(), observers=observers)
        for _ in range(runs):
            model.reset()
            result = await runtime.run(agent, "go")
            assert result.status == "completed", result.reason
        await runtime.close()

    asyncio.run(main())
    provider.shutdown()


def _instructions(which: str, runs: int, directory: Path) -> int:
    out = directory / f"callgrind.{which.replace(' ', '')}.{runs}"
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--workload",
            which,
            "--runs",
            str(runs),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found is not None, done.stderr
    return int(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="the workload once, no valgrind")
    options = parser.parse_args()
    if options.workload:
        workload(options.workload, options.runs)
        return
    if options.smoke or shutil.which("valgrind") is None:
        for which in CONFIGS:
            workload(which, 1)
        print("observability workload ran (instructions need valgrind)")
        return
    print(
        f"# observability instructions  ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()})"
    )
    per_step: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="keel-bench-ir-") as tmp:
        for which in CONFIGS:
            few = _instructions(which, 2, Path(tmp))
            many = _instructions(which, 12, Path(tmp))
            per_step[which] = (many - few) / 1000
    base = per_step["none"]
    for which in CONFIGS:
        print(
            f"{which:<15} {per_step[which] / 1000:8.1f} k instructions/step  "
            f"ratio {per_step[which] / base:.2f}"
        )


if __name__ == "__main__":
    main()
