"""``Runtime``: runs agents, keeps every run's journal, continues runs after crashes and pauses.

::

    runtime = Runtime(agents=[support])   # ./keel.db (SQLite), models by name, system clock
    result = await runtime.run(support, "Where is order 123?", thread="customer-42")

One ``Runtime`` holds one store, a model registry, the price table, its checks and the agents
it knows by name. It has no global state: a test can create five in one process. Close it
(``await runtime.close()`` or ``async with``) to release the store and connections.

The runtime is a facade over focused parts that share one :class:`keel._runtime.kernel.Kernel`:
running (:mod:`~keel._runtime.running`), cancelling and recovery
(:mod:`~keel._runtime.stopping`), people's decisions (:mod:`~keel._runtime.approvals`), time
travel (:mod:`~keel._runtime.timetravel`), retention (:mod:`~keel._runtime.retention`), model
composition (:mod:`~keel._runtime.composition`), following runs (:mod:`~keel._runtime.stream`)
and workers (:mod:`~keel._runtime.worker`). It is also where adapters are wired: the store a
location names, and the model registry.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from typing_extensions import TypeVar

from keel._agent import Agent, ModelSpec
from keel._checks import Check, CheckFunction, as_check
from keel._core.limits import Limits
from keel._core.pricing import Price, PriceTable
from keel._ids import new_run_id
from keel._runtime.approvals import Approvals
from keel._runtime.composition import ModelComposer
from keel._runtime.governance import Governance, store_location
from keel._runtime.inputs import check_agent, check_idempotency_key, check_principal
from keel._runtime.kernel import Kernel
from keel._runtime.observers import Observer
from keel._runtime.result import RunResult
from keel._runtime.retention import Retention
from keel._runtime.running import UNSET, IfBusy, Runs
from keel._runtime.runtime_decisions import DecisionMethods
from keel._runtime.runtime_delegation import DelegationMethods
from keel._runtime.runtime_feedback import FeedbackMethods
from keel._runtime.runtime_governance import GovernanceMethods
from keel._runtime.runtime_history import HistoryMethods
from keel._runtime.scrubbing import Scrubber
from keel._runtime.stopping import Recovery, cancel, recover
from keel._runtime.stream import RunDelta, RunEvent, follow
from keel._runtime.timetravel import TimeTravel
from keel._runtime.waking import DelegationLinks
from keel._runtime.worker import Worker
from keel._settings import KeelSettings
from keel.audit import AuditLog
from keel.budgets import Budget, BudgetLedger
from keel.errors import ConfigurationError
from keel.models import ModelRegistry
from keel.observability import Tracing
from keel.ports import Clock, Model, Store, SystemClock
from keel.resilience import (
    BreakerBoard,
    BreakerPolicy,
    BreakerStatus,
    MemoryBreakerBoard,
    RateLimit,
    RateLimiter,
    RetryPolicy,
)
from keel.resilience._cache import ResponseCache
from keel.stores import Keyring, open_store

__all__ = ["Runtime"]

# Any when it cannot be inferred: resuming a run by id, without its agent, gives RunResult[Any].
OutputT = TypeVar("OutputT", default=Any)

_DEFAULT_RETRY = RetryPolicy()
_DEFAULT_BREAKER = BreakerPolicy()


class Runtime(
    DecisionMethods, HistoryMethods, FeedbackMethods, GovernanceMethods, DelegationMethods
):
    """Runs agents and keeps their journals.

    Args:
        store: A :class:`keel.ports.Store` (borrowed: the caller closes it), or where to keep
            runs (a path, ``sqlite:///path``, ``postgresql://...`` or ``memory``; opened and
            closed by the runtime). Default: ``settings.db`` (``KEEL_DB``, else ``./keel.db``),
            with ``settings.db_schema`` and ``settings.db_pool_size`` for PostgreSQL.
        settings: Configuration; default: read once from the environment.
        models: The registry that resolves model names; default: built from ``settings``.
        prices: Extra or overriding prices (``{"acme:*": Price(...)}``) or a whole table.
        clock: Wall time, monotonic time and sleeping; every wait and timeout of the runtime
            goes through it (retries, tool retries, queue waits, wall-time limits), so a
            :class:`keel.testing.FakeClock` makes them instant in tests.
        agents: Agents this runtime knows by name: their interrupted and queued runs are
            recovered when the runtime is entered (``async with``), decisions on their paused
            runs continue them, and workers drive them. More with :meth:`register`.
        checks: Policies and guardrails consulted for every agent's runs, before the agent's
            own (:func:`keel.check`).
        recover_on_start: Recover runs of ``agents`` on ``async with`` entry.
        lease_ttl_s: How long a run's lease lasts without renewal; a process that stalls
            longer loses the run to another one.
        retry: How models named by string are retried (backoff with jitter, ``Retry-After``,
            deadlines); ``None`` turns retries off. Model objects are used as they are.
        breaker: The circuit breakers' policy for models named by string; ``None`` turns them
            off. Their state is per process, or shared through Redis when ``KEEL_REDIS_URL`` is
            set (or ``breakers`` is given).
        breakers: Where breaker state lives, instead of what ``breaker`` and the settings say.
        cache: A response cache for models named by string (off by default); only requests
            with deterministic settings (temperature 0 or a seed) are cached.
        cache_ttl_s: How long a cached answer is reused.
        budgets: Cost budgets shared by every run and process (:class:`keel.budgets.Budget`:
            per agent, user, tenant or global, over an hour, day, month or in total). Any
            sequence, even empty, turns budget checks on: before each model call its worst
            case is reserved in the ledger, which lives beside the journal in the store's
            database, and limits stored there (``keel budgets set``, :meth:`set_budget`) apply
            too. ``None`` (the default): only stored limits, when ``settings.budgets``
            (``KEEL_BUDGETS=1``), else no budgets. ``Limits(max_cost_usd=...)`` caps one run
            either way.
        budget_ledger: Where budgets are kept, instead of the store's database.
        rate_limits: Token buckets on model calls (:class:`keel.resilience.RateLimit`, per
            model, agent or tenant): in this process, or shared through Redis when
            ``KEEL_REDIS_URL`` is set (or ``rate_limiter`` is given).
        rate_limiter: Where the buckets live, instead of what the settings say.
        audit: ``True`` keeps a hash-chained audit log (:mod:`keel.audit`) of check decisions,
            approvals, spending refusals, budget changes and deletions, beside the journal in
            the store's database; or pass a log. Default (``None``): ``settings.audit``
            (``KEEL_AUDIT=1``), else off.
        secrets: Values that must never be recorded, besides the secrets in ``settings`` (API
            keys, encryption keys, passwords in URLs): wherever one appears in a run (a model's
            tool call, a tool's result, a provider's error, the input), the run's state, journal,
            results and audit log get ``[REDACTED]`` instead (values of 8 characters or more).
        redact: Rewrites the text every run records before the run applies it, so it is
            neither stored nor sent on: the input, the model's text, tool results, errors and
            reasons (not tool call arguments, which tools need). E.g.
            :class:`keel.guardrails.PIIRedactor` keeps personal data out of the journal.
        observers: What watches every run's events as this process journals them (traces,
            metrics, logs: :mod:`keel.observability`). An observer never blocks or breaks a
            run. Without a :class:`keel.observability.Tracing` among them, runs are traced
            when the ``OTEL_*`` variables configure an OTLP endpoint
            (:meth:`~keel.observability.Tracing.from_environ`).
    """

    def __init__(
        self,
        *,
        store: Store | str | os.PathLike[str] | None = None,
        settings: KeelSettings | None = None,
        models: ModelRegistry | None = None,
        prices: PriceTable | Mapping[str, Price] | None = None,
        clock: Clock | None = None,
        agents: Iterable[Agent[Any]] = (),
        checks: Sequence[Check | CheckFunction] = (),
        recover_on_start: bool = True,
        lease_ttl_s: float = 30.0,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        breaker: BreakerPolicy | None = _DEFAULT_BREAKER,
        breakers: BreakerBoard | None = None,
        cache: ResponseCache | None = None,
        cache_ttl_s: float = 3600.0,
        budgets: Sequence[Budget] | None = None,
        budget_ledger: BudgetLedger | None = None,
        rate_limits: Sequence[RateLimit] = (),
        rate_limiter: RateLimiter | None = None,
        audit: AuditLog | bool | None = None,
        secrets: Sequence[str] = (),
        redact: Callable[[str], str] | None = None,
        observers: Sequence[Observer] = (),
        new_id: Callable[[float], str] = new_run_id,
    ) -> None:
        if (
            isinstance(lease_ttl_s, bool)
            or not isinstance(lease_ttl_s, int | float)
            or not (lease_ttl_s > 0)
        ):
            raise ConfigurationError(f"lease_ttl_s must be a positive number, got {lease_ttl_s!r}")
        self.settings = settings or KeelSettings.from_environ()
        self.clock: Clock = clock or SystemClock()
        if store is None:
            store = self.settings.db
        # A store object passed in is borrowed (its owner closes it); one opened here is ours.
        self._owns_store = isinstance(store, str | os.PathLike)
        opened_from = os.fspath(store) if isinstance(store, str | os.PathLike) else None
        self.store: Store = (
            open_store(
                store,
                clock=clock,
                schema=self.settings.db_schema,
                pool_size=self.settings.db_pool_size,
                keyring=Keyring.from_settings(self.settings),
            )
            if isinstance(store, str | os.PathLike)
            else store
        )
        self.models = models or ModelRegistry(self.settings)
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self._owns_breakers = breakers is None and breaker is not None
        self.breakers = breakers if breakers is not None else self._board(breaker)
        self.composer = ModelComposer(
            settings=self.settings,
            registry=self.models,
            clock=self.clock,
            retry=retry,
            breakers=self.breakers,
            cache=cache,
            cache_ttl_s=cache_ttl_s,
        )
        self._kernel = Kernel(
            store=self.store,
            settings=self.settings,
            composer=self.composer,
            prices=self.prices,
            clock=self.clock,
            lease_ttl_s=float(lease_ttl_s),
            checks=tuple(as_check(c) for c in checks),
            new_id=new_id,
        )
        self._kernel.scrubber = Scrubber(
            [*self.settings.secret_values(), *secrets], redactor=redact
        )
        for observer in observers:
            self._kernel.observers.add(observer)
        if self.settings.redis_url:
            # Streamed text crosses processes through Redis pub/sub (a replica serving a
            # stream may not be the process that drives its run).
            from keel._runtime.relay_redis import RedisDeltaRelay

            self._kernel.followers.relay = RedisDeltaRelay(
                self.settings.redis_url, origin=self._kernel.owner
            )
        # Traces by default where the OTEL_* variables configure an OTLP endpoint.
        self._tracing = None
        if not any(isinstance(observer, Tracing) for observer in observers):
            self._tracing = Tracing.from_environ()
            if self._tracing is not None:
                self._kernel.observers.add(self._tracing)
        self._runs = Runs(self._kernel)
        # A parent paused for a child is queued again when the child ends; a cancelled run
        # cancels its children.
        self._kernel.journal_hooks.append(DelegationLinks(self._runs))
        self._approvals = Approvals(self._kernel, self._runs)
        self._travel = TimeTravel(self._kernel, self._runs)
        self._governance = Governance(
            kernel=self._kernel,
            settings=self.settings,
            location=store_location(self.store, opened_from),
            clock=self.clock,
            prices=self.prices,
            budgets=[] if budgets is None and self.settings.budgets else budgets,
            budget_ledger=budget_ledger,
            rate_limits=rate_limits,
            rate_limiter=rate_limiter,
            audit=self.settings.audit if audit is None else audit,
        )
        self._retention = Retention(self._kernel, self._governance.auditor)
        self._recover_on_start = recover_on_start
        for agent in agents:
            self.register(agent)

    def __repr__(self) -> str:
        return f"Runtime(store={self.store!r}, agents={sorted(self._kernel.agents)})"

    async def __aenter__(self) -> Runtime:
        if self._recover_on_start and self._kernel.agents:
            await self.recover()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the models this runtime resolved by name, and the store (and the budget
        ledger, rate limiter and audit log) if it opened them."""
        await self.composer.aclose()
        await self._governance.aclose()
        if self._kernel.followers.relay is not None:
            await self._kernel.followers.relay.aclose()
        if self._owns_breakers and self.breakers is not None:
            await self.breakers.close()
        if self._owns_store:
            await self.store.close()
        if self._tracing is not None:  # exports what is left, in the background
            await asyncio.to_thread(self._tracing.shutdown)

    @property
    def owner(self) -> str:
        """This runtime's id (host, process, random), the prefix of its lease owners."""
        return self._kernel.owner

    @property
    def lease_ttl_s(self) -> float:
        """How long a run's lease lasts without renewal."""
        return self._kernel.lease_ttl_s

    @property
    def agents(self) -> dict[str, Agent[Any]]:
        """The agents this runtime knows, by name."""
        return dict(self._kernel.agents)

    def register(self, agent: Agent[Any], *, ref: str | None = None) -> None:
        """Know ``agent`` by its name, for recovery, workers and decisions. ``ref`` (where it
        is defined) is journaled with its runs for information; no process loads code from
        it."""
        check_agent(agent)
        self._kernel.register(agent, ref=ref)

    # -- models -------------------------------------------------------------------------------

    def model(self, name: str) -> Model:
        """The model ``name`` resolves to, as runs of this runtime use it: retried, behind its
        circuit breaker, cached if a cache is configured. One object per name; use it to build
        a :class:`keel.resilience.Router` or a custom chain."""
        return self.composer.named(name)

    def model_for(self, agent: Agent[Any], override: ModelSpec | None = None) -> Model:
        """The model object a new run of ``agent`` uses (a fallback for a list)."""
        return self.composer.for_agent(agent, override).model

    def chain_for(self, agent: Agent[Any], override: ModelSpec | None = None) -> list[Model]:
        """The models a new run of ``agent`` may use, in order: one, or a fallback chain."""
        return self.composer.for_agent(agent, override).models

    def _board(self, policy: BreakerPolicy | None) -> BreakerBoard | None:
        if policy is None:
            return None
        if self.settings.redis_url:
            from keel.resilience import RedisBreakerBoard

            return RedisBreakerBoard(self.settings.redis_url, policy)
        return MemoryBreakerBoard(policy, clock=self.clock)

    async def breaker_statuses(self) -> list[BreakerStatus]:
        """The state of every circuit breaker this runtime (or, through Redis, any process)
        has used: closed, open or half-open, with recent failures."""
        return [] if self.breakers is None else await self.breakers.statuses()

    # -- running ------------------------------------------------------------------------------

    async def run(
        self,
        agent: Agent[OutputT],
        input: str,
        *,
        thread: str | None = None,
        deps: Any = UNSET,
        limits: Limits | None = None,
        model: ModelSpec | None = None,
        if_busy: IfBusy = "queue",
        queue_timeout_s: float = 300.0,
        tenant: str | None = None,
        user: str | None = None,
        roles: Sequence[str] = (),
        idempotency_key: str | None = None,
    ) -> RunResult[OutputT]:
        """Run ``agent`` on ``input`` until it completes, fails or stops (a limit, a person).

        Args:
            agent: The agent to run.
            input: The user's message.
            thread: Continue this conversation: earlier completed runs of the thread are the
                model's history. Default: a new thread named after the run.
            deps: Dependencies for tools (``ctx.deps``); default: ``agent.deps``.
            limits: Limits for this run; default: ``agent.limits``.
            model: Use this model instead of the agent's (it is journaled, and resumes use
                it too).
            if_busy: When an earlier run of ``thread`` has not ended: ``"queue"`` makes this
                run durable in the queue behind it and waits for its turn (up to
                ``queue_timeout_s``; if the earlier run waits for a person or a resume, it
                does not wait: it raises :class:`ThreadBusyError` at once, and this message is
                not run); ``"reject"`` raises :class:`ThreadBusyError`; ``"interrupt"``
                cancels the earlier run and starts at once.
            queue_timeout_s: How long ``"queue"`` waits before withdrawing this run and
                raising ``ThreadBusyError``.
            tenant: The tenant the run is for; journaled, and read by checks (as
                ``CheckRequest.tenant``), budgets and the audit log.
            user: The user the run is for (``CheckRequest.user``).
            roles: The user's roles (``CheckRequest.roles``), e.g. for
                :class:`keel.policies.ToolPermissions`.
            idempotency_key: The caller's id for this request (see :meth:`submit`): a call
                repeated with it, in any process, does not start a second run but joins the
                first one's (driving it here if its caller died, else waiting for it).

        A run that ends badly (a limit, a failing model, invalid output) is not raised: the
        result's ``status`` and ``reason`` say what happened, and reading ``result.output`` of
        a run that did not complete raises :class:`keel.errors.RunNotCompletedError`. Only
        developer mistakes (:class:`keel.errors.UsageError`), a busy thread and store failures
        are raised.
        """
        return await self._runs.run(
            agent,
            input,
            thread=thread,
            deps=deps,
            limits=limits,
            model=model,
            if_busy=if_busy,
            queue_timeout_s=queue_timeout_s,
            principal=check_principal(tenant, user, roles),
            idempotency_key=check_idempotency_key(idempotency_key),
        )

    def run_sync(
        self,
        agent: Agent[OutputT],
        input: str,
        *,
        thread: str | None = None,
        deps: Any = UNSET,
        limits: Limits | None = None,
        model: ModelSpec | None = None,
        if_busy: IfBusy = "queue",
        queue_timeout_s: float = 300.0,
        tenant: str | None = None,
        user: str | None = None,
        roles: Sequence[str] = (),
        idempotency_key: str | None = None,
    ) -> RunResult[OutputT]:
        """:meth:`run` for code without an event loop (scripts, notebooks without one)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop is running: exactly what run_sync is for
        else:
            from keel.errors import UsageError

            raise UsageError(
                "run_sync() was called from a running event loop; use 'await runtime.run(...)'"
            )
        check_agent(agent)
        chain = self.composer.for_agent(agent, model)

        async def run_then_release() -> RunResult[OutputT]:
            try:
                return await self.run(
                    agent,
                    input,
                    thread=thread,
                    deps=deps,
                    limits=limits,
                    model=model,
                    if_busy=if_busy,
                    queue_timeout_s=queue_timeout_s,
                    tenant=tenant,
                    user=user,
                    roles=roles,
                    idempotency_key=idempotency_key,
                )
            finally:
                # This loop ends when run_sync returns: connections opened on it must close
                # now. The models stay usable and reconnect on the next loop.
                await chain.aclose()

        return asyncio.run(run_then_release())

    async def submit(
        self,
        agent: Agent[Any],
        input: str,
        *,
        thread: str | None = None,
        limits: Limits | None = None,
        model: ModelSpec | None = None,
        tenant: str | None = None,
        user: str | None = None,
        roles: Sequence[str] = (),
        if_busy: IfBusy = "queue",
        idempotency_key: str | None = None,
    ) -> str:
        """Accept a run into the queue and return its id at once; a worker (or
        :meth:`recover`, or :meth:`resume`) drives it, and :meth:`wait` or :meth:`events`
        follow it. The run is durable
        before this returns. It uses the agent's ``deps``; a model name (or the agent's
        models) is checked now, so a missing key fails here, not in a worker. ``tenant``,
        ``user`` and ``roles`` are as for :meth:`run`.

        ``if_busy`` applies when an earlier run of ``thread`` has not ended: ``"queue"`` (the
        default) accepts the run behind it, for as long as it takes; ``"reject"`` raises
        :class:`ThreadBusyError` and journals nothing (the check and the acceptance are one
        atomic step); ``"interrupt"`` cancels the earlier runs, then accepts this one.

        ``idempotency_key`` is the caller's id for this request (at most 255 printable
        characters, such as a UUID or a message id), unique within ``tenant``. It is kept with
        the run, in the same atomic write: a submit repeated with it (after a crash, a timeout,
        a redelivered message, from any process) returns the id of the run the first one
        created and creates none; one for another agent raises ``UsageError``. A key lasts as
        long as its run (deleting the run frees it). Keys are stored as they are, not
        encrypted: no personal data in them."""
        return await self._runs.submit(
            agent,
            input,
            thread=thread,
            limits=limits,
            model=model,
            principal=check_principal(tenant, user, roles),
            if_busy=if_busy,
            idempotency_key=check_idempotency_key(idempotency_key),
        )

    async def wait(
        self, run_id: str, agent: Agent[OutputT] | None = None, *, timeout_s: float | None = None
    ) -> RunResult[OutputT]:
        """Wait until a run is no longer queued or running (or ``timeout_s`` passed) and return
        where it stands."""
        return await self._runs.wait(run_id, agent, timeout_s=timeout_s)

    async def result(self, run_id: str, agent: Agent[OutputT] | None = None) -> RunResult[OutputT]:
        """Where a run stands now, from its journal."""
        return await self._runs.result(run_id, agent)

    def events(
        self,
        run_id: str,
        *,
        after: int = 0,
        deltas: bool = False,
        until: Literal["stopped", "finished"] = "stopped",
    ) -> AsyncIterator[RunEvent | RunDelta]:
        """Follow a run: its journal events numbered above ``after`` (:class:`RunEvent`), as
        they become durable, until it stops (``until="finished"``: until it ends, through
        pauses). With ``deltas``, also the model's text as it streams (:class:`RunDelta`),
        when this process drives the run, or another does and ``KEEL_REDIS_URL`` names the
        Redis they share (the model is then asked to stream). Works from any process: the
        store wakes followers when the run changes."""
        return follow(self._kernel, run_id, after=after, deltas=deltas, until=until)

    def worker(
        self, *, concurrency: int = 8, poll_interval_s: float = 1.0, grace_s: float = 10.0
    ) -> Worker:
        """A worker that drives this runtime's agents' runs from the queue
        (``await worker.run()``); any number, in any number of processes, share a store."""
        return Worker(
            self._kernel,
            self._runs,
            concurrency=concurrency,
            poll_interval_s=poll_interval_s,
            grace_s=grace_s,
        )

    # -- continuing ---------------------------------------------------------------------------

    async def resume(
        self,
        run_id: str,
        agent: Agent[OutputT] | None = None,
        *,
        limits: Limits | None = None,
        deps: Any = UNSET,
        model: ModelSpec | None = None,
    ) -> RunResult[OutputT]:
        """Continue a paused, queued or interrupted run from its journal, optionally with new
        limits, and drive it here.

        Completed model and tool calls are not repeated. The run goes on with the models
        recorded at its start (``model`` continues it on another one, journaled); a recorded
        model this process cannot use (a missing key) is refused with the fix. A run that
        already ended is returned as it is; one waiting for decisions raises ``UsageError``
        naming them. A run this process is already driving is not driven twice: the call waits
        for that driver's result.
        """
        return await self._runs.resume(run_id, agent, limits=limits, deps=deps, model=model)

    async def requeue(
        self,
        run_id: str,
        *,
        limits: Limits | None = None,
        model: str | Sequence[str] | None = None,
        reason: str = "resumed",
    ) -> RunResult[Any]:
        """Put a paused or interrupted run back in the queue, optionally with new limits or
        other models (by name), and return at once; a worker (or :meth:`recover`) continues
        it. Nothing is driven here, so the agent is not needed."""
        return await self._runs.requeue(run_id, limits=limits, model=model, reason=reason)

    async def recover(self, *, limit: int = 100, concurrency: int = 8) -> Recovery:
        """Continue runs of the registered agents whose process died, and queued runs that are
        first in their thread. Callable at any time. ``skipped`` lists the runs left, why, and
        until when (a live lease: its expiry)."""
        return await recover(self._kernel, self._runs, limit=limit, concurrency=concurrency)

    async def cancel(self, run_id: str, *, reason: str = "cancelled") -> RunResult[Any]:
        """End a run for good as ``cancelled``, whatever it is doing. Whoever drives it is
        fenced out. A call under way whose effect is in doubt (not safe to repeat) goes to a
        person first, as after a crash; the run frees its thread at once."""
        return await cancel(self._kernel, run_id, reason=reason)
