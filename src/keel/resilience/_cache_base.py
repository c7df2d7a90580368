"""What every response cache shares: the protocol, its statistics and the stored format.

Responses are stored as JSON through a pydantic ``TypeAdapter(ModelResponse)``: validated on
the way back, never pickled. A stored body that no longer validates (written by another
version, or damaged) is a miss; the store that follows the miss replaces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import TypeAdapter, ValidationError

from keel._core.messages import ModelResponse
from keel.errors import ConfigurationError

__all__ = ["CacheStats", "ResponseCache", "check_ttl", "decode_response", "encode_response"]

_RESPONSE: TypeAdapter[ModelResponse] = TypeAdapter(ModelResponse)


@dataclass(slots=True, kw_only=True)
class CacheStats:
    """What a cache did, counted in this process since it was made.

    ``saved_input_tokens`` and ``saved_output_tokens`` sum the usage of every response served
    from the cache: tokens the cached answer would have cost had it been asked again.
    ``errors`` counts cache operations that failed (the :class:`keel.resilience._cache.Caching`
    wrapper then answers without the cache). A shared cache (SQLite, Redis) counts only what
    this process's instance did.
    """

    hits: int = 0
    misses: int = 0
    stores: int = 0
    errors: int = 0
    saved_input_tokens: int = 0
    saved_output_tokens: int = 0

    @property
    def lookups(self) -> int:
        """Hits plus misses."""
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        """The share of lookups that hit, from 0 to 1 (0 before any lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0

    def record_hit(self, response: ModelResponse) -> None:
        """Count a hit, and the tokens the stored response had cost."""
        self.hits += 1
        self.saved_input_tokens += response.usage.input_tokens
        self.saved_output_tokens += response.usage.output_tokens


@runtime_checkable
class ResponseCache(Protocol):
    """Where :class:`keel.resilience._cache.Caching` keeps model responses, by key.

    ``get`` returns the response stored under ``key`` if it has not expired (counting a hit or
    a miss in ``stats``), ``put`` stores one for ``ttl_s`` seconds (replacing any entry with
    that key), ``clear`` removes every entry of this cache, and ``close`` releases connections;
    closing twice is fine. Keys are opaque strings (hex SHA-256 digests, from Caching).
    """

    @property
    def stats(self) -> CacheStats:
        """What this cache did so far."""
        ...

    async def get(self, key: str) -> ModelResponse | None:
        """The unexpired response stored under ``key``, or ``None``."""
        ...

    async def put(self, key: str, response: ModelResponse, ttl_s: float) -> None:
        """Store ``response`` under ``key`` for ``ttl_s`` seconds."""
        ...

    async def clear(self) -> None:
        """Remove every entry."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


def check_ttl(ttl_s: float) -> float:
    """``ttl_s`` if it is a finite number of seconds above 0, else ``ValueError``."""
    if not (isinstance(ttl_s, int | float) and math.isfinite(ttl_s) and ttl_s > 0):
        raise ConfigurationError(f"ttl_s must be a finite number of seconds above 0, got {ttl_s!r}")
    return float(ttl_s)


def encode_response(response: ModelResponse) -> bytes:
    """A response as compact JSON."""
    return _RESPONSE.dump_json(response)


def decode_response(data: str | bytes) -> ModelResponse | None:
    """The response stored as ``data``, or ``None`` if it does not validate."""
    try:
        return _RESPONSE.validate_json(data)
    except ValidationError:
        return None
