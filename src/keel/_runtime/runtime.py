"""``Runtime``: runs agents, keeps every run's journal, continues runs after crashes and pauses.

::

    runtime = Runtime(agents=[support])   # ./keel.db (SQLite), models by name, system clock
    result = await runtime.run(support, "Where is order 123?", thread="customer-42")

One ``Runtime`` holds one store, a model registry, the price table and the agents it knows by
name (to recover their runs). It has no global state: a test can create five in one process.
Close it (``await runtime.close()`` or ``async with``) to release the store and connections.

Every run is advanced by one process at a time: the process holds the run's lease (renewed in
the background) and every append carries its fencing token. A run whose process died keeps its
status ``running`` with an expired lease; :meth:`Runtime.recover` (run on entering ``async
with`` when agents are registered) and :meth:`Runtime.resume` continue it from its journal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, cast

from typing_extensions import TypeVar

from keel._agent import Agent, ModelSpec
from keel._core.events import (
    CallDecided,
    Decision,
    ErrorInfo,
    Event,
    PendingCall,
    RunFinished,
    RunResumed,
    RunStarted,
)
from keel._core.limits import Limits
from keel._core.messages import Message
from keel._core.pricing import Price, PriceTable
from keel._core.state import RunState, apply, fold, start
from keel._core.toolspec import ToolArgumentsError
from keel._ids import new_run_id
from keel._runtime.leases import LeaseKeeper, new_owner_id
from keel._runtime.result import RunResult
from keel._runtime.runner import RunDriver, record_of
from keel._runtime.timetravel import Replay, RunDiff, Step, diff_runs, fork_events, replay, steps_of
from keel._runtime.tool_calls import ToolExecutor, execute_tool
from keel._settings import KeelSettings
from keel.errors import (
    ConfigurationError,
    LeaseLostError,
    RunLeasedError,
    ThreadBusyError,
    ThreadChangedError,
    UsageError,
)
from keel.models._registry import ModelRegistry
from keel.ports import Clock, Lease, Model, RunRecord, Store, SystemClock, ThreadHistory
from keel.resilience import (
    BreakerBoard,
    BreakerPolicy,
    BreakerStatus,
    CircuitBreaker,
    Fallback,
    MemoryBreakerBoard,
    Retrying,
    RetryPolicy,
)
from keel.resilience._cache import Caching, ResponseCache

__all__ = ["IfBusy", "Recovery", "Runtime", "open_store"]

# Any when it cannot be inferred: resuming a run by id, without its agent, gives RunResult[Any].
OutputT = TypeVar("OutputT", default=Any)
IfBusy = Literal["reject", "queue", "interrupt"]
"""What a new run does when a run of its thread is still running: fail with
``ThreadBusyError``, wait for it, or cancel it."""

_UNSET: Final[Any] = object()
_DEFAULT_RETRY = RetryPolicy()
_DEFAULT_BREAKER = BreakerPolicy()
_MAX_THREAD_ID = 200
_FINISHED = ("completed", "failed", "cancelled")
_log = logging.getLogger("keel.runtime")


def open_store(location: str | os.PathLike[str], *, clock: Clock | None = None) -> Store:
    """A store for ``location``: ``memory``, ``sqlite:///path``, or a file path (SQLite)."""
    text = os.fspath(location)
    if text in ("memory", "memory://", ":memory:"):
        from keel.stores._memory import MemoryStore

        return MemoryStore(clock=clock)
    if text.startswith(("postgres://", "postgresql://")):
        from keel.stores._postgres import PostgresStore

        return PostgresStore(text)
    if "://" in text and not text.startswith("sqlite://"):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"KEEL_DB uses the unknown scheme '{scheme}://'; use a file path, "
            "'sqlite:///path/to/keel.db', 'postgresql://user@host/db' or 'memory'"
        )
    from keel.stores._sqlite import SQLiteStore

    path = Path(text.removeprefix("sqlite://")) if "://" in text else Path(text)
    return SQLiteStore(path, clock=clock)


def _check_agent(agent: object) -> None:
    if not isinstance(agent, Agent):
        raise UsageError(f"run() needs a keel.Agent, got {type(agent).__name__}")


def _check_input(text: object) -> str:
    if not isinstance(text, str):
        raise UsageError(f"a run's input must be a str, got {type(text).__name__}")
    if not text.strip():
        raise UsageError("a run's input is empty; pass the user's message as a non-empty str")
    return text


def _check_thread(thread: object) -> str:
    if not isinstance(thread, str) or not thread or len(thread) > _MAX_THREAD_ID:
        raise UsageError(
            f"thread must be a non-empty str of at most {_MAX_THREAD_ID} characters, got {thread!r}"
        )
    if not thread.isprintable():
        raise UsageError(f"thread {thread!r} contains control characters; use printable text")
    return thread


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`Runtime.recover` did: the runs it continued, and those it left, with why."""

    results: list[RunResult[Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


class Runtime:
    """Runs agents and keeps their journals.

    Args:
        store: A :class:`keel.ports.Store` (borrowed: the caller closes it), or where to keep
            runs (a path, ``sqlite:///path``, ``postgresql://...`` or ``memory``; opened and
            closed by the runtime). Default: ``settings.db`` (``KEEL_DB``, else ``./keel.db``).
        settings: Configuration; default: read once from the environment.
        models: The registry that resolves model names; default: built from ``settings``.
        prices: Extra or overriding prices (``{"acme:*": Price(...)}``) or a whole table.
        clock: Wall and monotonic time; inject a fake one in tests.
        agents: Agents this runtime knows by name: their interrupted runs are recovered when
            the runtime is entered (``async with``), and decisions on their paused runs resume
            them. More can be added with :meth:`register`.
        recover_on_start: Recover interrupted runs of ``agents`` on ``async with`` entry.
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
        recover_on_start: bool = True,
        lease_ttl_s: float = 30.0,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        breaker: BreakerPolicy | None = _DEFAULT_BREAKER,
        breakers: BreakerBoard | None = None,
        cache: ResponseCache | None = None,
        cache_ttl_s: float = 3600.0,
        new_id: Callable[[float], str] = new_run_id,
    ) -> None:
        if lease_ttl_s <= 0:
            raise ConfigurationError(f"lease_ttl_s must be positive, got {lease_ttl_s}")
        self.settings = settings or KeelSettings.from_environ()
        if store is None:
            store = self.settings.db
        # A store object passed in is borrowed (its owner closes it); one opened here is ours.
        self._owns_store = isinstance(store, str | os.PathLike)
        self.store: Store = open_store(store) if isinstance(store, str | os.PathLike) else store
        self.models = models or ModelRegistry(self.settings)
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self.clock: Clock = clock or SystemClock()
        self.owner = new_owner_id()
        self.lease_ttl_s = lease_ttl_s
        self._new_id = new_id
        self._resolved: dict[str, Model] = {}
        self.retry = retry
        self._owns_breakers = breakers is None and breaker is not None
        self.breakers = breakers if breakers is not None else self._board(breaker)
        self.cache = cache
        self.cache_ttl_s = cache_ttl_s
        self._agents: dict[str, Agent[Any]] = {}
        self._refs: dict[str, str] = {}
        self._recover_on_start = recover_on_start
        for agent in agents:
            self.register(agent)

    async def __aenter__(self) -> Runtime:
        if self._recover_on_start and self._agents:
            await self.recover()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the models this runtime resolved by name, and the store if it opened it."""
        models, self._resolved = list(self._resolved.values()), {}
        for model in models:
            await model.aclose()
        if self._owns_breakers and self.breakers is not None:
            await self.breakers.close()
        if self._owns_store:
            await self.store.close()

    def register(self, agent: Agent[Any], *, ref: str | None = None) -> None:
        """Know ``agent`` by its name, for recovery and resuming; ``ref`` (``file.py:attr`` or
        ``module:attr``) is journaled with its runs so another process can load it."""
        _check_agent(agent)
        known = self._agents.get(agent.name)
        if known is not None and known is not agent:
            raise UsageError(
                f"another agent named '{agent.name}' is already registered; agent names "
                "identify runs, so give each agent its own"
            )
        self._agents[agent.name] = agent
        if ref is not None:
            self._refs[agent.name] = ref

    def model_for(self, agent: Agent[Any], override: ModelSpec | None = None) -> Model:
        """The model object a run of ``agent`` uses: names resolved and made resilient, a list
        turned into a fallback chain."""
        chain = self.chain_for(agent, override)
        return chain[0] if len(chain) == 1 else Fallback(*chain)

    def chain_for(self, agent: Agent[Any], override: ModelSpec | None = None) -> list[Model]:
        """The models a run of ``agent`` may use, in order: one, or a fallback chain."""
        spec = override or agent.model or self.settings.default_model
        if isinstance(spec, str | Model):
            return [self._compose(spec)]
        return [self._compose(item) for item in spec]

    def _compose(self, spec: ModelSpec) -> Model:
        if isinstance(spec, Model):
            return spec  # an object is used as it is: its owner chose its wrappers
        if isinstance(spec, str):
            return self._named(spec)
        chain = [self._compose(item) for item in spec]
        return chain[0] if len(chain) == 1 else Fallback(*chain)

    def model(self, name: str) -> Model:
        """The model ``name`` resolves to, as runs of this runtime use it: retried, behind its
        circuit breaker, cached if a cache is configured. One object per name; use it to build
        a :class:`keel.resilience.Router` or a custom chain."""
        return self._named(name)

    def _named(self, name: str) -> Model:
        """The model a name resolves to, retried and behind its breaker; one per name."""
        model = self._resolved.get(name)
        if model is not None:
            return model
        model = self.models.resolve(name)
        if name != "rules":  # the offline model has nothing to retry and nothing to break
            if self.breakers is not None:
                model = CircuitBreaker(model, self.breakers)
            if self.retry is not None:
                model = Retrying(model, self.retry)
        if self.cache is not None:
            model = Caching(model, self.cache, ttl_s=self.cache_ttl_s)
        self._resolved[name] = model
        return model

    def _board(self, policy: BreakerPolicy | None) -> BreakerBoard | None:
        if policy is None:
            return None
        if self.settings.redis_url:
            from keel.resilience import RedisBreakerBoard

            return RedisBreakerBoard(self.settings.redis_url, policy)
        return MemoryBreakerBoard(policy)

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
        deps: Any = _UNSET,
        limits: Limits | None = None,
        model: ModelSpec | None = None,
        if_busy: IfBusy = "queue",
        queue_timeout_s: float = 300.0,
    ) -> RunResult[OutputT]:
        """Run ``agent`` on ``input`` until it completes, fails or pauses.

        Args:
            agent: The agent to run.
            input: The user's message.
            thread: Continue this conversation: earlier completed runs of the thread are the
                model's history. Default: a new thread named after the run.
            deps: Dependencies for tools (``ctx.deps``); default: ``agent.deps``.
            limits: Limits for this run; default: ``agent.limits``.
            model: Use this model instead of the agent's.
            if_busy: When a run of ``thread`` is still running: ``"queue"`` waits for it (up
                to ``queue_timeout_s``), ``"reject"`` raises :class:`ThreadBusyError`,
                ``"interrupt"`` cancels it and starts at once.
            queue_timeout_s: How long ``"queue"`` waits before raising ``ThreadBusyError``.

        A run that ends badly (a limit, a failing model, invalid output) is not raised: the
        result's ``status`` and ``reason`` say what happened. Only developer mistakes
        (:class:`keel.errors.UsageError`), a busy thread and store failures are raised.
        """
        _check_agent(agent)
        text = _check_input(input)
        if if_busy not in ("reject", "queue", "interrupt"):
            raise UsageError(f"if_busy must be 'reject', 'queue' or 'interrupt', got {if_busy!r}")
        chosen = self.model_for(agent, model)
        run_id = self._new_id(self.clock.now())
        thread_id = run_id if thread is None else _check_thread(thread)
        state, lease = await self._start(
            run_id,
            thread_id,
            exclusive=thread is not None,
            if_busy=if_busy,
            queue_timeout_s=queue_timeout_s,
            make=lambda history: RunStarted(
                run_id=run_id,
                thread_id=thread_id,
                agent=agent.name,
                model=chosen.name,
                input=text,
                instructions=agent.instructions,
                history_count=len(history.messages),
                history_seq=history.last_seq,
                tools=tuple(agent.tools_by_name),
                limits=limits or agent.limits,
                output_schema=None
                if agent.loop_spec.output is None
                else dict(agent.loop_spec.output.schema),
                agent_ref=self._refs.get(agent.name),
                at=self.clock.now(),
            ),
        )
        return await self._advance(agent, state, lease, last_seq=1, model=model, deps=deps)

    async def _start(
        self,
        run_id: str,
        thread_id: str,
        *,
        exclusive: bool,
        if_busy: IfBusy,
        queue_timeout_s: float,
        make: Callable[[ThreadHistory], RunStarted],
        copied: tuple[Event, ...] = (),
        history: ThreadHistory | None = None,
    ) -> tuple[RunState, Lease]:
        """Journal a run's first events under a new lease, following the thread policy.

        The thread's history is read on every attempt (a queued run sees the conversation as
        the run it waited for left it), unless ``history`` is given (a fork keeps its
        source's).
        """
        deadline = self.clock.monotonic() + queue_timeout_s
        delay = 0.02
        fixed = history
        while True:
            if fixed is not None:
                history = fixed
            elif exclusive:
                history = await self.store.thread_history(thread_id)
            else:
                history = ThreadHistory(messages=[], last_seq=0)
            started = make(history)
            state = start(started, history.messages)
            for event in copied:
                apply(state, event)
            try:
                lease = await self.store.start_run(
                    run_id,
                    [started, *copied],
                    record=record_of(state, 1 + len(copied)),
                    owner=self.owner,
                    ttl_s=self.lease_ttl_s,
                    exclusive=exclusive,
                )
            except ThreadChangedError:
                continue  # a run of the thread ended after we read its history: read it again
            except ThreadBusyError as busy:
                if if_busy == "reject":
                    raise
                if if_busy == "interrupt":
                    await self.cancel(
                        busy.active_run_id,
                        reason=f"interrupted by a new message on thread {thread_id} (run {run_id})",
                    )
                    continue
                if self.clock.monotonic() >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            return state, lease

    def run_sync(
        self,
        agent: Agent[OutputT],
        input: str,
        *,
        thread: str | None = None,
        deps: Any = _UNSET,
        limits: Limits | None = None,
        model: ModelSpec | None = None,
        if_busy: IfBusy = "queue",
    ) -> RunResult[OutputT]:
        """:meth:`run` for code without an event loop (scripts, notebooks without one)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop is running: exactly what run_sync is for
        else:
            raise UsageError(
                "run_sync() was called from a running event loop; use 'await runtime.run(...)'"
            )
        _check_agent(agent)
        chain = self.chain_for(agent, model)

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
                )
            finally:
                # This loop ends when run_sync returns: connections opened on it must close
                # now. The models stay usable and reconnect on the next loop.
                for used in chain:
                    await used.aclose()

        return asyncio.run(run_then_release())

    async def _advance(
        self,
        agent: Agent[OutputT],
        state: RunState,
        lease: Lease,
        *,
        last_seq: int,
        model: ModelSpec | None = None,
        deps: Any = _UNSET,
        new_events: tuple[Event, ...] = (),
        executor: ToolExecutor = execute_tool,
        detached: bool = False,
    ) -> RunResult[OutputT]:
        """Drive a run this process holds the lease of, then give the lease up."""
        chain = self.chain_for(agent, model)
        keeper = LeaseKeeper(self.store, lease, ttl_s=self.lease_ttl_s)
        async with keeper:
            driver = RunDriver(
                agent=agent,
                models=chain,
                prices=self.prices,
                store=self.store,
                clock=self.clock,
                deps=agent.deps if deps is _UNSET else deps,
                state=state,
                last_seq=last_seq,
                keeper=keeper,
                executor=executor,
                detached=detached or state.forked_from is not None,
            )
            driver.record(new_events)
            try:
                state = await driver.drive()
            except LeaseLostError:
                # Another process took the run over: report where it stands if it has ended
                # (e.g. it was interrupted by a newer message); otherwise it is theirs now.
                current, _ = await self._load(state.run_id)
                if current.status not in _FINISHED:
                    raise
                return self._result(agent, current)
            finally:
                await keeper.release()
        return self._result(agent, state)

    # -- continuing ---------------------------------------------------------------------------

    async def resume(
        self,
        run_id: str,
        agent: Agent[OutputT] | None = None,
        *,
        limits: Limits | None = None,
        deps: Any = _UNSET,
        model: ModelSpec | None = None,
    ) -> RunResult[OutputT]:
        """Continue a paused or interrupted run from its journal, optionally with new limits.

        Completed model and tool calls are not repeated: their journaled results are reused.
        A run that already ended is returned as it is. A run waiting for decisions on tool
        calls raises ``UsageError`` naming them: decide first (:meth:`approve`, :meth:`reject`,
        :meth:`confirm`). ``agent`` defaults to the registered agent of the run's name.
        """
        record = await self.store.get_run(run_id)
        chosen = self._agent_for(record, agent)
        lease = await self.store.acquire_lease(run_id, owner=self.owner, ttl_s=self.lease_ttl_s)
        try:
            state, last_seq = await self._load(run_id)
            if state.status in _FINISHED:
                await self.store.release_lease(lease)
                return self._result(chosen, state)
            if state.pending:
                await self.store.release_lease(lease)
                raise UsageError(_pending_message(state))
        except BaseException:
            await self.store.release_lease(lease)
            raise
        resumed = RunResumed(limits=limits or state.limits, at=self.clock.now())
        return await self._advance(
            chosen, state, lease, last_seq=last_seq, model=model, deps=deps, new_events=(resumed,)
        )

    async def recover(self, *, limit: int = 100, concurrency: int = 8) -> Recovery:
        """Continue every run whose process died (status ``running``, lease expired), for the
        registered agents. Runs of unknown agents, and runs another process takes first, are
        skipped with the reason."""
        recovery = Recovery()
        gate = asyncio.Semaphore(concurrency)

        async def one(record: RunRecord) -> None:
            agent = self._agents.get(record.agent)
            if agent is None:
                recovery.skipped.append(
                    (record.run_id, f"agent '{record.agent}' is not registered")
                )
                return
            async with gate:
                try:
                    recovery.results.append(await self.resume(record.run_id, agent))
                except (RunLeasedError, LeaseLostError) as exc:
                    recovery.skipped.append((record.run_id, exc.message))

        await asyncio.gather(*(one(r) for r in await self.store.recoverable_runs(limit=limit)))
        if recovery.results:
            _log.info("recovered %d interrupted run(s)", len(recovery.results))
        return recovery

    async def cancel(self, run_id: str, *, reason: str = "cancelled") -> RunResult[Any]:
        """End a run for good as ``cancelled``, whatever it is doing. A process still advancing
        it is fenced out: its next append is refused and it stops."""
        lease = await self.store.acquire_lease(
            run_id, owner=self.owner, ttl_s=self.lease_ttl_s, force=True
        )
        try:
            state, last_seq = await self._load(run_id)
            if state.status not in _FINISHED:
                event = RunFinished(
                    status="cancelled",
                    error=ErrorInfo(code="cancelled", message=reason),
                    at=self.clock.now(),
                )
                apply(state, event)
                await self.store.append(
                    run_id,
                    [event],
                    expected_seq=last_seq,
                    record=record_of(state, last_seq + 1),
                    lease=lease,
                )
        finally:
            await self.store.release_lease(lease)
        agent = self._agents.get(state.agent)
        return self._result(agent, state) if agent else RunResult.from_state(state, state.output)

    # -- people deciding on tool calls -----------------------------------------------------

    async def pending_calls(self, run_id: str) -> list[PendingCall]:
        """The calls of a run waiting for a person's decision (empty if none)."""
        state, _ = await self._load(run_id)
        return list(state.pending.values())

    async def approve(
        self,
        run_id: str,
        call_id: str | None = None,
        *,
        by: str,
        arguments: Mapping[str, Any] | str | None = None,
        agent: Agent[OutputT] | None = None,
        resume: bool = True,
    ) -> RunResult[OutputT]:
        """Approve a pending call (with ``arguments``: run it with those instead), or let an
        interrupted call run again. When no decision is left, the run resumes (unless
        ``resume=False``). ``call_id`` may be left out when one call is pending."""
        decision: Decision = "approve" if arguments is None else "edit"
        text = None if arguments is None or isinstance(arguments, str) else json.dumps(arguments)
        return await self._decide(
            run_id,
            call_id,
            decision,
            by=by,
            arguments=arguments if isinstance(arguments, str) else text,
            agent=agent,
            resume=resume,
        )

    async def reject(
        self,
        run_id: str,
        call_id: str | None = None,
        *,
        by: str,
        reason: str,
        agent: Agent[OutputT] | None = None,
        resume: bool = True,
    ) -> RunResult[OutputT]:
        """Refuse a pending call; the model is told who refused it and ``reason``."""
        return await self._decide(
            run_id, call_id, "reject", by=by, reason=reason, agent=agent, resume=resume
        )

    async def confirm(
        self,
        run_id: str,
        call_id: str | None = None,
        *,
        by: str,
        result: str,
        agent: Agent[OutputT] | None = None,
        resume: bool = True,
    ) -> RunResult[OutputT]:
        """Say that an interrupted call's effect did happen, and what it returned: the run
        goes on with ``result`` as the call's result, without calling the tool again."""
        return await self._decide(
            run_id, call_id, "done", by=by, result=result, agent=agent, resume=resume
        )

    async def _decide(
        self,
        run_id: str,
        call_id: str | None,
        decision: Decision,
        *,
        by: str,
        agent: Agent[OutputT] | None,
        resume: bool,
        reason: str | None = None,
        arguments: str | None = None,
        result: str | None = None,
    ) -> RunResult[OutputT]:
        if not isinstance(by, str) or not by.strip():
            raise UsageError("say who decides: by='name or email' is journaled with the decision")
        record = await self.store.get_run(run_id)
        chosen = self._agent_for(record, agent, needed=decision == "edit" or resume)
        lease = await self.store.acquire_lease(run_id, owner=self.owner, ttl_s=self.lease_ttl_s)
        try:
            state, last_seq = await self._load(run_id)
            pending = _pick_pending(state, call_id)
            if decision == "done" and pending.kind != "interrupted":
                raise UsageError(
                    f"call {pending.call.id} was never started, so its effect cannot have "
                    "happened; approve or reject it instead"
                )
            if decision == "edit":
                tool = chosen.loop_spec.tools.get(pending.call.name)
                if tool is not None:
                    try:
                        tool.validate(arguments or "")
                    except ToolArgumentsError as exc:
                        raise UsageError(
                            f"the edited arguments are not valid: {exc.message}"
                        ) from None
            event = CallDecided(
                call_id=pending.call.id,
                decision=decision,
                by=by,
                reason=reason,
                arguments=arguments,
                result=result,
                at=self.clock.now(),
            )
            apply(state, event)
            last_seq = await self.store.append(
                run_id,
                [event],
                expected_seq=last_seq,
                record=record_of(state, last_seq + 1),
                lease=lease,
            )
        except BaseException:
            await self.store.release_lease(lease)
            raise
        if state.pending or not resume:
            await self.store.release_lease(lease)
            return self._result(chosen, state)
        resumed = RunResumed(limits=state.limits, at=self.clock.now())
        return await self._advance(chosen, state, lease, last_seq=last_seq, new_events=(resumed,))

    # -- time travel --------------------------------------------------------------------------

    async def steps(self, run_id: str) -> list[Step]:
        """A run's steps: each model turn with the tool calls it asked for and their results."""
        return steps_of(await self.store.load(run_id))

    async def replay(self, run_id: str, agent: Agent[Any] | None = None) -> Replay:
        """Replay a run from its journal with ``agent``'s current code, calling no model or
        tool and writing nothing; ``identical`` says whether the same events came out."""
        record = await self.store.get_run(run_id)
        chosen = self._agent_for(record, agent)
        events = await self.store.load(run_id)
        history = await self._history_of(events[0])
        return await replay(chosen, events, history, self.prices)

    async def fork(
        self,
        run_id: str,
        agent: Agent[OutputT] | None = None,
        *,
        at_step: int,
        input: str | None = None,
        tool_results: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        deps: Any = _UNSET,
        model: ModelSpec | None = None,
    ) -> RunResult[OutputT]:
        """Start a new run from a copy of ``run_id``'s steps ``1..at_step`` and continue it.

        ``input`` replaces the original input; ``tool_results`` ({call id: text}) replaces what
        those calls returned. The fork shares its source's thread history but does not add to
        the thread. Its journal records where it came from (``RunStarted.forked_from``).
        """
        record = await self.store.get_run(run_id)
        chosen = self._agent_for(record, agent)
        source = await self.store.load(run_id)
        first = source[0]
        assert isinstance(first, RunStarted)
        copied = tuple(fork_events(source, at_step=at_step, tool_results=tool_results))
        text = first.input if input is None else _check_input(input)
        chosen_model = self.model_for(chosen, model)
        history_messages = await self._history_of(first)
        history = ThreadHistory(messages=history_messages, last_seq=first.history_seq or 0)
        fork_id = self._new_id(self.clock.now())
        state, lease = await self._start(
            fork_id,
            first.thread_id,
            exclusive=False,
            if_busy="reject",
            queue_timeout_s=0,
            history=history,
            copied=copied,
            make=lambda _: replace(
                first,
                run_id=fork_id,
                input=text,
                model=chosen_model.name,
                instructions=chosen.instructions,
                limits=limits or first.limits,
                forked_from=run_id,
                fork_step=at_step,
                at=self.clock.now(),
            ),
        )
        return await self._advance(
            chosen, state, lease, last_seq=1 + len(copied), model=model, deps=deps
        )

    async def diff(self, run_a: str, run_b: str) -> RunDiff:
        """How two runs differ: their start, each step, and their outcome."""
        return diff_runs(await self.store.load(run_a), await self.store.load(run_b))

    # -- reading ------------------------------------------------------------------------------

    async def load_state(self, run_id: str) -> RunState:
        """A run's state, folded from its journal."""
        state, _ = await self._load(run_id)
        return state

    async def _load(self, run_id: str) -> tuple[RunState, int]:
        events = await self.store.load(run_id)
        return fold(events, await self._history_of(events[0])), len(events)

    async def _history_of(self, first: Event) -> list[Message]:
        """The thread messages a run started with."""
        if not isinstance(first, RunStarted) or not (first.history_count or first.history_seq):
            return []
        found = await self.store.thread_history(first.thread_id, upto_seq=first.history_seq)
        return found.messages

    async def get_run(self, run_id: str) -> RunRecord:
        """The summary of one run."""
        return await self.store.get_run(run_id)

    # -- retention ----------------------------------------------------------------------------

    async def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete runs and everything derived from them; returns how many existed."""
        return await self.store.delete_runs(list(run_ids))

    async def delete_runs_older_than(self, seconds: float) -> int:
        """Delete runs created more than ``seconds`` ago (except running ones)."""
        if seconds < 0:
            raise UsageError(f"seconds must be 0 or more, got {seconds}")
        return await self.store.delete_runs_before(self.clock.now() - seconds)

    async def delete_thread(self, thread_id: str) -> int:
        """Delete a thread's conversation and all its runs; returns how many runs."""
        return await self.store.delete_thread(thread_id)

    # -- helpers ------------------------------------------------------------------------------

    def _agent_for(
        self, record: RunRecord, agent: Agent[OutputT] | None, *, needed: bool = True
    ) -> Agent[OutputT]:
        if agent is not None:
            _check_agent(agent)
            if agent.name != record.agent:
                raise UsageError(
                    f"run {record.run_id} belongs to agent '{record.agent}', not "
                    f"'{agent.name}'; use the agent that started it"
                )
            return agent
        known = self._agents.get(record.agent)
        if known is None:
            if not needed:
                return cast(Agent[OutputT], Agent(name=record.agent))
            raise UsageError(
                f"run {record.run_id} belongs to agent '{record.agent}', which this runtime does "
                "not know: pass agent=..., or register it with Runtime(agents=[...])"
            )
        return cast(Agent[OutputT], known)

    def _result(self, agent: Agent[OutputT] | None, state: RunState) -> RunResult[OutputT]:
        output: Any = state.output
        spec = None if agent is None else agent.loop_spec.output
        if spec is not None and state.status == "completed":
            output = spec.load(output)
        return cast(RunResult[OutputT], RunResult.from_state(state, output))


def _pending_message(state: RunState) -> str:
    calls = ", ".join(f"{p.call.id} ({p.call.name}, {p.kind})" for p in state.pending.values())
    return (
        f"run {state.run_id} is waiting for a person to decide on: {calls}; approve, reject "
        "or confirm each one first"
    )


def _pick_pending(state: RunState, call_id: str | None) -> PendingCall:
    if state.status != "awaiting_approval" or not state.pending:
        raise UsageError(
            f"run {state.run_id} has no call waiting for a decision (it is {state.status})"
        )
    if call_id is None:
        if len(state.pending) > 1:
            raise UsageError(f"{_pending_message(state)}; name the call with call_id=...")
        return next(iter(state.pending.values()))
    pending = state.pending.get(call_id)
    if pending is None:
        raise UsageError(f"call {call_id} is not waiting for a decision; {_pending_message(state)}")
    return pending
