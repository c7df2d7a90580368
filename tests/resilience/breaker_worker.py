"""A second process for the shared-breaker test: calls a failing model through a
CircuitBreaker on a RedisBreakerBoard until the breaker opens, then reports on one JSON line.

    python breaker_worker.py REDIS_URL PREFIX MODEL_NAME FAILURE_THRESHOLD

The board uses the Redis server's clock, as production does.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from keel._core.messages import ModelRequest, UserMessage
from keel.errors import CircuitOpenError, ModelHTTPError
from keel.resilience import BreakerPolicy, CircuitBreaker, RedisBreakerBoard
from keel.testing import FunctionModel


def outage(request: ModelRequest) -> ModelHTTPError:
    return ModelHTTPError("the provider is down", status=503)


async def main(url: str, prefix: str, name: str, threshold: int) -> dict[str, object]:
    policy = BreakerPolicy(failure_threshold=threshold, cooldown_s=60.0)
    board = RedisBreakerBoard(url, policy, prefix=prefix)
    breaker = CircuitBreaker(FunctionModel(outage, name=name), board)
    request = ModelRequest(messages=[UserMessage(content="hello")])
    calls = 0
    refused = False
    try:
        for _ in range(threshold * 2):
            try:
                await breaker.request(request)
            except CircuitOpenError:
                refused = True
                break
            except ModelHTTPError:
                calls += 1
        status = await board.status(name)
    finally:
        await board.close()
    return {"pid": os.getpid(), "calls": calls, "refused": refused, "state": status.state}


if __name__ == "__main__":
    url, prefix, name, threshold = sys.argv[1:5]
    report = asyncio.run(main(url, prefix, name, int(threshold)))
    sys.stdout.write(json.dumps(report) + "\n")
