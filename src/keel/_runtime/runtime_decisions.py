"""The runtime's methods for people's decisions on paused runs (a part of
:class:`keel.Runtime`, kept in a module of its own)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import TypeVar

from keel._agent import Agent
from keel._core.events import PendingCall
from keel._runtime.approvals import Approvals
from keel._runtime.result import RunResult
from keel.ports import RunRecord

__all__ = ["DecisionMethods"]

OutputT = TypeVar("OutputT", default=Any)


class DecisionMethods:
    """Approve, reject and confirm what waits for a person; see :class:`keel.Runtime`."""

    _approvals: Approvals

    # -- people deciding ----------------------------------------------------------------------

    async def pending_calls(self, run_id: str) -> list[PendingCall]:
        """What in a run waits for a person's decision (empty if nothing)."""
        return await self._approvals.pending_calls(run_id)

    async def waiting_runs(self) -> list[RunRecord]:
        """Every run waiting for a person's decision, oldest first, without a cap."""
        return await self._approvals.waiting_runs()

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
        interrupted call run once more. When nothing else waits, the run goes back to the
        queue (durably, with the decision) and, with ``resume`` (the default), is driven on
        here; otherwise a worker continues it. ``call_id`` may be left out when one call is
        pending. The decision covers the call's next attempt only."""
        return await self._approvals.approve(
            run_id, call_id, by=by, arguments=arguments, agent=agent, resume=resume
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
        return await self._approvals.decide(
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
        return await self._approvals.decide(
            run_id, call_id, "done", by=by, result=result, agent=agent, resume=resume
        )
