"""One process of the race test: fires reservations at once against one budget.

Usage: ``python _race_worker.py TARGET SCHEMA PROCESS COUNT LIMIT_USD`` (SCHEMA ``-`` for
none). It opens the ledger, prints ``ready`` and waits for a line on stdin (so both processes
start together), reserves COUNT amounts concurrently, and prints one JSON line: the amounts
granted (id -> USD) and how many were refused.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from keel.budgets import Budget, Exhausted, Reserved, open_budget_ledger


def amount(process: int, number: int) -> float:
    """A few cents, different from call to call (whole cents: sums compare exactly)."""
    return ((process * 7 + number * 13) % 9 + 1) / 100


async def main(target: str, schema: str, process: int, count: int, limit: float) -> None:
    ledger = open_budget_ledger(target, schema=None if schema == "-" else schema)
    budgets = [Budget("tenant", limit, key="acme"), Budget("global", limit * 10)]
    keys = {"tenant": "acme", "agent": f"worker-{process}"}
    now = time.time()
    # Connect (and create the tables) before the start, so the race is about reserving.
    await ledger.statuses(budgets=budgets, now=now)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.readline)

    async def one(number: int) -> tuple[str, float, bool]:
        rid = f"p{process}-{number}"
        answer = await ledger.reserve(
            rid, f"run-{process}", keys, amount(process, number), budgets=budgets, now=now
        )
        assert isinstance(answer, Reserved | Exhausted)
        return rid, amount(process, number), isinstance(answer, Reserved)

    answers = await asyncio.gather(*(one(n) for n in range(count)))
    await ledger.aclose()
    granted = {rid: usd for rid, usd, ok in answers if ok}
    sys.stdout.write(json.dumps({"granted": granted, "refused": len(answers) - len(granted)}))
    sys.stdout.flush()


if __name__ == "__main__":
    target, schema, process, count, limit = sys.argv[1:6]
    asyncio.run(main(target, schema, int(process), int(count), float(limit)))
