"""Answer repeated requests from a cache instead of the model.

::

    cache = SQLiteResponseCache("keel.db")  # or MemoryResponseCache(), RedisResponseCache(url)
    model = Caching(OpenAIModel("gpt-4o-mini"), cache, ttl_s=3600)
    ...
    await cache.close()

The key
-------
:func:`cache_key` is the SHA-256 of the canonical JSON (keys sorted, no spaces, UTF-8) of the
model's name and everything in the request that shapes the answer: the messages, the tools,
the output schema and its name, and the settings except ``timeout_s`` (how long to wait does
not change what is said). Equal requests give equal keys in every process and on every host;
any difference (a message, a tool's description, the temperature, the model) gives another.

Which requests are cached
-------------------------
Only an answer that asking again would reproduce is worth keeping. With
``deterministic_only=True`` (the default) a request is cached only if its settings say so:
``temperature == 0`` or a ``seed`` is set. ``temperature=None`` means the provider's default,
which samples (1.0 for most), so it is not cached. (Providers do not promise bit-identical
answers even then; a cached answer is one the model gave for this request, which is what a
cache promises.) ``deterministic_only=False`` caches every request.

What a hit returns
------------------
The stored response with ``cached=True``, ``usage`` set to zero tokens (nothing was spent: the
runtime prices a cached answer at 0), ``attempts`` empty (nothing was tried), and
``served_by`` the model that gave the answer in the first place. The tokens the answer had
cost are added to the cache's ``stats`` as saved. A miss calls the model and stores its
response; errors are never stored.

A cache that fails (Redis unreachable, a locked or full disk) does not fail the call: the
wrapper logs a warning on the ``keel.resilience`` logger, counts it in ``stats.errors``, and
answers from the model. Misuse (a closed cache) raises. Two identical requests at the same
moment may both miss and both call the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

from pydantic import TypeAdapter

from keel._core.messages import (
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamComplete,
    StreamEvent,
    TextDelta,
)
from keel._core.usage import Usage
from keel.errors import UsageError
from keel.ports import Model
from keel.resilience._cache_base import CacheStats, ResponseCache, check_ttl
from keel.resilience._cache_memory import MemoryResponseCache
from keel.resilience._cache_redis import RedisResponseCache
from keel.resilience._cache_sqlite import SQLiteResponseCache
from keel.resilience._wrapper import WrapperModel

__all__ = [
    "CacheStats",
    "Caching",
    "MemoryResponseCache",
    "RedisResponseCache",
    "ResponseCache",
    "SQLiteResponseCache",
    "cache_key",
    "is_deterministic",
]

_log = logging.getLogger("keel.resilience")

_REQUEST: TypeAdapter[ModelRequest] = TypeAdapter(ModelRequest)

# Part of every key: changing what goes into keys (or how) must change this, so that old
# entries are simply never found again.
_KEY_VERSION = 1


def cache_key(model: str, request: ModelRequest) -> str:
    """The exact-match cache key of ``request`` sent to the model named ``model``: a hex
    SHA-256 digest, the same in every process."""
    data = _REQUEST.dump_python(request, mode="json")
    data["settings"].pop("timeout_s", None)
    data["model"] = model
    data["v"] = _KEY_VERSION
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_deterministic(settings: ModelSettings) -> bool:
    """Whether the settings ask for a reproducible answer: ``temperature == 0`` or a
    ``seed`` set. ``temperature=None`` is the provider's default, which samples."""
    return settings.temperature == 0 or settings.seed is not None


class Caching(WrapperModel):
    """Serves repeated requests from ``cache``, asking ``model`` only on a miss.

    Args:
        model: The model answering misses.
        cache: Where responses are kept (memory, SQLite, Redis, or your own
            :class:`ResponseCache`). The cache is not closed by :meth:`aclose`: close it where
            it was made (one cache may serve several models).
        ttl_s: How long a stored response stays valid, in seconds.
        deterministic_only: Cache only requests whose settings make the answer reproducible
            (``temperature == 0`` or a ``seed``); see the module's documentation.

    The name is the wrapped model's: a cache changes where an answer comes from, not which
    model gave it.
    """

    def __init__(
        self,
        model: Model,
        cache: ResponseCache,
        *,
        ttl_s: float = 3600.0,
        deterministic_only: bool = True,
    ) -> None:
        super().__init__(model)
        self._cache = cache
        self._ttl_s = check_ttl(ttl_s)
        self._deterministic_only = deterministic_only

    def __repr__(self) -> str:
        return f"Caching({self._model!r}, {self._cache!r}, ttl_s={self._ttl_s:g})"

    @property
    def cache(self) -> ResponseCache:
        """Where responses are kept."""
        return self._cache

    @property
    def stats(self) -> CacheStats:
        """The cache's statistics."""
        return self._cache.stats

    def key(self, request: ModelRequest) -> str | None:
        """The cache key of ``request``, or ``None`` if it is not to be cached."""
        if self._deterministic_only and not is_deterministic(request.settings):
            return None
        return cache_key(self._model.name, request)

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The cached response to ``request`` if there is one, else the model's (stored)."""
        key = self.key(request)
        if key is None:
            return await self._model.request(request)
        hit = await self._lookup(key)
        if hit is not None:
            return hit
        response = await self._model.request(request)
        await self._store(key, response)
        return response

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """On a hit, the cached text then :class:`StreamComplete`; on a miss, the model's
        stream, its assembled response stored before the last event is passed on."""
        key = self.key(request)
        hit = None if key is None else await self._lookup(key)
        if hit is not None:
            if hit.message.content:
                yield TextDelta(text=hit.message.content)
            yield StreamComplete(response=hit)
            return
        async for event in self._model.stream(request):
            if key is not None and isinstance(event, StreamComplete):
                await self._store(key, event.response)
            yield event

    async def _lookup(self, key: str) -> ModelResponse | None:
        try:
            stored = await self._cache.get(key)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing cache must not fail the call
            self._cache_failed("lookup", exc)
            return None
        if stored is None:
            return None
        return replace(
            stored,
            usage=Usage(),
            attempts=(),
            cached=True,
            served_by=stored.served_by or self._model.name,
        )

    async def _store(self, key: str, response: ModelResponse) -> None:
        try:
            await self._cache.put(key, response, self._ttl_s)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing cache must not fail the call
            self._cache_failed("store", exc)

    def _cache_failed(self, action: str, exc: Exception) -> None:
        self._cache.stats.errors += 1
        _log.warning(
            "response cache %r failed to %s (%s: %s); answering from model '%s' without it",
            self._cache,
            action,
            type(exc).__name__,
            exc,
            self._model.name,
        )
