"""A response cache in this process's memory: least recently used first out, with expiry."""

from __future__ import annotations

from collections import OrderedDict

from keel._core.messages import ModelResponse
from keel.errors import ConfigurationError, UsageError
from keel.ports import Clock, SystemClock
from keel.resilience._cache_base import CacheStats, check_ttl

__all__ = ["MemoryResponseCache"]


class MemoryResponseCache:
    """Keeps up to ``max_entries`` responses in memory; implements ``ResponseCache``.

    When full, storing a new entry evicts the least recently used one; an expired entry is
    dropped when it is next looked up (or evicted in its turn). Expiry is measured on the
    clock's monotonic time. Responses are immutable, so they are kept as objects, not
    encoded. Nothing is shared between processes: use the SQLite or Redis cache for that.
    """

    def __init__(self, max_entries: int = 1024, *, clock: Clock | None = None) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError(
                f"max_entries must be an int of 1 or more, got {max_entries!r}"
            )
        self._max_entries = max_entries
        self._clock: Clock = clock if clock is not None else SystemClock()
        # key -> (expires at, on the monotonic clock; response); oldest use first.
        self._entries: OrderedDict[str, tuple[float, ModelResponse]] = OrderedDict()
        self._stats = CacheStats()
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryResponseCache(max_entries={self._max_entries})"

    def __len__(self) -> int:
        """How many entries are held, expired ones included until they are dropped."""
        return len(self._entries)

    @property
    def stats(self) -> CacheStats:
        """What this cache did so far."""
        return self._stats

    async def get(self, key: str) -> ModelResponse | None:
        """The unexpired response stored under ``key``, or ``None``."""
        self._check_open()
        entry = self._entries.get(key)
        if entry is not None and entry[0] <= self._clock.monotonic():
            del self._entries[key]
            entry = None
        if entry is None:
            self._stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self._stats.record_hit(entry[1])
        return entry[1]

    async def put(self, key: str, response: ModelResponse, ttl_s: float) -> None:
        """Store ``response`` under ``key`` for ``ttl_s`` seconds, evicting the least
        recently used entry if the cache is full."""
        self._check_open()
        expires_at = self._clock.monotonic() + check_ttl(ttl_s)
        self._entries[key] = (expires_at, response)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        self._stats.stores += 1

    async def clear(self) -> None:
        """Remove every entry."""
        self._check_open()
        self._entries.clear()

    async def close(self) -> None:
        """Drop every entry; any later use raises :class:`keel.errors.UsageError`."""
        self._closed = True
        self._entries.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError(f"{self!r} is closed; create a new cache to keep caching")
