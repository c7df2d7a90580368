"""A real Redis server for tests: find it (skip locally, fail in CI when it is missing) and
clean up the keys a test wrote.

The server is ``redis://127.0.0.1:6379/0`` unless ``KEEL_TEST_REDIS_URL`` names another. The
``redis_url`` fixture is registered for the whole suite in ``tests/conftest.py``.
"""

from __future__ import annotations

import os

import pytest
import redis.asyncio as aioredis

import redis
from tests.services import require_service

__all__ = ["DEFAULT_REDIS_URL", "REDIS_URL_ENV", "delete_prefix", "redis_url", "require_redis"]

REDIS_URL_ENV = "KEEL_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def require_redis() -> str:
    """The test Redis server's URL, after checking it answers a PING (skip or fail if not)."""
    url = os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
    problem = ""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as error:
        problem = f" ({type(error).__name__})"
    require_service(
        f"Redis at {url}{problem}",
        not problem,
        f"start it with redis-server --daemonize yes --port 6379, or point {REDIS_URL_ENV} at one",
    )
    return url


@pytest.fixture
def redis_url() -> str:
    """The test Redis server's URL (the test skips, or fails in CI, without one)."""
    return require_redis()


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix``: what one test wrote."""
    client = aioredis.Redis.from_url(url)
    try:
        names = [name async for name in client.scan_iter(match=prefix + "*")]
        if names:
            await client.delete(*names)
    finally:
        await client.aclose()
