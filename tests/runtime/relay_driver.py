"""Drives one queued run in a process of its own, streaming its answer slowly, for the test
that follows it from another process through Redis.

Usage: python -m tests.runtime.relay_driver DB_PATH REDIS_URL RUN_ID
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

from keel import Agent, KeelSettings, Runtime
from keel.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    TextDelta,
)
from keel.ports import Model

PIECES = [f"piece {n} " for n in range(12)]


class SlowStream(Model):
    """Streams its answer a piece at a time, a little apart."""

    @property
    def name(self) -> str:
        return "slow-stream"

    async def request(self, request: ModelRequest) -> ModelResponse:
        return ModelResponse(message=AssistantMessage(content="".join(PIECES)))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        sys.stdout.write("streaming\n")
        sys.stdout.flush()
        for piece in PIECES:
            await asyncio.sleep(0.02)
            yield TextDelta(text=piece)
        yield StreamComplete(response=await self.request(request))


AGENT = Agent(name="far", model=SlowStream())


async def main(db: str, redis_url: str, run_id: str) -> None:
    settings = KeelSettings.from_environ({"KEEL_DB": db, "KEEL_REDIS_URL": redis_url})
    async with Runtime(settings=settings, agents=[AGENT], recover_on_start=False) as runtime:
        await runtime.resume(run_id, AGENT)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
