"""A process that appends to an audit log, for the concurrency tests.

Usage: ``python -m tests.audit.append_worker TARGET SCHEMA NAME COUNT``. It opens the log,
says ``ready`` on stdout, waits for a line on stdin (so that both workers append at the same
time), appends COUNT records (subjects ``NAME-0``...; every third call two at once),
and says ``done``.
"""

from __future__ import annotations

import asyncio
import sys

from keel.audit import AuditEntry, open_audit_log


def _entry(name: str, n: int) -> AuditEntry:
    return AuditEntry(actor="worker", action="policy.decided", subject=f"{name}-{n}")


async def main(target: str, schema: str, name: str, count: int) -> None:
    async with open_audit_log(target, schema=schema or None) as log:
        await log.head()  # connect (and create the tables) before the start signal
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.readline)
        n = 0
        while n < count:
            if n % 3 == 2 and n + 1 < count:
                await log.append_many([_entry(name, n), _entry(name, n + 1)])
                n += 2
            else:
                await log.append(_entry(name, n))
                n += 1
    sys.stdout.write("done\n")


if __name__ == "__main__":
    target, schema, name, count = sys.argv[1:5]
    asyncio.run(main(target, schema, name, int(count)))
