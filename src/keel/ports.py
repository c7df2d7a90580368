"""The seams between Keel's core and the outside world.

Each port has one required ability; optional ones have a default that either works in a
simpler way (``Model.stream`` falls back to one ``request``) or says clearly it is missing.
Adapters (providers, stores) implement these; the runtime depends only on them.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from keel.core.events import Event, RunStatus
from keel.core.messages import (
    Message,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    TextDelta,
)

__all__ = ["Clock", "Model", "RunRecord", "Store", "SystemClock"]


class Model(abc.ABC):
    """A language model: turns a :class:`ModelRequest` into a :class:`ModelResponse`.

    Implementations raise :class:`keel.errors.ModelError` subclasses for provider failures, so
    that resilience wrappers can decide on retries without parsing strings.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The model's full name, e.g. ``openai:gpt-4o-mini``; used for pricing and display."""

    @abc.abstractmethod
    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one request and return the complete response."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream a response as deltas, ending with :class:`StreamComplete`.

        The default makes one ``request`` and yields its text as a single delta; providers
        with native streaming override this.
        """
        response = await self.request(request)
        if response.message.content:
            yield TextDelta(text=response.message.content)
        yield StreamComplete(response=response)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release network connections or other resources held by the model."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """The summary row of a run, kept beside its journal for listing and filtering."""

    run_id: str
    thread_id: str
    agent: str
    model: str
    status: RunStatus
    created_at: float
    updated_at: float
    input: str = ""
    steps: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    output_preview: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    last_seq: int = 0


@runtime_checkable
class Store(Protocol):
    """Durable home of run journals, run summaries and thread histories.

    ``append`` is the only write on the hot path: one call per step, atomic, durable before it
    returns. ``expected_seq`` is the number of events the writer believes the journal holds; if
    another writer got there first the store raises :class:`keel.errors.JournalConflictError`
    and writes nothing.
    """

    async def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int,
        record: RunRecord,
        thread_messages: Sequence[Message] = (),
    ) -> int:
        """Append events (and the run's new thread messages, if it finished); return last seq."""
        ...

    async def load(self, run_id: str) -> list[Event]:
        """All events of a run, in order. Raises ``RunNotFoundError`` if there is no such run."""
        ...

    async def get_run(self, run_id: str) -> RunRecord:
        """The summary of a run. Raises ``RunNotFoundError`` if there is no such run."""
        ...

    async def list_runs(
        self,
        *,
        thread_id: str | None = None,
        status: RunStatus | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered."""
        ...

    async def thread_messages(self, thread_id: str) -> list[Message]:
        """The conversation of a thread: the messages of its completed runs, in order."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


class Clock(Protocol):
    """Wall time (for timestamps) and a monotonic timer (for durations and deadlines)."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin."""
        return time.monotonic()
