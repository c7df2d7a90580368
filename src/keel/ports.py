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

from keel._core.events import Event, RunStatus
from keel._core.messages import (
    Message,
    ModelRequest,
    ModelResponse,
    StreamComplete,
    StreamEvent,
    TextDelta,
)

__all__ = ["Clock", "Lease", "Model", "RunRecord", "Store", "SystemClock", "ThreadHistory"]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """The right to advance one run until ``expires_at`` (seconds since the epoch, by the
    store's clock).

    ``token`` is a fencing token: it grows every time the run's lease changes hands, and every
    append made under a lease carries it, so a holder that lost its lease (it stalled past
    ``expires_at`` and another process took over) can no longer write.
    """

    run_id: str
    owner: str
    token: int
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadHistory:
    """A thread's messages (in order) and the sequence number of its last message (0: none).

    Runs record the sequence number they started after, so that deleting old runs (retention)
    never changes which messages a later run's history holds, beyond the deleted ones.
    """

    messages: list[Message]
    last_seq: int


@runtime_checkable
class Store(Protocol):
    """Durable home of run journals, run summaries, leases and thread histories.

    ``append`` is the only write on the hot path: one call per step, atomic, durable before it
    returns. ``expected_seq`` is the number of events the writer believes the journal holds; if
    another writer got there first the store raises :class:`keel.errors.JournalConflictError`
    and writes nothing.

    **Leases.** One process advances a run at a time. It holds the run's :class:`Lease`, renews
    it before ``expires_at``, and passes it to every ``append``. An append under a lease whose
    token is no longer current raises :class:`keel.errors.LeaseLostError`; an append without a
    lease to a run whose lease is held and unexpired raises :class:`keel.errors.RunLeasedError`.
    Lease times are the store's own clock, so processes on several hosts agree on them.
    """

    async def start_run(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        record: RunRecord,
        owner: str,
        ttl_s: float,
        exclusive: bool = False,
    ) -> Lease:
        """Create a run from its first events, leased to ``owner`` for ``ttl_s`` seconds.

        With ``exclusive``, refuse with :class:`keel.errors.ThreadBusyError` (writing nothing)
        if another run of ``record.thread_id`` has status ``running``, and with
        :class:`keel.errors.ThreadChangedError` if the first event's ``history_seq`` is set and
        is no longer the thread's last message (a run of the thread ended after this one read
        its history). The checks and the insert are one atomic step, so two runs racing for an
        idle thread cannot both start, nor start with a stale history. A ``run_id`` that exists
        raises ``JournalConflictError``.
        """
        ...

    async def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int,
        record: RunRecord,
        thread_messages: Sequence[Message] = (),
        lease: Lease | None = None,
    ) -> int:
        """Append events (and the run's new thread messages, if it finished); return last seq.

        ``expected_seq == 0`` creates the run without a lease (tests and imports use this).
        """
        ...

    async def acquire_lease(
        self, run_id: str, *, owner: str, ttl_s: float, force: bool = False
    ) -> Lease:
        """Take the run's lease: free, expired, or already ``owner``'s (then it is renewed).

        A new holder gets ``token`` one higher than the last; so does the same owner when its
        lease had expired (now >= ``expires_at``), and every ``force`` (used to interrupt a
        run: whoever held it, the earlier lease object is fenced out). Raises
        ``RunLeasedError`` if another owner holds an unexpired lease and ``force`` is false,
        and ``RunNotFoundError`` for an unknown run. Appending under a lease of a run that was
        deleted raises ``LeaseLostError``.
        """
        ...

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease:
        """Extend a lease; ``LeaseLostError`` if its token is no longer the run's current one."""
        ...

    async def release_lease(self, lease: Lease) -> None:
        """Give a lease up; does nothing if it is no longer current."""
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

    async def recoverable_runs(self, *, limit: int = 100) -> list[RunRecord]:
        """Runs with status ``running`` whose lease is missing or expired: their process died.
        Oldest first."""
        ...

    async def active_run(self, thread_id: str) -> RunRecord | None:
        """The newest run of the thread with status ``running``, if any."""
        ...

    async def thread_history(self, thread_id: str, *, upto_seq: int | None = None) -> ThreadHistory:
        """The thread's messages with sequence number ``<= upto_seq`` (all when ``None``), and
        the thread's last sequence number. An unknown thread has no messages and last seq 0."""
        ...

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete runs with everything derived from them (events, leases, their thread
        messages); return how many existed. A run with a live lease raises ``RunLeasedError``
        and nothing is deleted."""
        ...

    async def delete_runs_before(self, before: float) -> int:
        """Delete runs created before ``before`` (seconds since the epoch), except runs with
        status ``running`` and runs with a live lease; return how many."""
        ...

    async def delete_thread(self, thread_id: str) -> int:
        """Delete a thread's messages and all its runs (``RunLeasedError`` if one has a live
        lease); return how many runs. The thread's message counter is kept, so that message
        numbers are never reused."""
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
