"""People deciding on what waits for them: approve, reject, confirm; and listing what waits.

A decision is journaled (``CallDecided``, with who and when) under the run's lease. When the
last pending call of a run is decided, the run goes back to the queue in the same append
(``RunQueued``): the decision is durable and the run will continue, whoever continues it. With
``resume=True`` (the default) the deciding caller drives it on at once; otherwise a worker (or
``recover()``, or a later ``resume()``) does. A decision covers the call's next attempt only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from typing_extensions import TypeVar

from keel._agent import Agent
from keel._core.events import CallDecided, Decision, Event, PendingCall, RunQueued
from keel._core.fold import apply
from keel._core.loop import LoopSpec, decide
from keel._core.toolspec import ToolArgumentsError
from keel._runtime.kernel import Kernel, pick_pending
from keel._runtime.result import RunResult
from keel._runtime.running import Runs
from keel.errors import UsageError
from keel.ports import RunRecord

__all__ = ["Approvals"]

OutputT = TypeVar("OutputT", default=Any)


class Approvals:
    """Decisions on pending calls; one per runtime."""

    def __init__(self, kernel: Kernel, runs: Runs) -> None:
        self.k = kernel
        self.runs = runs

    async def pending_calls(self, run_id: str) -> list[PendingCall]:
        """What in a run waits for a person (empty if nothing)."""
        return list((await self.k.load(run_id)).state.pending.values())

    async def waiting_runs(self) -> list[RunRecord]:
        """Every run waiting for a person, oldest first; no cap."""
        records = await self.k.store.list_runs(status="awaiting_approval", limit=None)
        return sorted(records, key=lambda r: (r.created_at, r.run_id))

    async def approve(
        self,
        run_id: str,
        call_id: str | None,
        *,
        by: str,
        arguments: Mapping[str, Any] | str | None,
        agent: Agent[OutputT] | None,
        resume: bool,
    ) -> RunResult[OutputT]:
        """See :meth:`keel.Runtime.approve`."""
        decision: Decision = "approve" if arguments is None else "edit"
        text = None if arguments is None or isinstance(arguments, str) else json.dumps(arguments)
        return await self.decide(
            run_id,
            call_id,
            decision,
            by=by,
            arguments=arguments if isinstance(arguments, str) else text,
            agent=agent,
            resume=resume,
        )

    async def decide(
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
        """Journal a person's decision; continue the run when nothing else waits."""
        if not isinstance(by, str) or not by.strip():
            raise UsageError("say who decides: by='name or email' is journaled with the decision")
        k = self.k
        record = await k.store.get_run(run_id)
        chosen = k.agent_for(record, agent, needed=decision == "edit" or resume)
        async with k.drives.exclusive(run_id) as other:
            if other is not None:
                raise UsageError(
                    f"run {run_id} is being driven by this process right now; decide once it "
                    "stops for a person"
                )
            lease = await k.store.acquire_lease(run_id, owner=k.driver_owner(), ttl_s=k.lease_ttl_s)
            try:
                loaded = await k.load(run_id)
                state = loaded.state
                pending = pick_pending(state, call_id)
                self._check(chosen, state.cancelling is not None, pending, decision, arguments)
                event = CallDecided(
                    call_id=pending.call.id,
                    decision=decision,
                    by=by,
                    reason=reason,
                    arguments=arguments,
                    result=result,
                    at=k.clock.now(),
                )
                # What a person writes (a reason, edited arguments) is scrubbed like the rest.
                events: list[Event] = list(k.scrubber.events([event]))
                apply(state, events[0])
                if not state.pending:
                    if state.cancelling is not None:
                        # What the person said settles the calls; the run ends cancelled.
                        ending = decide(state, LoopSpec(), k.clock.now()).events
                    else:
                        ending = (RunQueued(reason=f"decided by {by}", at=k.clock.now()),)
                    for item in ending:
                        apply(state, item)
                    events.extend(ending)
                last_seq = await k.record(loaded, events, lease, applied=True)
            except BaseException:
                await k.store.release_lease(lease)
                raise
            if state.status != "queued" or not resume:
                await k.store.release_lease(lease)
                return k.result(chosen, state)
            try:
                loaded = type(loaded)(state=state, events=[*loaded.events, *events])
                state, started, chain = await self.runs.prepare(chosen, loaded)
            except BaseException:
                await k.store.release_lease(lease)
                raise
            return await self.runs.drive(
                chosen, state, lease, last_seq=last_seq, chain=chain, new_events=started
            )

    def _check(
        self,
        agent: Agent[Any],
        cancelling: bool,
        pending: PendingCall,
        decision: Decision,
        arguments: str | None,
    ) -> None:
        if decision == "done" and pending.kind != "interrupted":
            raise UsageError(
                f"call {pending.call.id} was never started, so its effect cannot have "
                "happened; approve or reject it instead"
            )
        if cancelling and decision in ("approve", "edit"):
            raise UsageError(
                f"the run was cancelled while call {pending.call.id} ran; say whether its "
                "effect happened (confirm it with its result, or reject it), it will not run "
                "again"
            )
        if (
            pending.kind == "escalated"
            and decision == "edit"
            and pending.call.name in ("input", "model_call", "output")
        ):
            raise UsageError(f"{pending.call.id} cannot be edited; approve or reject it")
        if decision == "edit":
            tool = agent.loop_spec.tools.get(pending.call.name)
            if tool is not None:
                try:
                    tool.validate(arguments or "")
                except ToolArgumentsError as exc:
                    raise UsageError(f"the edited arguments are not valid: {exc.message}") from None
