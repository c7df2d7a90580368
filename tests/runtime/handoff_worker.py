"""A process that starts a triage run which hands off to billing, and dies right after the
handoff is durable (when billing's model is first asked).

    python handoff_worker.py --journal path/keel.db

Exits with 77 from inside billing's first model call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from keel import KeelSettings, Runtime
from keel.messages import ModelRequest
from keel.stores import SQLiteStore
from keel.testing import FunctionModel
from tests.runtime.handoff_agents import build

CRASHED = 77


def die(request: ModelRequest) -> str:
    sys.stdout.flush()
    os._exit(CRASHED)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--journal", required=True)
    options = parser.parse_args()
    triage, _ = build(billing_model=FunctionModel(die, name="billing-model"))
    async with SQLiteStore(options.journal) as store:
        runtime = Runtime(store=store, settings=KeelSettings.from_environ({}), lease_ttl_s=0.5)
        await runtime.run(triage, "My invoice is wrong", thread="customer-1", user="ana")


if __name__ == "__main__":
    asyncio.run(main())
