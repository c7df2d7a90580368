"""The seams between Keel's core and the outside world.

Each port is a small protocol; optional abilities either work in a simpler way when missing
(``Model.stream`` falls back to one ``request``) or say clearly that they are missing.
Adapters (providers, stores) implement these; the runtime depends only on them.

The store is four small protocols, one per concern, and :class:`Store` is all four:

- :class:`Journal`: create a run, append its events, load them (from any sequence number);
- :class:`Leases`: who advances a run (leases with fencing tokens) and claiming runs from the
  queue;
- :class:`Threads`: a conversation's messages, and which run holds the thread;
- :class:`Admin`: listing, deletion and retention, closing.

A store may also offer :class:`Watchable` (``watch``), so that followers of a run and idle
workers wake when something changes instead of polling.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager
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

__all__ = [
    "Admin",
    "Change",
    "Clock",
    "Feedback",
    "FeedbackQuery",
    "Feedbacks",
    "Journal",
    "Lease",
    "Leases",
    "Model",
    "RunQuery",
    "RunRecord",
    "Store",
    "SystemClock",
    "ThreadHistory",
    "Threads",
    "Watchable",
]


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
    """The summary row of a run, kept beside its journal for listing, filtering and the
    queue.

    ``holds_thread`` says whether the run keeps its thread busy (it has not ended, is not a
    fork, is not being cancelled): later runs of the thread wait behind it. ``tenant`` and
    ``user`` say who the run is for; ``tools`` names the tools it called (each once, sorted).
    ``lease_owner`` and ``lease_expires_at`` are what the store knows of the run's lease when
    it is read (ignored on writes).
    """

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
    holds_thread: bool = False
    tenant: str | None = None
    user: str | None = None
    tools: tuple[str, ...] = ()
    lease_owner: str | None = None
    lease_expires_at: float | None = None

    @property
    def duration_s(self) -> float:
        """Seconds from the run's creation to its latest change."""
        return self.updated_at - self.created_at

    @property
    def cursor(self) -> str:
        """Where a newest-first listing goes on after this run: ``list_runs(before=...)``."""
        return f"{self.created_at!r}/{self.run_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunQuery:
    """Which runs a listing keeps: every field that is set must match (``None``: any).

    Attributes:
        agent: The agent's name.
        status: One status, or several (any of them).
        thread: The thread's id.
        tenant: Who the run is for (``Runtime.run(tenant=...)``).
        user: The user it is for.
        since: Created at or after (seconds since the epoch).
        until: Created before (seconds since the epoch).
        tool: Called this tool (by name).
        error: Its reason code (``RunRecord.reason_code``), e.g. ``max_steps``.
        min_cost: Cost at least this many US dollars (a run of unknown cost never matches).
        max_cost: Cost at most this many US dollars.
        min_duration: At least this many seconds from creation to its latest change.
        max_duration: At most this many seconds.
    """

    agent: str | None = None
    status: RunStatus | tuple[RunStatus, ...] | None = None
    thread: str | None = None
    tenant: str | None = None
    user: str | None = None
    since: float | None = None
    until: float | None = None
    tool: str | None = None
    error: str | None = None
    min_cost: float | None = None
    max_cost: float | None = None
    min_duration: float | None = None
    max_duration: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback:
    """What a person (or a program) said about a run, or one step of it.

    ``score`` is -1 or 1 for thumbs (0: neutral), or 1 to 5 for a rating; ``label`` a free tag
    (``"wrong-tool"``, ``"golden"``); ``comment`` free text (encrypted at rest when the store
    has a keyring); ``by`` who gave it; ``at`` when (seconds since the epoch).
    """

    id: str
    run_id: str
    step: int | None = None
    score: float | None = None
    label: str | None = None
    comment: str | None = None
    by: str | None = None
    at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackQuery:
    """Which feedback a listing keeps: every field that is set must match (``None``: any).

    ``since``/``until`` bound when the feedback was given; ``agent`` is the run's agent.
    """

    run_id: str | None = None
    label: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    since: float | None = None
    until: float | None = None
    agent: str | None = None


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
class Journal(Protocol):
    """Runs and their events: created once, appended to, read from any point.

    ``append`` is the only write on the hot path: one call per step, atomic, durable before it
    returns. ``expected_seq`` is the number of events the writer believes the journal holds; if
    another writer got there first the store raises :class:`keel.errors.JournalConflictError`
    and writes nothing. An append under a lease whose token is no longer current raises
    :class:`keel.errors.LeaseLostError`; one without a lease to a run whose lease is held and
    unexpired raises :class:`keel.errors.RunLeasedError`.
    """

    async def start_run(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        record: RunRecord,
        owner: str | None,
        ttl_s: float,
        exclusive: bool = False,
        idempotency_key: str | None = None,
    ) -> Lease | None:
        """Create a run from its first events; return its lease, or ``None`` without
        ``owner``.

        With an ``owner`` the run is leased to it for ``ttl_s`` seconds (fencing token 1);
        without one it is created unleased (a queued run, which any driver may claim). With
        ``exclusive``, refuse with :class:`keel.errors.ThreadBusyError` (writing nothing) if
        another run of ``record.thread_id`` holds the thread (``holds_thread``), and with
        :class:`keel.errors.ThreadChangedError` if the first event's ``history_seq`` is set and
        is no longer the thread's last message. The checks and the insert are one atomic step.
        A ``run_id`` that exists raises ``JournalConflictError``.

        With an ``idempotency_key``, the key is kept with the run, unique within
        ``record.tenant`` (``None`` is a tenant of its own), in the same atomic step: if a run
        that still exists was created with it, nothing is written and
        :class:`keel.errors.RunExistsError` names that run (checked before the thread). The key
        goes when its run is deleted.
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
        release: bool = False,
    ) -> int:
        """Append events (and the run's new thread messages, if it completed); return the last
        sequence number. ``expected_seq == 0`` creates the run without a lease (imports).

        With ``release`` (and a ``lease``), the lease is given up in the same atomic step, as
        ``release_lease`` would: the holder's last append, one write instead of two."""
        ...

    async def load(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        """The run's events numbered above ``after_seq``, in order (all by default). Raises
        ``RunNotFoundError`` if there is no such run."""
        ...

    async def get_run(self, run_id: str) -> RunRecord:
        """The summary of a run. Raises ``RunNotFoundError`` if there is no such run."""
        ...


@runtime_checkable
class Leases(Protocol):
    """Who advances a run: one lease holder at a time, fenced by tokens; and the queue.

    Lease times are the store's own clock, so processes on several hosts agree on them.
    """

    async def acquire_lease(
        self, run_id: str, *, owner: str, ttl_s: float, force: bool = False
    ) -> Lease:
        """Take the run's lease: free, expired, or already ``owner``'s (then it is renewed).

        A new holder gets ``token`` one higher than the last; so does the same owner when its
        lease had expired, and every ``force`` (used to cancel a run: whoever held it, the
        earlier lease object is fenced out). Raises ``RunLeasedError`` if another owner holds
        an unexpired lease and ``force`` is false, and ``RunNotFoundError`` for an unknown run.
        Owners are per driver, never shared by two drivers of one run.
        """
        ...

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease:
        """Extend a lease; ``LeaseLostError`` if its token is no longer the run's current one."""
        ...

    async def release_lease(self, lease: Lease) -> None:
        """Give a lease up; does nothing if it is no longer current."""
        ...

    async def claim_runs(
        self,
        *,
        owner: str,
        ttl_s: float,
        limit: int,
        agents: Collection[str] | None = None,
        run_ids: Collection[str] | None = None,
    ) -> list[Lease]:
        """Lease up to ``limit`` runs that a driver should advance now, oldest first:

        - runs with status ``running`` whose lease is missing or expired (their process died);
        - runs with status ``queued`` and no live lease, that are first in their thread: no
          run of the thread created before it (in the store's insertion order, not by
          anyone's clock) holds it.

        ``agents`` keeps to runs of those agents, ``run_ids`` to those runs. Each claim is
        atomic: two claimers never get the same run (PostgreSQL: ``FOR UPDATE SKIP LOCKED``;
        SQLite: one write transaction).
        """
        ...


@runtime_checkable
class Threads(Protocol):
    """A thread's conversation, and the run that holds it."""

    async def thread_history(self, thread_id: str, *, upto_seq: int | None = None) -> ThreadHistory:
        """The thread's messages with sequence number ``<= upto_seq`` (all when ``None``), and
        the thread's last sequence number. An unknown thread has no messages and last seq 0."""
        ...

    async def active_run(self, thread_id: str) -> RunRecord | None:
        """The run that holds the thread now: the first created (in insertion order) of its runs
        with ``holds_thread``."""
        ...


@runtime_checkable
class Admin(Protocol):
    """Listing, deletion, retention and closing."""

    async def list_runs(
        self,
        query: RunQuery | None = None,
        *,
        thread_id: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        limit: int | None = 50,
        before: str | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first (``created_at``, then ``run_id``), that match ``query`` and
        the thread and status given (one or several); ``limit=None`` lists them all.

        ``before`` is the ``cursor`` of the last run of the previous page: the page goes on
        after it, whatever was created meanwhile."""
        ...

    async def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete runs with everything derived from them (events, leases, their thread
        messages); return how many existed. A run with a live lease raises ``RunLeasedError``
        and nothing is deleted."""
        ...

    async def delete_runs_before(self, before: float) -> int:
        """Delete runs created before ``before`` (seconds since the epoch) that have ended and
        have no live lease; return how many."""
        ...

    async def delete_thread(self, thread_id: str) -> int:
        """Delete a thread's messages and all its runs (``RunLeasedError`` if one has a live
        lease); return how many runs. The thread's message counter is kept, so that message
        numbers are never reused."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class Feedbacks(Protocol):
    """Feedback on runs, kept with them (and deleted with them). The SQL and memory stores
    have it; a store without it cannot record feedback."""

    async def add_feedback(self, feedback: Feedback) -> None:
        """Record ``feedback``; ``RunNotFoundError`` if its run does not exist."""
        ...

    async def list_feedback(
        self, query: FeedbackQuery | None = None, *, limit: int | None = 50
    ) -> list[Feedback]:
        """Feedback matching ``query``, newest first (``limit=None``: all of it)."""
        ...


@runtime_checkable
class Store(Journal, Leases, Threads, Admin, Protocol):
    """Durable home of run journals, leases, the queue, thread histories: all four parts."""


class Change(Protocol):
    """A registration for changes, made before reading so that no change is missed."""

    async def wait(self, timeout_s: float) -> bool:
        """Wait until something changed since the registration (or the last ``wait``), or
        ``timeout_s`` passed; return whether something changed."""
        ...


@runtime_checkable
class Watchable(Protocol):
    """A store that says when a run, or the queue, may have changed."""

    def watch(self, run_id: str | None) -> AbstractAsyncContextManager[Change]:
        """Register for changes to ``run_id`` (its events or summary), or with ``None`` to
        the queue (a run became claimable). Wake-ups may be spurious; none are missed."""
        ...


class Clock(Protocol):
    """Wall time (for timestamps), a monotonic timer (for durations and deadlines), and a way
    to wait. Everything in Keel that waits or times out goes through the runtime's clock, so a
    test clock (:class:`keel.testing.FakeClock`) makes every timing path instant."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (``asyncio.sleep``)."""
        await asyncio.sleep(seconds)
