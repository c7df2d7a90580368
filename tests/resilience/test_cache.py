"""The response cache: one contract over every backend, and the ``Caching`` wrapper."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from keel._core.messages import (
    AssistantMessage,
    Attempt,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamComplete,
    StreamEvent,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolDefinition,
    UserMessage,
)
from keel._core.usage import Usage
from keel.errors import MissingExtraError, ModelHTTPError, UsageError
from keel.resilience._cache import (
    CacheStats,
    Caching,
    MemoryResponseCache,
    RedisResponseCache,
    ResponseCache,
    SQLiteResponseCache,
    cache_key,
    is_deterministic,
)
from keel.testing._clock import FakeClock
from keel.testing._models import ScriptedModel, call
from tests.redis import delete_prefix, require_redis

DETERMINISTIC = ModelSettings(temperature=0)


def ask(text: str = "hi", *, settings: ModelSettings = DETERMINISTIC) -> ModelRequest:
    """A request; deterministic (temperature 0) unless ``settings`` say otherwise."""
    return ModelRequest(messages=[UserMessage(content=text)], settings=settings)


def answer(text: str = "hello", *, input_tokens: int = 10, output_tokens: int = 5) -> ModelResponse:
    usage = Usage(requests=1, input_tokens=input_tokens, output_tokens=output_tokens)
    return ModelResponse(message=AssistantMessage(content=text), usage=usage, model="m")


RICH = ModelResponse(
    message=AssistantMessage(
        content="looking it up",
        tool_calls=(
            ToolCall(id="c1", name="lookup", arguments='{"order_id": "42"}'),
            ToolCall(id="c2", name="weather", arguments="{bad json"),
        ),
    ),
    usage=Usage(requests=2, input_tokens=120, output_tokens=30, cached_input_tokens=20),
    model="gpt-4o-mini-2024-07-18",
    finish_reason="tool_calls",
    provider_response_id="resp_1",
    served_by="openai:gpt-4o-mini",
    attempts=(
        Attempt(model="openai:gpt-4o", code="model_rate_limited", message="429", latency_ms=3.5),
        Attempt(model="openai:gpt-4o-mini", latency_ms=12.0, waited_ms=100.0),
    ),
    route="short",
)


# --- backends -------------------------------------------------------------------------------


@dataclass
class Backend:
    """A cache under test, and how to let its entries' time run out."""

    cache: ResponseCache
    ttl_s: float
    expire: Callable[[], Awaitable[None]]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    clock = FakeClock()

    async def advance() -> None:
        clock.advance(10.0)

    if request.param == "memory":
        cache: ResponseCache = MemoryResponseCache(clock=clock)
        yield Backend(cache, 10.0, advance)
        await cache.close()
    elif request.param == "sqlite":
        cache = SQLiteResponseCache(tmp_path / "cache.db", clock=clock)
        yield Backend(cache, 10.0, advance)
        await cache.close()
    else:
        url = require_redis()
        prefix = f"keel:test:{uuid.uuid4().hex}:"

        async def wait() -> None:
            await asyncio.sleep(0.08)

        cache = RedisResponseCache(url, prefix=prefix)
        try:
            yield Backend(cache, 0.03, wait)
        finally:
            await cache.close()
            await delete_prefix(url, prefix)


# --- the contract ---------------------------------------------------------------------------


async def test_get_of_a_missing_key_is_a_miss(backend: Backend) -> None:
    assert await backend.cache.get("nothing") is None
    assert backend.cache.stats == CacheStats(misses=1)


async def test_put_then_get_counts_a_hit_and_the_saved_tokens(backend: Backend) -> None:
    cache = backend.cache
    await cache.put("k", answer(input_tokens=7, output_tokens=3), 60.0)

    assert await cache.get("k") == answer(input_tokens=7, output_tokens=3)
    assert await cache.get("k") is not None
    assert cache.stats == CacheStats(hits=2, stores=1, saved_input_tokens=14, saved_output_tokens=6)
    assert cache.stats.hit_rate == 1.0


async def test_put_replaces_the_entry(backend: Backend) -> None:
    await backend.cache.put("k", answer("old"), 60.0)
    await backend.cache.put("k", answer("new"), 60.0)

    stored = await backend.cache.get("k")

    assert stored is not None
    assert stored.message.content == "new"


async def test_entries_expire_after_their_ttl(backend: Backend) -> None:
    cache = backend.cache
    await cache.put("short", answer("short"), backend.ttl_s)
    await cache.put("long", answer("long"), 3600.0)

    await backend.expire()

    assert await cache.get("short") is None
    assert await cache.get("long") == answer("long")
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


async def test_clear_removes_every_entry(backend: Backend) -> None:
    await backend.cache.put("a", answer("a"), 60.0)
    await backend.cache.put("b", answer("b"), 60.0)

    await backend.cache.clear()

    assert await backend.cache.get("a") is None
    assert await backend.cache.get("b") is None


async def test_a_response_with_tool_calls_and_attempts_round_trips(backend: Backend) -> None:
    await backend.cache.put("rich", RICH, 60.0)

    assert await backend.cache.get("rich") == RICH


async def test_closing_twice_is_fine_and_use_after_close_raises(backend: Backend) -> None:
    await backend.cache.close()
    await backend.cache.close()

    with pytest.raises(UsageError, match="closed"):
        await backend.cache.get("k")


@pytest.mark.parametrize("ttl_s", [0.0, -1.0, float("inf"), float("nan")])
async def test_put_refuses_a_ttl_that_is_not_a_positive_number(
    backend: Backend, ttl_s: float
) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        await backend.cache.put("k", answer(), ttl_s)


async def test_every_backend_is_a_response_cache(backend: Backend) -> None:
    assert isinstance(backend.cache, ResponseCache)


# --- backend specifics ----------------------------------------------------------------------


async def test_memory_cache_evicts_the_least_recently_used_entry() -> None:
    cache = MemoryResponseCache(2)
    await cache.put("a", answer("a"), 60.0)
    await cache.put("b", answer("b"), 60.0)
    assert await cache.get("a") is not None  # "a" is now the most recently used

    await cache.put("c", answer("c"), 60.0)

    assert len(cache) == 2
    assert await cache.get("b") is None
    assert await cache.get("a") is not None
    assert await cache.get("c") is not None
    await cache.close()


@pytest.mark.parametrize("max_entries", [0, -1, True, 2.5])
def test_memory_cache_refuses_a_bad_size(max_entries: int) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryResponseCache(max_entries)


async def test_sqlite_cache_shares_the_journal_file_and_other_processes_see_it(
    tmp_path: Path,
) -> None:
    from keel.stores._sqlite import SQLiteStore

    path = tmp_path / "keel.db"
    store = SQLiteStore(path)
    await store.list_runs()  # the journal's schema is in the file
    writer = SQLiteResponseCache(path)
    reader = SQLiteResponseCache(path)
    try:
        await writer.put("k", RICH, 60.0)
        assert await reader.get("k") == RICH
        assert await store.list_runs() == []
    finally:
        await writer.close()
        await reader.close()
        await store.close()
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert {"response_cache", "runs", "events"} <= tables


async def test_sqlite_cache_purges_expired_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = SQLiteResponseCache(tmp_path / "nested" / "cache.db", clock=clock)
    try:
        await cache.put("a", answer(), 5.0)
        await cache.put("b", answer(), 50.0)
        clock.advance(10.0)

        assert await cache.purge_expired() == 1
        assert await cache.get("b") is not None
    finally:
        await cache.close()


async def test_sqlite_cache_purges_every_256_stores(tmp_path: Path) -> None:
    clock = FakeClock()
    cache = SQLiteResponseCache(":memory:", clock=clock)
    try:
        await cache.put("old", answer(), 1.0)
        clock.advance(2.0)
        for i in range(256):
            await cache.put(f"k{i}", answer(), 60.0)

        assert await cache.purge_expired() == 0  # "old" went with the 256th store
    finally:
        await cache.close()


async def test_sqlite_cache_drops_an_entry_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    cache = SQLiteResponseCache(path)
    try:
        await cache.put("k", answer(), 60.0)
        with sqlite3.connect(path) as conn:
            conn.execute('UPDATE response_cache SET body = \'{"not": "a response"}\'')
        conn.close()

        assert await cache.get("k") is None
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM response_cache").fetchone() == (0,)
        conn.close()
    finally:
        await cache.close()


async def test_sqlite_cache_on_a_file_that_is_not_a_database_raises(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the tables you are looking for" * 100)
    cache = SQLiteResponseCache(path)
    assert cache.path == str(path)

    with pytest.raises(sqlite3.DatabaseError):
        await cache.get("k")
    await cache.close()


def test_sqlite_cache_refuses_a_negative_busy_timeout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="busy_timeout_s"):
        SQLiteResponseCache(tmp_path / "c.db", busy_timeout_s=-1)


async def test_redis_cache_takes_a_client_and_leaves_it_open() -> None:
    url = require_redis()
    prefix = f"keel:test:{uuid.uuid4().hex}:"
    client = aioredis.Redis.from_url(url)
    cache = RedisResponseCache(client, prefix=prefix)
    try:
        await cache.put("k", answer(), 60.0)
        await client.set(prefix + "broken", b"{not json")
        assert cache.prefix == prefix
        await cache.close()

        assert await client.get(prefix + "k") is not None  # still open
        reopened = RedisResponseCache(client, prefix=prefix)
        assert await reopened.get("broken") is None  # unreadable: a miss
        assert reopened.stats.misses == 1
    finally:
        await delete_prefix(url, prefix)
        await client.aclose()


async def test_redis_cache_clear_touches_only_its_prefix() -> None:
    url = require_redis()
    base = f"keel:test:{uuid.uuid4().hex}"
    mine = RedisResponseCache(url, prefix=f"{base}:[mine]*:")
    other = RedisResponseCache(url, prefix=f"{base}:[mine]x:")
    try:
        for i in range(500):  # one whole UNLINK batch
            await mine.put(f"k{i}", answer(), 60.0)
        await other.put("k", answer(), 60.0)

        await mine.clear()

        assert await mine.get("k0") is None
        assert await mine.get("k499") is None
        assert await other.get("k") is not None
    finally:
        await mine.close()
        await other.close()
        await delete_prefix(url, base)


def test_redis_cache_without_the_redis_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)

    with pytest.raises(MissingExtraError, match=r"pip install 'keel-runtime\[redis\]'") as caught:
        RedisResponseCache("redis://127.0.0.1:6379/0")

    assert caught.value.package == "redis"
    assert "The Redis response cache" in caught.value.message


def test_redis_cache_refuses_an_empty_prefix() -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisResponseCache("redis://127.0.0.1:6379/0", prefix="")


# --- the key --------------------------------------------------------------------------------

TOOL = ToolDefinition(name="lookup", description="Find an order.", parameters={"type": "object"})
BASE = ModelRequest(
    messages=[SystemMessage(content="be brief"), UserMessage(content="where is 42?")],
    tools=[TOOL],
    settings=DETERMINISTIC,
)


def test_equal_requests_give_equal_keys() -> None:
    twin = ModelRequest(
        messages=[SystemMessage(content="be brief"), UserMessage(content="where is 42?")],
        tools=[replace(TOOL, parameters={"type": "object"})],
        settings=ModelSettings(temperature=0.0, timeout_s=5.0),  # timeout_s is not in the key
    )

    assert cache_key("m", BASE) == cache_key("m", twin)
    assert len(cache_key("m", BASE)) == 64


def test_a_key_is_the_sha256_of_the_canonical_json() -> None:
    # Pinned: the same in every process and version. Changing it loses every stored entry on
    # upgrade, so do it on purpose (and bump the key version).
    request = ModelRequest(messages=[UserMessage(content="hi")], settings=DETERMINISTIC)
    canonical = (
        '{"messages":[{"content":"hi","role":"user"}],"model":"openai:gpt-4o",'
        '"output_name":"output","output_schema":null,"settings":{"max_tokens":null,'
        '"parallel_tool_calls":null,"seed":null,"temperature":0.0,"top_p":null},"tools":[],'
        '"v":1}'
    )

    assert cache_key("openai:gpt-4o", request) == hashlib.sha256(canonical.encode()).hexdigest()


def test_key_ignores_the_order_of_schema_keys() -> None:
    one = replace(TOOL, parameters={"type": "object", "properties": {"id": {"type": "string"}}})
    other = replace(TOOL, parameters={"properties": {"id": {"type": "string"}}, "type": "object"})

    assert cache_key("m", replace(BASE, tools=[one])) == cache_key(
        "m", replace(BASE, tools=[other])
    )


@pytest.mark.parametrize(
    ("model", "request_"),
    [
        ("other", BASE),
        ("m", replace(BASE, messages=[*BASE.messages, UserMessage(content="and 43?")])),
        ("m", replace(BASE, messages=[UserMessage(content="where is 42?")])),
        ("m", replace(BASE, tools=[])),
        ("m", replace(BASE, tools=[replace(TOOL, description="Find a parcel.")])),
        ("m", replace(BASE, output_schema={"type": "object"})),
        ("m", replace(BASE, output_schema={"type": "object"}, output_name="answer")),
        ("m", replace(BASE, settings=ModelSettings(temperature=0.5))),
        ("m", replace(BASE, settings=ModelSettings(temperature=0, seed=1))),
        ("m", replace(BASE, settings=ModelSettings(temperature=0, max_tokens=10))),
    ],
)
def test_any_difference_gives_another_key(model: str, request_: ModelRequest) -> None:
    assert cache_key(model, request_) != cache_key("m", BASE)


@pytest.mark.parametrize(
    ("settings", "deterministic"),
    [
        (ModelSettings(), False),
        (ModelSettings(temperature=0.7), False),
        (ModelSettings(temperature=0), True),
        (ModelSettings(temperature=0.0), True),
        (ModelSettings(seed=3), True),
        (ModelSettings(temperature=1.0, seed=3), True),
    ],
)
def test_deterministic_means_temperature_zero_or_a_seed(
    settings: ModelSettings, deterministic: bool
) -> None:
    assert is_deterministic(settings) is deterministic


# --- the Caching wrapper --------------------------------------------------------------------


@pytest.fixture
async def memory() -> AsyncIterator[MemoryResponseCache]:
    cache = MemoryResponseCache()
    yield cache
    await cache.close()


async def test_a_repeated_deterministic_request_is_answered_from_the_cache(
    memory: MemoryResponseCache,
) -> None:
    model = ScriptedModel([answer("the answer", input_tokens=100, output_tokens=20)], name="s:m")
    caching = Caching(model, memory)

    first = await caching.request(ask())
    second = await caching.request(ask())

    assert len(model.requests) == 1
    assert first.cached is False
    assert first.usage.input_tokens == 100
    assert second.cached is True
    assert second.message == first.message
    assert second.usage == Usage()
    assert second.served_by == "s:m"  # filled with the model's name when the answer had none
    assert caching.stats == CacheStats(
        hits=1, misses=1, stores=1, saved_input_tokens=100, saved_output_tokens=20
    )
    assert caching.name == "s:m"
    assert caching.model is model
    assert caching.cache is memory


async def test_a_hit_keeps_served_by_and_route_and_drops_attempts(
    memory: MemoryResponseCache,
) -> None:
    caching = Caching(ScriptedModel([RICH]), memory)

    await caching.request(ask())
    hit = await caching.request(ask())

    assert hit.served_by == "openai:gpt-4o-mini"
    assert hit.route == "short"
    assert hit.attempts == ()
    assert hit.message == RICH.message
    assert hit.finish_reason == "tool_calls"


async def test_non_deterministic_requests_are_not_cached_by_default(
    memory: MemoryResponseCache,
) -> None:
    model = ScriptedModel(["one", "two"])
    caching = Caching(model, memory)

    first = await caching.request(ask(settings=ModelSettings()))
    second = await caching.request(ask(settings=ModelSettings()))

    assert (first.message.content, second.message.content) == ("one", "two")
    assert memory.stats == CacheStats()
    assert caching.key(ask(settings=ModelSettings())) is None


async def test_a_seed_makes_a_request_cacheable(memory: MemoryResponseCache) -> None:
    model = ScriptedModel(["one"])
    caching = Caching(model, memory)

    await caching.request(ask(settings=ModelSettings(temperature=0.9, seed=7)))
    again = await caching.request(ask(settings=ModelSettings(temperature=0.9, seed=7)))

    assert again.cached
    assert len(model.requests) == 1


async def test_deterministic_only_false_caches_every_request(
    memory: MemoryResponseCache,
) -> None:
    model = ScriptedModel(["one"])
    caching = Caching(model, memory, deterministic_only=False)

    await caching.request(ask(settings=ModelSettings()))
    again = await caching.request(ask(settings=ModelSettings()))

    assert again.cached
    assert again.message.content == "one"


async def test_different_requests_and_models_do_not_share_entries(
    memory: MemoryResponseCache,
) -> None:
    a = ScriptedModel(["a1", "a2"], name="a")
    b = ScriptedModel(["b1"], name="b")

    assert (await Caching(a, memory).request(ask("x"))).message.content == "a1"
    assert (await Caching(a, memory).request(ask("y"))).message.content == "a2"
    assert (await Caching(b, memory).request(ask("x"))).message.content == "b1"
    assert (await Caching(a, memory).request(ask("x"))).cached


async def test_errors_are_not_cached(memory: MemoryResponseCache) -> None:
    outage = ModelHTTPError("down", status=503)
    model = ScriptedModel([outage, "back"])
    caching = Caching(model, memory)

    with pytest.raises(ModelHTTPError):
        await caching.request(ask())
    answered = await caching.request(ask())

    assert answered.message.content == "back"
    assert not answered.cached
    assert memory.stats.stores == 1


async def test_entries_expire_after_the_wrapper_ttl() -> None:
    clock = FakeClock()
    cache = MemoryResponseCache(clock=clock)
    model = ScriptedModel(["one", "two"])
    caching = Caching(model, cache, ttl_s=60.0)

    await caching.request(ask())
    clock.advance(61.0)
    later = await caching.request(ask())

    assert later.message.content == "two"
    assert not later.cached
    await cache.close()


def test_caching_refuses_a_bad_ttl(memory: MemoryResponseCache) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        Caching(ScriptedModel([]), memory, ttl_s=0)


class BrokenCache(MemoryResponseCache):
    """A cache whose backend is down."""

    async def get(self, key: str) -> ModelResponse | None:
        raise ConnectionError("cache server unreachable")

    async def put(self, key: str, response: ModelResponse, ttl_s: float) -> None:
        raise ConnectionError("cache server unreachable")


async def test_a_failing_cache_does_not_fail_the_call(caplog: pytest.LogCaptureFixture) -> None:
    cache = BrokenCache()
    model = ScriptedModel(["one", "two"])
    caching = Caching(model, cache)

    with caplog.at_level(logging.WARNING, logger="keel.resilience"):
        first = await caching.request(ask())
        second = await caching.request(ask())

    assert (first.message.content, second.message.content) == ("one", "two")
    assert cache.stats.errors == 4
    assert "cache server unreachable" in caplog.text
    await cache.close()


class MisusedCache(MemoryResponseCache):
    async def put(self, key: str, response: ModelResponse, ttl_s: float) -> None:
        raise UsageError("this cache is read-only")


async def test_a_cache_misuse_on_store_raises() -> None:
    cache = MisusedCache()
    caching = Caching(ScriptedModel(["one"]), cache)

    with pytest.raises(UsageError, match="read-only"):
        await caching.request(ask())
    await cache.close()


async def test_a_closed_cache_is_a_mistake_that_raises(memory: MemoryResponseCache) -> None:
    caching = Caching(ScriptedModel(["one"]), memory)
    await memory.close()

    with pytest.raises(UsageError, match="closed"):
        await caching.request(ask())


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


async def test_stream_miss_passes_the_stream_through_and_stores_it(
    memory: MemoryResponseCache,
) -> None:
    model = ScriptedModel(["streamed"])
    caching = Caching(model, memory)

    events = await collect(caching.stream(ask()))

    assert events[0] == TextDelta(text="streamed")
    assert isinstance(events[-1], StreamComplete)
    assert not events[-1].response.cached
    assert memory.stats.stores == 1


async def test_stream_hit_yields_the_text_then_the_cached_response(
    memory: MemoryResponseCache,
) -> None:
    model = ScriptedModel(["streamed"])
    caching = Caching(model, memory)
    await caching.request(ask())

    events = await collect(caching.stream(ask()))

    assert len(model.requests) == 1
    assert events[0] == TextDelta(text="streamed")
    assert isinstance(events[-1], StreamComplete)
    assert events[-1].response.cached
    assert events[-1].response.usage == Usage()


async def test_stream_hit_of_a_tool_call_answer_yields_only_the_complete_event(
    memory: MemoryResponseCache,
) -> None:
    caching = Caching(ScriptedModel([call("lookup", order_id="1")]), memory)
    await caching.request(ask())

    events = await collect(caching.stream(ask()))

    assert len(events) == 1
    assert isinstance(events[0], StreamComplete)
    assert events[0].response.message.tool_calls[0].name == "lookup"


async def test_a_non_deterministic_stream_is_not_stored(memory: MemoryResponseCache) -> None:
    caching = Caching(ScriptedModel(["one"]), memory)

    events = await collect(caching.stream(ask(settings=ModelSettings())))

    assert isinstance(events[-1], StreamComplete)
    assert memory.stats == CacheStats()


async def test_aclose_closes_the_model_but_not_the_cache(memory: MemoryResponseCache) -> None:
    closed: list[str] = []

    class Closing(ScriptedModel):
        async def aclose(self) -> None:
            closed.append(self.name)

    caching = Caching(Closing(["one"]), memory)
    await caching.aclose()

    assert closed == ["scripted"]
    assert await memory.get("k") is None  # still usable
    assert "Caching(" in repr(caching)
