"""A process of the webhook durability tests.

``python _webhook_worker.py finish TARGET SCHEMA URL SECRET``: run one agent to completion
with webhooks configured but not yet delivering, print the run id, and be killed (SIGKILL)
before anything is sent: the event is in the journal, not in the outbox.

``python _webhook_worker.py deliver TARGET SCHEMA URL SECRET COUNT``: print ``ready``, wait for
a line on stdin, then deliver until COUNT deliveries are delivered (by any process); print how
many this process delivered as one JSON line.

SCHEMA is ``-`` for none.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

from keel import Agent, Runtime
from keel.stores import open_store
from keel.testing import FunctionModel
from keel.webhooks import Webhook, Webhooks


async def finish(target: str, schema: str | None, url: str, secret: str) -> None:
    webhooks = Webhooks([Webhook(url, secret)])
    agent = Agent(name="support", model=FunctionModel(lambda request: "All done."))
    store = open_store(target, schema=schema or "keel")
    runtime = Runtime(store=store, observers=[webhooks])
    await webhooks.start(runtime, background=False)
    result = await runtime.run(agent, "hi")
    sys.stdout.write(result.run_id + "\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # before the deliverer ever ran


async def deliver(target: str, schema: str | None, url: str, secret: str, count: int) -> None:
    # Small claims (4 at a time), so that the two deliverers' claims interleave.
    webhooks = Webhooks([Webhook(url, secret)], concurrency=1)
    store = open_store(target, schema=schema or "keel")
    async with Runtime(store=store) as runtime:
        await webhooks.start(runtime, background=False)
        await webhooks.outbox.deliveries(limit=1)  # connect before the race
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.readline)
        mine = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = await webhooks.run_once(scan=True)
            mine += sum(1 for d in done if d.status == "delivered")
            delivered = await webhooks.outbox.deliveries(status="delivered", limit=count + 1)
            if len(delivered) >= count:
                break
        await webhooks.stop()
    await store.close()
    sys.stdout.write(json.dumps({"delivered": mine}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    mode, target, schema, url, secret = sys.argv[1:6]
    chosen = None if schema == "-" else schema
    if mode == "finish":
        asyncio.run(finish(target, chosen, url, secret))
    else:
        asyncio.run(deliver(target, chosen, url, secret, int(sys.argv[6])))
