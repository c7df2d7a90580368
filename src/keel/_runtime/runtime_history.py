"""The runtime's methods for looking back at runs: time travel, reading and retention (a
part of :class:`keel.Runtime`, kept in a module of its own)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from typing_extensions import TypeVar

from keel._agent import Agent, ModelSpec
from keel._core.limits import Limits
from keel._core.state import RunState
from keel._core.steps import RunDiff, Step
from keel._runtime.kernel import Kernel
from keel._runtime.result import RunResult
from keel._runtime.retention import Retention
from keel._runtime.running import UNSET
from keel._runtime.timetravel import Replay, TimeTravel
from keel.ports import RunRecord, Store

__all__ = ["HistoryMethods"]

OutputT = TypeVar("OutputT", default=Any)


class HistoryMethods:
    """Steps, replay, fork, diff, reading and deleting runs; see :class:`keel.Runtime`."""

    store: Store
    _kernel: Kernel
    _travel: TimeTravel
    _retention: Retention

    # -- time travel --------------------------------------------------------------------------

    async def steps(self, run_id: str) -> list[Step]:
        """A run's steps: each model turn with the tool calls it asked for and their results."""
        return await self._travel.steps(run_id)

    async def replay(self, run_id: str, agent: Agent[Any] | None = None) -> Replay:
        """Replay a run from its journal with ``agent``'s current code, calling no model or
        tool, writing nothing and taking no lease; ``identical`` says whether the same events
        came out."""
        return await self._travel.replay(run_id, agent)

    async def fork(
        self,
        run_id: str,
        agent: Agent[OutputT] | None = None,
        *,
        at_step: int,
        input: str | None = None,
        tool_results: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        deps: Any = UNSET,
        model: ModelSpec | None = None,
    ) -> RunResult[OutputT]:
        """Start a new run from a copy of ``run_id``'s steps ``1..at_step`` and continue it.

        ``input`` replaces the original input; ``tool_results`` ({call id: text}) replaces what
        those calls returned. The fork shares its source's thread history but does not add to
        the thread. Its journal records where it came from (``RunStarted.forked_from``).
        """
        return await self._travel.fork(
            run_id,
            agent,
            at_step=at_step,
            input=input,
            tool_results=tool_results,
            limits=limits,
            deps=deps,
            model=model,
        )

    async def diff(self, run_a: str, run_b: str) -> RunDiff:
        """How two runs differ: their start, each step, and their outcome."""
        return await self._travel.diff(run_a, run_b)

    # -- reading ------------------------------------------------------------------------------

    async def load_state(self, run_id: str) -> RunState:
        """A run's state, folded from its journal."""
        return (await self._kernel.load(run_id)).state

    async def get_run(self, run_id: str) -> RunRecord:
        """The summary of one run."""
        return await self.store.get_run(run_id)

    # -- retention ----------------------------------------------------------------------------

    async def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete runs and everything derived from them; returns how many existed."""
        return await self._retention.delete_runs(run_ids)

    async def delete_runs_older_than(self, seconds: float) -> int:
        """Delete runs created more than ``seconds`` ago (except queued and running ones)."""
        return await self._retention.delete_runs_older_than(seconds)

    async def delete_thread(self, thread_id: str) -> int:
        """Delete a thread's conversation and all its runs; returns how many runs."""
        return await self._retention.delete_thread(thread_id)
