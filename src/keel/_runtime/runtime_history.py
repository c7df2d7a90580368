"""The runtime's methods for looking back at runs: time travel, reading and retention (a
part of :class:`keel.Runtime`, kept in a module of its own)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from typing_extensions import TypeVar

from keel._agent import Agent, ModelSpec
from keel._core.events import RunStatus
from keel._core.limits import Limits
from keel._core.state import RunState
from keel._core.steps import RunDiff, Step
from keel._runtime.kernel import Kernel
from keel._runtime.result import RunResult
from keel._runtime.retention import Retention
from keel._runtime.running import UNSET
from keel._runtime.timetravel import Replay, TimeTravel
from keel.errors import UsageError
from keel.ports import RunQuery, RunRecord, Store

__all__ = ["HistoryMethods", "Moment", "RunPage", "moment"]

Moment = float | datetime | timedelta
"""A point in time: seconds since the epoch, a ``datetime`` (naive means UTC), or a
``timedelta`` meaning that long ago."""


def moment(value: Moment | None, now: float, name: str) -> float | None:
    """``value`` as seconds since the epoch (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return now - value.total_seconds()
    if isinstance(value, datetime):
        return value.timestamp() if value.tzinfo else value.replace(tzinfo=UTC).timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(
            f"{name} must be seconds since the epoch, a datetime or a timedelta (that long "
            f"ago), got {value!r}"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of a run listing, newest first; ``next`` is the cursor of the next page
    (``query_runs(before=page.next)``), ``None`` on the last page."""

    runs: list[RunRecord]
    next: str | None


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

    async def query_runs(
        self,
        query: RunQuery | None = None,
        *,
        agent: str | None = None,
        status: RunStatus | tuple[RunStatus, ...] | None = None,
        thread: str | None = None,
        tenant: str | None = None,
        user: str | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        tool: str | None = None,
        error: str | None = None,
        min_cost: float | None = None,
        max_cost: float | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> RunPage:
        """A page of the decision history: runs newest first that match every filter given
        (a :class:`keel.ports.RunQuery`, or the same fields as keywords), and the cursor of
        the next page. ``since`` and ``until`` also take a ``datetime`` or a ``timedelta``
        (``since=timedelta(hours=1)``: the last hour); ``error`` is the run's reason code;
        costs are US dollars, durations seconds."""
        now = self._kernel.clock.now()
        keywords = RunQuery(
            agent=agent,
            status=status,
            thread=thread,
            tenant=tenant,
            user=user,
            since=moment(since, now, "since"),
            until=moment(until, now, "until"),
            tool=tool,
            error=error,
            min_cost=min_cost,
            max_cost=max_cost,
            min_duration=min_duration,
            max_duration=max_duration,
        )
        if query is not None and keywords != RunQuery():
            raise UsageError("pass a RunQuery or filters as keywords, not both")
        wanted = query if query is not None else keywords
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise UsageError(f"limit must be a whole number of at least 1, got {limit!r}")
        # One more than the page, to know whether another page follows.
        runs = await self.store.list_runs(wanted, limit=limit + 1, before=before)
        if len(runs) > limit:
            return RunPage(runs[:limit], runs[limit - 1].cursor)
        return RunPage(runs, None)

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

    async def delete_user_data(self, user: str, *, tenant: str | None = None) -> int:
        """Delete every run for ``user`` (``run(..., user=...)``), of ``tenant`` only when
        given, with their events, thread messages and feedback; returns how many runs.
        Raises :class:`keel.errors.RunLeasedError`, deleting nothing, while one of them is
        being driven (cancel it first)."""
        return await self._retention.delete_user_data(user, tenant=tenant)
