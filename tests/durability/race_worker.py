"""A process for the race and fencing tests: resumes (or starts) one run and prints what
happened as one JSON line.

    python race_worker.py --journal PATH --resume RUN_ID --go FILE
    python race_worker.py --journal PATH --start --slow-step 2

``--go FILE`` waits until FILE exists, so two processes start their attempt together. Every
model call and every execution of the slow tool is appended to ``--trace FILE`` with this
process's id, so the test can tell who did what.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from keel import Agent, Limits, Runtime, tool
from keel._core.messages import ModelRequest, ToolResultMessage
from keel.errors import KeelError
from keel.stores._sqlite import SQLiteStore
from keel.testing import FunctionModel, call

TRACE: Path | None = None
SLOW_STEP = 0


def trace(what: str) -> None:
    assert TRACE is not None
    with TRACE.open("a") as file:
        file.write(f"{os.getpid()} {what}\n")


@tool(idempotent=True)
async def work(step: int) -> str:
    """Do one step of work (the slow step takes a while)."""
    trace(f"tool {step}")
    if step == SLOW_STEP:
        await asyncio.sleep(1.5)
    return f"step {step} done by {os.getpid()}"


async def model(request: ModelRequest) -> Any:
    done = sum(isinstance(m, ToolResultMessage) for m in request.messages)
    trace(f"model {done + 1}")
    return call("work", step=done + 1) if done < 4 else "all done"


def make_agent() -> Agent[str]:
    return Agent(name="racer", model=FunctionModel(model), tools=[work])


async def main(options: argparse.Namespace) -> dict[str, Any]:
    store = SQLiteStore(options.journal)
    agent = make_agent()
    try:
        async with Runtime(
            store=store, agents=[agent], recover_on_start=False, lease_ttl_s=options.lease_ttl
        ) as runtime:
            if options.go:
                while not Path(options.go).exists():
                    await asyncio.sleep(0.001)
            try:
                if options.start:
                    result = await runtime.run(agent, "race", limits=Limits(max_steps=10))
                elif options.recover:
                    recovery = await runtime.recover()
                    return {"recovered": [r.status for r in recovery.results]}
                else:
                    result = await runtime.resume(options.resume, limits=Limits(max_steps=10))
            except KeelError as exc:
                return {"error": exc.code}
            return {"status": result.status, "run_id": result.run_id}
    finally:
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--journal", required=True)
    parser.add_argument("--trace", required=True)
    parser.add_argument("--resume")
    parser.add_argument("--start", action="store_true")
    parser.add_argument("--recover", action="store_true")
    parser.add_argument("--go")
    parser.add_argument("--slow-step", type=int, default=0)
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    options = parser.parse_args()
    TRACE = Path(options.trace)
    SLOW_STEP = options.slow_step
    started = time.monotonic()
    outcome = asyncio.run(main(options))
    print(json.dumps({**outcome, "pid": os.getpid(), "seconds": time.monotonic() - started}))
