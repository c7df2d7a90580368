"""A second process for the shared rate-limit tests: acquires from, or penalizes, one bucket of a
RedisRateLimiter, then reports on one JSON line.

    python ratelimit_worker.py REDIS_URL PREFIX BUCKET acquire COUNT NOW
    python ratelimit_worker.py REDIS_URL PREFIX BUCKET penalize SECONDS NOW

``acquire`` makes COUNT acquisitions under 30 requests a minute without waiting and reports
how many were granted; ``penalize`` penalizes the bucket for SECONDS. NOW is a fixed time for
the limiter's clock, or ``server`` for the Redis server's clock, as in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from keel.resilience import RateLimit, RedisRateLimiter
from keel.testing import FakeClock

LIMIT = RateLimit(requests_per_minute=30, on_limit="pause")


async def main(url: str, prefix: str, bucket: str, mode: str, amount: str, now: str) -> int:
    clock = None if now == "server" else FakeClock(float(now))
    limiter = RedisRateLimiter(url, prefix=prefix, clock=clock)
    try:
        if mode == "penalize":
            await limiter.penalize(bucket, float(amount))
            return 0
        results = [await limiter.acquire(bucket, LIMIT) for _ in range(int(amount))]
        return sum(r.granted for r in results)
    finally:
        await limiter.aclose()


if __name__ == "__main__":
    granted = asyncio.run(main(*sys.argv[1:7]))
    sys.stdout.write(json.dumps({"pid": os.getpid(), "granted": granted}) + "\n")
