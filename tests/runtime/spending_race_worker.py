"""One of two processes racing 100 runs at once against one tenant budget.

Usage: ``spending_race_worker.py DB SCHEMA RUNS LIMIT``. Prints ``ready``, waits for a line on
stdin (so both processes start together), runs ``RUNS`` runs concurrently for tenant ``acme``
and prints one JSON line: each run's id, status, reason code and cost.
"""

from __future__ import annotations

import asyncio
import json
import sys

from keel import Agent, KeelSettings, ModelSettings, Price, Runtime, Usage
from keel.budgets import Budget
from keel.messages import AssistantMessage, ModelResponse
from keel.testing import ScriptedModel

PRICED = "acme:small"
PRICES = {PRICED: Price(input_per_mtok=10_000, output_per_mtok=10_000)}


def agent(n: int) -> Agent:
    reply = ModelResponse(
        message=AssistantMessage(content=f"answer {n}"),
        usage=Usage(requests=1, input_tokens=20, output_tokens=30),
        model=PRICED,
        finish_reason="stop",
    )
    return Agent(
        name=f"desk{n}",
        model=ScriptedModel([reply], name=PRICED),
        model_settings=ModelSettings(max_tokens=100),
    )


async def main(db: str, schema: str, runs: int, limit: float) -> None:
    settings = KeelSettings.from_environ({"KEEL_DB_SCHEMA": schema} if schema != "-" else {})
    budgets = [Budget("tenant", limit, window="total")]
    async with Runtime(store=db, settings=settings, prices=PRICES, budgets=budgets) as runtime:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        sys.stdin.readline()
        results = await asyncio.gather(
            *(runtime.run(agent(n), f"question {n}", tenant="acme") for n in range(runs))
        )
    sys.stdout.write(
        json.dumps(
            [
                {
                    "run_id": r.run_id,
                    "status": r.status,
                    "code": None if r.reason is None else r.reason.code,
                    "cost": r.cost_usd,
                }
                for r in results
            ]
        )
        + "\n"
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
