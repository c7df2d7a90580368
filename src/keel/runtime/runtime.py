"""``Runtime``: runs agents, keeps every run's journal, continues threads across restarts.

::

    runtime = Runtime()                 # ./keel.db (SQLite), models by name, system clock
    result = await runtime.run(agent, "Where is order 123?", thread="customer-42")

One ``Runtime`` holds one store, a model registry and the price table. It has no global state:
a test can create five in one process. Close it (``await runtime.close()`` or ``async with``)
to release the store and the models' HTTP connections.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from keel._ids import new_run_id
from keel.agent import Agent
from keel.core.events import RunResumed, RunStarted
from keel.core.limits import Limits
from keel.core.pricing import Price, PriceTable
from keel.core.state import RunState, fold, start
from keel.errors import ConfigurationError, UsageError
from keel.models.registry import ModelRegistry
from keel.ports import Clock, Model, RunRecord, Store, SystemClock
from keel.runtime.result import RunResult
from keel.runtime.runner import RunDriver
from keel.settings import KeelSettings

__all__ = ["Runtime", "open_store"]

OutputT = TypeVar("OutputT")
_UNSET: Final[Any] = object()
_MAX_THREAD_ID = 200


def open_store(location: str | os.PathLike[str]) -> Store:
    """A store for ``location``: ``memory``, ``sqlite:///path``, or a file path (SQLite)."""
    text = os.fspath(location)
    if text in ("memory", "memory://", ":memory:"):
        from keel.stores.memory import MemoryStore

        return MemoryStore()
    if text.startswith(("postgres://", "postgresql://", "postgresql+")):
        raise ConfigurationError(
            f"KEEL_DB={text.split('@')[-1]!r}: the PostgreSQL store is not available in this "
            "version; use a file path for SQLite"
        )
    if "://" in text and not text.startswith("sqlite://"):
        scheme = text.split("://", 1)[0]
        raise ConfigurationError(
            f"KEEL_DB uses the unknown scheme '{scheme}://'; use a file path, "
            "'sqlite:///path/to/keel.db' or 'memory'"
        )
    from keel.stores.sqlite import SQLiteStore

    return SQLiteStore(Path(text.removeprefix("sqlite://")) if "://" in text else Path(text))


def _check_input(text: object) -> str:
    if not isinstance(text, str):
        raise UsageError(f"a run's input must be a str, got {type(text).__name__}")
    if not text.strip():
        raise UsageError("a run's input is empty; pass the user's message as a non-empty str")
    return text


def _check_agent(agent: object) -> None:
    if not isinstance(agent, Agent):
        raise UsageError(f"run() needs a keel.Agent, got {type(agent).__name__}")


def _check_thread(thread: object) -> str:
    if not isinstance(thread, str) or not thread or len(thread) > _MAX_THREAD_ID:
        raise UsageError(
            f"thread must be a non-empty str of at most {_MAX_THREAD_ID} characters, got {thread!r}"
        )
    if not thread.isprintable():
        raise UsageError(f"thread {thread!r} contains control characters; use printable text")
    return thread


class Runtime:
    """Runs agents and keeps their journals.

    Args:
        store: A :class:`keel.ports.Store` (borrowed: the caller closes it), or where to keep
            runs (a path, ``sqlite:///path`` or ``memory``; opened and closed by the runtime).
            Default: ``settings.db`` (``KEEL_DB``, else ``./keel.db``).
        settings: Configuration; default: read once from the environment.
        models: The registry that resolves model names; default: built from ``settings``.
        prices: Extra or overriding prices (``{"acme:*": Price(...)}``) or a whole table.
        clock: Wall and monotonic time; inject a fake one in tests.
    """

    def __init__(
        self,
        *,
        store: Store | str | os.PathLike[str] | None = None,
        settings: KeelSettings | None = None,
        models: ModelRegistry | None = None,
        prices: PriceTable | Mapping[str, Price] | None = None,
        clock: Clock | None = None,
        new_id: Callable[[float], str] = new_run_id,
    ) -> None:
        self.settings = settings or KeelSettings.from_environ()
        if store is None:
            store = self.settings.db
        # A store object passed in is borrowed (its owner closes it); one opened here is ours.
        self._owns_store = isinstance(store, str | os.PathLike)
        self.store: Store = open_store(store) if isinstance(store, str | os.PathLike) else store
        self.models = models or ModelRegistry(self.settings)
        self.prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self.clock: Clock = clock or SystemClock()
        self._new_id = new_id
        self._resolved: dict[str, Model] = {}

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the models this runtime resolved by name, and the store if it opened it."""
        models, self._resolved = list(self._resolved.values()), {}
        for model in models:
            await model.aclose()
        if self._owns_store:
            await self.store.close()

    # -- running ------------------------------------------------------------------------------

    def model_for(self, agent: Agent[Any], override: str | Model | None = None) -> Model:
        """The model object a run of ``agent`` uses."""
        chosen = override or agent.model or self.settings.default_model
        if isinstance(chosen, Model):
            return chosen
        model = self._resolved.get(chosen)
        if model is None:
            model = self.models.resolve(chosen)
            self._resolved[chosen] = model
        return model

    async def run(
        self,
        agent: Agent[OutputT],
        input: str,
        *,
        thread: str | None = None,
        deps: Any = _UNSET,
        limits: Limits | None = None,
        model: str | Model | None = None,
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

        A run that ends badly (a limit, a failing model, invalid output) is not raised: the
        result's ``status`` and ``reason`` say what happened. Only developer mistakes
        (:class:`keel.errors.UsageError`) and store failures are raised.
        """
        _check_agent(agent)
        text = _check_input(input)
        chosen = self.model_for(agent, model)
        now = self.clock.now()
        run_id = self._new_id(now)
        thread_id = run_id if thread is None else _check_thread(thread)
        history = await self.store.thread_messages(thread_id) if thread is not None else []
        output = agent.loop_spec.output
        started = RunStarted(
            run_id=run_id,
            thread_id=thread_id,
            agent=agent.name,
            model=chosen.name,
            input=text,
            instructions=agent.instructions,
            history_count=len(history),
            tools=tuple(agent.tools_by_name),
            limits=limits or agent.limits,
            output_schema=None if output is None else dict(output.schema),
            at=now,
        )
        state = start(started, history)
        driver = self._driver(agent, chosen, deps, state, last_seq=0, unsaved=(started,))
        return self._result(agent, await driver.drive())

    def run_sync(
        self,
        agent: Agent[OutputT],
        input: str,
        *,
        thread: str | None = None,
        deps: Any = _UNSET,
        limits: Limits | None = None,
        model: str | Model | None = None,
    ) -> RunResult[OutputT]:
        """:meth:`run` for code without an event loop (scripts, notebooks without one)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise UsageError(
                "run_sync() was called from a running event loop; use 'await runtime.run(...)'"
            )
        _check_agent(agent)
        chosen = self.model_for(agent, model)

        async def run_then_release() -> RunResult[OutputT]:
            try:
                return await self.run(
                    agent, input, thread=thread, deps=deps, limits=limits, model=chosen
                )
            finally:
                # This loop ends when run_sync returns: connections opened on it must close
                # now. The model stays usable and reconnects on the next loop.
                await chosen.aclose()

        return asyncio.run(run_then_release())

    async def resume(
        self,
        run_id: str,
        agent: Agent[OutputT],
        *,
        limits: Limits | None = None,
        deps: Any = _UNSET,
        model: str | Model | None = None,
    ) -> RunResult[OutputT]:
        """Continue a paused or interrupted run from its journal, optionally with new limits.

        Completed model and tool calls are not repeated: their journaled results are reused.
        A run that already completed or failed is returned as it is.
        """
        record = await self.store.get_run(run_id)
        if record.agent != agent.name:
            raise UsageError(
                f"run {run_id} belongs to agent '{record.agent}', not '{agent.name}'; "
                "resume it with the agent that started it"
            )
        state = await self.load_state(run_id)
        if state.status in ("completed", "failed", "cancelled"):
            return self._result(agent, state)
        chosen = self.model_for(agent, model)
        driver = self._driver(agent, chosen, deps, state, last_seq=record.last_seq)
        resumed = RunResumed(limits=limits or state.limits, at=self.clock.now())
        driver.record((resumed,))
        return self._result(agent, await driver.drive())

    async def load_state(self, run_id: str) -> RunState:
        """A run's state, folded from its journal."""
        events = await self.store.load(run_id)
        first = events[0]
        history = []
        if isinstance(first, RunStarted) and first.history_count:
            history = await self.store.thread_messages(first.thread_id)
        return fold(events, history)

    async def get_run(self, run_id: str) -> RunRecord:
        """The summary of one run."""
        return await self.store.get_run(run_id)

    def _driver(
        self,
        agent: Agent[Any],
        model: Model,
        deps: Any,
        state: RunState,
        *,
        last_seq: int,
        unsaved: tuple[RunStarted, ...] = (),
    ) -> RunDriver:
        return RunDriver(
            agent=agent,
            model=model,
            price=self.prices.price(model.name),
            store=self.store,
            clock=self.clock,
            deps=agent.deps if deps is _UNSET else deps,
            state=state,
            last_seq=last_seq,
            unsaved=unsaved,
        )

    def _result(self, agent: Agent[OutputT], state: RunState) -> RunResult[OutputT]:
        output: Any = state.output
        spec = agent.loop_spec.output
        if spec is not None and state.status == "completed":
            output = spec.load(output)
        return cast(RunResult[OutputT], RunResult.from_state(state, output))
