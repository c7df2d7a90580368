"""A real RabbitMQ broker for tests: find it (skip locally, fail in CI when it is missing), give
each test queue names of its own, and delete the queues it made.

The broker is ``amqp://guest:guest@127.0.0.1:5672/`` unless ``KEEL_TEST_RABBITMQ_URL`` names
another. The fixtures are registered where they are used (``tests/intake/conftest.py``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from keel._redact import redact_url
from tests.services import require_service

__all__ = [
    "DEFAULT_RABBITMQ_URL",
    "RABBITMQ_URL_ENV",
    "Broker",
    "rabbitmq",
    "rabbitmq_url",
]

RABBITMQ_URL_ENV = "KEEL_TEST_RABBITMQ_URL"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
_WAIT_S = 20.0  # the longest a test waits for a message that should come (a safety net)


@pytest.fixture
async def rabbitmq_url() -> str:
    """The test broker's URL, once it accepted a connection (the test skips, or fails in CI,
    without one)."""
    url = os.environ.get(RABBITMQ_URL_ENV) or DEFAULT_RABBITMQ_URL
    problem = ""
    try:
        connection = await aio_pika.connect(url, timeout=3)
        await connection.close()
    except Exception as error:
        problem = f" ({type(error).__name__})"
    require_service(
        f"RabbitMQ at {redact_url(url)}{problem}",
        not problem,
        f"start it (e.g. rabbitmq-server -detached), or point {RABBITMQ_URL_ENV} at one",
    )
    return url


class Broker:
    """A channel for one test, its queue names, and ways to publish and take messages."""

    def __init__(self, url: str, channel: AbstractChannel) -> None:
        self.url = url
        self.channel = channel
        self.queue = f"keel.test.{uuid.uuid4().hex[:12]}"
        self.dead = f"{self.queue}.dead"
        self.outbox = f"{self.queue}.outbox"
        self.replies = f"{self.queue}.replies"
        self.made = [self.queue, self.dead, self.outbox, self.replies]

    async def declare(self, name: str, **arguments: Any) -> None:
        await self.channel.declare_queue(name, durable=True, arguments=arguments or None)

    async def publish(self, body: bytes | dict[str, Any], **properties: Any) -> None:
        """Publish ``body`` (a dict is sent as JSON) to the run queue, confirmed."""
        data = body if isinstance(body, bytes) else _json(body)
        message = aio_pika.Message(
            data, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties
        )
        await self.channel.default_exchange.publish(message, routing_key=self.queue)

    async def take(self, queue: str) -> AbstractIncomingMessage:
        """The next message of ``queue`` (acknowledged), waiting for it to come."""
        declared = await self.channel.declare_queue(queue, durable=True)
        async with declared.iterator(timeout=_WAIT_S) as messages:
            async for message in messages:
                await message.ack()
                return message
        raise AssertionError(f"no message came to {queue} in {_WAIT_S}s")

    async def count(self, queue: str) -> int:
        """How many messages wait in ``queue`` (ready, not held by a consumer)."""
        declared = await self.channel.declare_queue(queue, durable=True, passive=True)
        result = declared.declaration_result
        return int(result.message_count or 0)


def _json(data: dict[str, Any]) -> bytes:
    import json

    return json.dumps(data).encode()


@pytest.fixture
async def rabbitmq(rabbitmq_url: str) -> AsyncIterator[Broker]:
    """A broker for one test, with queue names of its own, deleted afterwards."""
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        broker = Broker(rabbitmq_url, await connection.channel())
        await broker.declare(broker.replies)
        yield broker
        cleanup = await connection.channel()
        for name in broker.made:
            await cleanup.queue_delete(name)
    finally:
        await connection.close()
