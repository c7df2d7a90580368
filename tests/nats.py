"""A real NATS server with JetStream for tests: find it (skip locally, fail in CI when it is
missing), give each test a stream and subjects of its own, and delete the stream afterwards.

The server is ``nats://127.0.0.1:4222`` unless ``KEEL_TEST_NATS_URL`` names another. The
fixtures are registered where they are used (``tests/intake/conftest.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

import nats
from tests.services import require_service

__all__ = ["DEFAULT_NATS_URL", "NATS_URL_ENV", "JetStream", "jetstream", "nats_url"]

NATS_URL_ENV = "KEEL_TEST_NATS_URL"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
_WAIT_S = 20.0  # the longest a test waits for a message that should come (a safety net)


@pytest.fixture
async def nats_url() -> str:
    """The test server's URL, once it answered with JetStream on (the test skips, or fails in
    CI, without one)."""
    url = os.environ.get(NATS_URL_ENV) or DEFAULT_NATS_URL
    problem = ""
    client = Client()
    try:
        await client.connect(
            url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False
        )
        await client.jetstream().account_info()
    except Exception as error:
        problem = f" ({type(error).__name__})"
    finally:
        with contextlib.suppress(Exception):
            await client.close()
    require_service(
        f"NATS with JetStream at {url}{problem}",
        not problem,
        f"start it with nats-server -js, or point {NATS_URL_ENV} at one",
    )
    return url


class JetStream:
    """A connection for one test, its stream and subject names, and ways to publish to the
    run subject and take what comes back."""

    def __init__(self, url: str, nc: Client) -> None:
        self.url = url
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        tag = uuid.uuid4().hex[:12]
        self.stream = f"KEEL_TEST_{tag}"
        self.subject = f"keel.test.{tag}"
        self.durable = f"keel-test-{tag}"
        self.dead = f"{self.subject}.dead"
        self.replies = f"keel.test.replies.{tag}"

    async def publish(self, body: bytes | dict[str, Any], **headers: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.js.publish(self.subject, data, headers=headers or None)

    async def listen(self) -> Subscription:
        """Subscribe to the reply subject (before publishing what asks for replies)."""
        return await self.nc.subscribe(self.replies)

    async def dead_letters(self, count: int) -> list[Msg]:
        """The first ``count`` dead letters, acknowledged."""
        consumer = await self.js.pull_subscribe(
            self.dead, durable="dead-reader", stream=self.stream
        )
        taken: list[Msg] = []
        while len(taken) < count:
            batch = await consumer.fetch(count - len(taken), timeout=_WAIT_S)
            for message in batch:
                await message.ack()
            taken += batch
        return taken

    async def pending(self, durable: str) -> tuple[int, int]:
        """``(waiting, unacknowledged)`` messages of a consumer."""
        info = await self.js.consumer_info(self.stream, durable)
        return info.num_pending or 0, info.num_ack_pending or 0


async def next_message(subscription: Subscription) -> Msg:
    """The next message a subscription gets, waiting for it to come."""
    try:
        return await subscription.next_msg(timeout=_WAIT_S)
    except nats.errors.TimeoutError:
        raise AssertionError(f"no message came in {_WAIT_S}s") from None


@pytest.fixture
async def jetstream(nats_url: str) -> AsyncIterator[JetStream]:
    """A connection and names for one test; the test's stream is deleted afterwards."""
    nc = await nats.connect(nats_url)
    names = JetStream(nats_url, nc)
    try:
        yield names
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await names.js.delete_stream(names.stream)
        await nc.close()
