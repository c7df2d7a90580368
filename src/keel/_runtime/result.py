"""The outcome of a run, as ``Runtime.run`` and friends return it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Self

from typing_extensions import TypeVar

from keel._core.events import ErrorInfo, PendingCall, RunStatus
from keel._core.messages import Message
from keel._core.state import RunState
from keel._core.usage import Usage
from keel.errors import RunFailedError, RunNotCompletedError

__all__ = ["RunResult"]

OutputT = TypeVar("OutputT", default=str)

_HOW = {
    "paused": "resume it once what stopped it is fixed: runtime.resume(run_id, limits=...) "
    "or `keel resume RUN_ID --max-steps N --app APP` for a limit",
    "awaiting_approval": "a person must decide on its pending calls first: "
    "runtime.approve/reject/confirm(run_id, ...) or `keel approve RUN_ID --by NAME --app APP`",
    "failed": "it cannot continue; see result.reason, and start a new run",
    "cancelled": "it was cancelled",
    "queued": "it has not started yet; wait for it with await runtime.wait(run_id)",
    "running": "it has not finished yet; wait for it with await runtime.wait(run_id)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult(Generic[OutputT]):
    """What a run produced and what it cost.

    ``status`` is ``completed``, ``failed``, ``cancelled``, ``paused`` (a limit was reached:
    raise it and resume), ``awaiting_approval`` (a person must decide on a tool call), or, for
    a run not finished yet, ``queued`` or ``running``. ``output`` is the validated final answer
    of a completed run; reading it for any other status raises
    :class:`keel.errors.RunNotCompletedError`, which says why and how to continue, so a
    stopped run is never mistaken for an answer (check ``ok`` or ``status`` first, or use
    ``output_or_none``). ``reason`` says why a run did not complete. ``cost_usd`` is ``None``
    when any model call had no known price: unknown, not free. A run with status
    ``awaiting_approval`` lists what waits for a person in ``pending``.
    """

    run_id: str
    thread_id: str
    agent: str
    model: str
    status: RunStatus
    usage: Usage
    cost_usd: float | None
    steps: int
    tool_calls: int
    reason: ErrorInfo | None
    messages: tuple[Message, ...]
    pending: tuple[PendingCall, ...] = ()
    final_output: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the run completed."""
        return self.status == "completed"

    @property
    def output(self) -> OutputT:
        """The final answer; raises :class:`keel.errors.RunNotCompletedError` unless the run
        completed."""
        if self.status != "completed":
            raise RunNotCompletedError(
                self.run_id,
                status=self.status,
                reason=None
                if self.reason is None
                else f"{self.reason.message} [{self.reason.code}]",
                how=_HOW.get(self.status, "see result.status"),
            )
        value: OutputT = self.final_output
        return value

    @property
    def output_or_none(self) -> OutputT | None:
        """The final answer of a completed run, else ``None``."""
        value: OutputT | None = self.final_output if self.status == "completed" else None
        return value

    def raise_for_status(self) -> Self:
        """Return ``self`` if the run completed; raise :class:`keel.errors.RunFailedError`."""
        if self.ok:
            return self
        why = f"{self.reason.message} [{self.reason.code}]" if self.reason else "no reason given"
        raise RunFailedError(
            f"run {self.run_id} ended {self.status}: {why}",
            run_id=self.run_id,
            status=self.status,
            reason_code=self.reason.code if self.reason else None,
        )

    @classmethod
    def from_state(cls, state: RunState, output: Any) -> RunResult[Any]:
        """The result of a run in ``state``; ``output`` is already converted to its type."""
        return RunResult(
            run_id=state.run_id,
            thread_id=state.thread_id,
            agent=state.agent,
            model=state.model,
            status=state.status,
            final_output=output if state.status == "completed" else None,
            usage=state.usage,
            cost_usd=state.cost_usd,
            steps=state.step,
            tool_calls=state.tool_calls,
            reason=state.reason,
            messages=tuple(state.own_messages),
            pending=tuple(state.pending.values()),
        )
