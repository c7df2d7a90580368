"""Making a Redis client from a URL, with errors that name the fix and never the password."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel._redact import redact_url
from keel.errors import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["redis_client", "redis_from_url"]


def redis_from_url(url: str) -> Redis:
    """A ``redis.asyncio`` client for ``url``; a malformed URL raises
    :class:`keel.errors.ConfigurationError` naming the problem (password masked)."""
    import redis.asyncio as aioredis

    try:
        client: Redis = aioredis.Redis.from_url(url)
    except ValueError as exc:
        raise ConfigurationError(
            f"the Redis URL {redact_url(url)!r} is not valid ({exc}); write it like "
            "redis://127.0.0.1:6379/0 (KEEL_REDIS_URL)"
        ) from None
    return client


def redis_client(url_or_client: str | Redis) -> tuple[Redis, bool]:
    """The client for a URL (made here, so owned: close it) or a client given (borrowed)."""
    if isinstance(url_or_client, str):
        return redis_from_url(url_or_client), True
    return url_or_client, False
