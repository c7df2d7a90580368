"""Keel's pytest plugin, loaded by pytest wherever Keel is installed (an entry point in the
``pytest11`` group; ``-p no:keel`` turns it off, ``-p keel.pytest_plugin`` loads it where
plugins are not auto-loaded).

Fixtures:

- ``keel_clock``: a :class:`keel.testing.FakeClock` (1 ms passes per reading).
- ``keel_store``: a :class:`keel.testing.MemoryStore` that round-trips events through JSON.
- ``keel_runtime``: a :class:`keel.Runtime` on both, with default settings (nothing read
  from the environment), that keeps every run's journal for ``keel_journal``.
- ``keel_journal``: ``keel_journal(result)`` is a run's events.
- ``keel_expect``: ``keel_expect(result)`` is :func:`keel.testing.expect` with the run's
  journal, so a failing check prints the run's timeline.

A test that would send a request to a model provider that is not on this machine (an
OpenAI or Anthropic model whose ``base_url`` is not loopback) fails, without the request
being sent, unless it is marked ``@pytest.mark.keel_live``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:  # for annotations; the fixtures and the guard import what they use
    from keel._core.events import Event
    from keel._core.state import RunState
    from keel._runtime.result import RunResult
    from keel._runtime.runtime import Runtime
    from keel.errors import ConfigurationError
    from keel.stores._memory import MemoryStore
    from keel.testing._clock import FakeClock
    from keel.testing._expect import RunExpectation

__all__ = ["keel_clock", "keel_expect", "keel_journal", "keel_runtime", "keel_store"]

_LIVE = "keel_live"
_blocked_key = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``keel_live`` marker (``--strict-markers`` knows it)."""
    config.addinivalue_line(
        "markers",
        f"{_LIVE}: the test may call real model providers over the network (Keel refuses "
        "requests to non-loopback model URLs in other tests)",
    )


class _Journals:
    """Every run's events as the runtime journals them (an observer of the runtime)."""

    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = {}

    def observed(self, state: RunState, events: Sequence[Event]) -> None:
        self.events.setdefault(state.run_id, []).extend(events)

    def __call__(self, result: RunResult[Any] | str) -> list[Event]:
        run_id = result if isinstance(result, str) else result.run_id
        if run_id not in self.events:
            raise KeyError(f"keel_runtime did not run {run_id}")
        return list(self.events[run_id])


@pytest.fixture
def keel_clock() -> FakeClock:
    """A fake clock; 1 ms passes at each reading, so events get distinct times."""
    from keel.testing._clock import FakeClock

    return FakeClock(tick=0.001)


@pytest.fixture
def keel_store(keel_clock: FakeClock) -> MemoryStore:
    """An in-memory store that checks every event survives JSON, as a durable store's must."""
    from keel.stores._memory import MemoryStore

    return MemoryStore(clock=keel_clock, check_json=True)


@pytest.fixture
def _keel_journals() -> _Journals:
    return _Journals()


@pytest.fixture
def keel_runtime(
    keel_store: MemoryStore, keel_clock: FakeClock, _keel_journals: _Journals
) -> Iterator[Runtime]:
    """A runtime on ``keel_store`` and ``keel_clock`` with default settings."""
    from keel._runtime.runtime import Runtime
    from keel._settings import KeelSettings

    runtime = Runtime(
        store=keel_store,
        settings=KeelSettings(),
        clock=keel_clock,
        recover_on_start=False,
        observers=[_keel_journals],
    )
    yield runtime
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(runtime.close())


@pytest.fixture
def keel_journal(keel_runtime: Runtime, _keel_journals: _Journals) -> _Journals:
    """``keel_journal(result)``: the events ``keel_runtime`` journaled for that run."""
    return _keel_journals


@pytest.fixture
def keel_expect(
    keel_runtime: Runtime, _keel_journals: _Journals
) -> Callable[[RunResult[Any]], RunExpectation]:
    """``keel_expect(result)``: checks on a run of ``keel_runtime``, whose failures print
    the run's timeline."""

    from keel.testing._expect import expect

    def check(result: RunResult[Any]) -> RunExpectation:
        events = _keel_journals.events.get(result.run_id)
        return expect(result, events)

    return check


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refusal(url: str, node: pytest.Item) -> ConfigurationError:
    from keel.errors import ConfigurationError

    where = urlsplit(url)
    message = (
        f"{node.nodeid} sent a model request to {where.scheme}://{where.hostname}, a real "
        f"provider; use keel.testing models or a loopback server, or mark the test "
        f"@pytest.mark.{_LIVE} to allow it"
    )
    node.stash.setdefault(_blocked_key, []).append(message)
    return ConfigurationError(message)


class _LiveGuard:
    """Refuses model requests to non-loopback URLs while a test not marked ``keel_live``
    runs (its setup, call and teardown). Keel's HTTP models are wrapped once per session,
    not per test, so a test that never calls a model pays one attribute read."""

    def __init__(self) -> None:
        from keel.models._http import HTTPModel

        self.item: pytest.Item | None = None
        self._post = HTTPModel._post_json
        self._stream = HTTPModel._open_stream

    def install(self) -> None:
        guard, post, stream = self, self._post, self._stream
        from keel.models._http import HTTPModel

        async def guarded_post(model: HTTPModel, url: str, payload: Any, timeout_s: float) -> str:
            guard.check(url)
            return await post(model, url, payload, timeout_s)

        @asynccontextmanager
        async def guarded_stream(
            model: HTTPModel, url: str, payload: Any, timeout_s: float
        ) -> AsyncIterator[Any]:
            guard.check(url)
            async with stream(model, url, payload, timeout_s) as response:
                yield response

        HTTPModel._post_json = guarded_post  # type: ignore[method-assign, assignment]
        HTTPModel._open_stream = guarded_stream  # type: ignore[method-assign, assignment]

    def uninstall(self) -> None:
        from keel.models._http import HTTPModel

        HTTPModel._post_json = self._post  # type: ignore[method-assign]
        HTTPModel._open_stream = self._stream  # type: ignore[method-assign]

    def check(self, url: str) -> None:
        if self.item is not None and not _is_loopback(url):
            raise _refusal(url, self.item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        self.item = None if item.get_closest_marker(_LIVE) is not None else item
        try:
            return (yield)
        finally:
            self.item = None


_GUARD_NAME = "keel-live-guard"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Wrap Keel's HTTP models for the session."""
    guard = _LiveGuard()
    guard.install()
    session.config.pluginmanager.register(guard, _GUARD_NAME)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Give Keel's HTTP models back their own methods."""
    guard = session.config.pluginmanager.get_plugin(_GUARD_NAME)
    if isinstance(guard, _LiveGuard):
        guard.uninstall()
        session.config.pluginmanager.unregister(guard)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a test that tried to reach a real provider, even if the run swallowed the
    refusal (a run that fails is a result, not an exception)."""
    outcome = yield
    blocked = item.stash.get(_blocked_key, [])
    if blocked:
        pytest.fail(blocked[0], pytrace=False)
    return outcome
