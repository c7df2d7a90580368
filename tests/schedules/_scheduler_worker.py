"""One scheduler process of the fire-once test.

Usage: ``python _scheduler_worker.py TARGET SCHEMA FIRST_DUE COUNT`` (SCHEMA ``-`` for none).
It opens a runtime and a scheduler on TARGET, prints ``ready``, waits for a line on stdin (so
that both processes start together), then ticks at each of COUNT due times of an every-minute
schedule (one tick a moment after each), and prints the run ids it fired as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys

from keel import Agent, Runtime
from keel.schedules import Scheduler
from keel.stores import open_store
from keel.testing import FunctionModel


async def main(target: str, schema: str | None, first_due: float, count: int) -> None:
    store = open_store(target, schema=schema or "keel")
    agent = Agent(name="reporter", model=FunctionModel(lambda request: "report"))
    async with Runtime(store=store, agents=[agent]) as runtime:
        scheduler = Scheduler(runtime)
        await scheduler.store.all()  # connect (and make the tables) before the race
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.readline)
        fired = []
        for number in range(count):
            for done in await scheduler.tick(first_due + number * 60 + 1):
                fired.append(done.run_id)
        await scheduler.stop()
    await store.close()
    sys.stdout.write(json.dumps(fired) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    target, schema, first_due, count = sys.argv[1:5]
    asyncio.run(main(target, None if schema == "-" else schema, float(first_due), int(count)))
