"""An intake process that dies right after a run is durable, before the message is
acknowledged: ``python dying_intake.py rabbitmq|nats URL QUEUE_OR_SUBJECT[:STREAM] DB``.

It prints ``submitted RUN_ID`` and exits with code 17 at once (no cleanup, no ack), as a
process killed at that moment would.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from keel import Agent, Runtime
from keel.intake import NatsIntake, RabbitMQIntake
from tests.intake._support import echo


class DiesAfterSubmit(Runtime):
    async def submit(self, agent: Agent[Any], input: str, **options: Any) -> str:
        run_id = await super().submit(agent, input, **options)
        print("submitted", run_id, flush=True)  # noqa: T201 - its protocol with the test
        os._exit(17)


async def main(transport: str, url: str, where: str, db: str) -> None:
    async with DiesAfterSubmit(store=db, agents=[echo()]) as runtime:
        if transport == "rabbitmq":
            await RabbitMQIntake(runtime, url=url, queue=where, drive=False).run()
        else:
            subject, stream, durable = where.split(":")
            intake = NatsIntake(
                runtime,
                url=url,
                subject=subject,
                stream=stream,
                durable=durable,
                drive=False,
                ack_wait_s=1,  # the message comes back soon after this process dies
            )
            await intake.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
