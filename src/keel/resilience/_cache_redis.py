"""A response cache in Redis, shared by every process and host that reaches the server.

Each entry is one string key, ``prefix + key``, holding the response's JSON, with Redis's own
expiry (``SET ... PX``): Redis drops it when its time is up, so nothing here purges. ``clear``
deletes the keys under the prefix (found with ``SCAN``, removed with ``UNLINK``), and only
those: give each cache its own prefix if several share a database.

Needs the ``redis`` package (``pip install 'keel-runtime[redis]'``), through ``redis.asyncio``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from keel._core.messages import ModelResponse
from keel.errors import ConfigurationError, MissingExtraError, UsageError
from keel.resilience._cache_base import CacheStats, check_ttl, decode_response, encode_response
from keel.resilience._redis import redis_from_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisResponseCache"]

# How many keys ``clear`` deletes per UNLINK, and asks SCAN for per step.
_BATCH = 500


class RedisResponseCache:
    """Keeps responses in Redis under ``prefix``; implements ``ResponseCache``.

    Args:
        url_or_client: A Redis URL (``redis://127.0.0.1:6379/0``), for which the cache makes
            its own client and closes it in :meth:`close`; or a ``redis.asyncio.Redis``
            client, which stays the caller's to close.
        prefix: Put before every key, so that the cache's keys can be told apart (and
            cleared) in a database shared with other data.

    Redis errors are raised as ``redis.RedisError``; the
    :class:`keel.resilience._cache.Caching` wrapper answers without the cache when they occur.
    """

    def __init__(self, url_or_client: str | Redis, *, prefix: str = "keel:cache:") -> None:
        try:
            import redis.asyncio  # noqa: F401 - checks that the extra is installed
        except ImportError as exc:
            raise MissingExtraError(
                package="redis", extra="redis", feature="The Redis response cache"
            ) from exc
        if not prefix:
            raise ConfigurationError(
                "prefix must not be empty: clear() deletes every key it starts"
            )
        self._prefix = prefix
        self._owns_client = isinstance(url_or_client, str)
        if isinstance(url_or_client, str):
            self._client: Redis = redis_from_url(url_or_client)
        else:
            self._client = url_or_client
        self._closed = False
        self._stats = CacheStats()

    def __repr__(self) -> str:
        return f"RedisResponseCache(prefix={self._prefix!r})"

    @property
    def prefix(self) -> str:
        """What every key of this cache starts with."""
        return self._prefix

    @property
    def stats(self) -> CacheStats:
        """What this cache did so far (in this process)."""
        return self._stats

    async def get(self, key: str) -> ModelResponse | None:
        """The unexpired response stored under ``key``, or ``None``."""
        self._check_open()
        body: Any = await self._client.get(self._prefix + key)
        # A body that no longer reads (another version wrote it) is a miss; the store that
        # follows a miss replaces it. (Deleting it here could delete a fresh entry another
        # process stored meanwhile.)
        response = None if body is None else decode_response(body)
        if response is None:
            self._stats.misses += 1
            return None
        self._stats.record_hit(response)
        return response

    async def put(self, key: str, response: ModelResponse, ttl_s: float) -> None:
        """Store ``response`` under ``key`` for ``ttl_s`` seconds (at least 1 ms)."""
        self._check_open()
        ttl_ms = max(1, round(check_ttl(ttl_s) * 1000))
        await self._client.set(self._prefix + key, encode_response(response), px=ttl_ms)
        self._stats.stores += 1

    async def clear(self) -> None:
        """Delete every key under this cache's prefix."""
        self._check_open()
        pattern = _glob_escape(self._prefix) + "*"
        batch: list[Any] = []
        async for name in self._client.scan_iter(match=pattern, count=_BATCH):
            batch.append(name)
            if len(batch) >= _BATCH:
                await self._client.unlink(*batch)
                batch = []
        if batch:
            await self._client.unlink(*batch)

    async def close(self) -> None:
        """Close the client if the cache made it. Closing twice is fine; any other use
        afterwards raises :class:`keel.errors.UsageError`."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError(f"{self!r} is closed; create a new cache to keep caching")


def _glob_escape(text: str) -> str:
    """``text`` as a Redis glob pattern that matches only itself."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
