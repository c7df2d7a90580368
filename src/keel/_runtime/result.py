"""The outcome of a run, as returned by ``Runtime.run``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Self

from typing_extensions import TypeVar

from keel._core.events import ErrorInfo, PendingCall, RunStatus
from keel._core.messages import Message
from keel._core.state import RunState
from keel._core.usage import Usage
from keel.errors import RunFailedError

__all__ = ["RunResult"]

OutputT = TypeVar("OutputT", default=str)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult(Generic[OutputT]):
    """What a run produced and what it cost.

    ``status`` is ``completed``, ``failed``, ``cancelled``, ``paused`` (a limit was reached:
    raise it and resume) or ``awaiting_approval`` (a person must decide on a tool call).
    ``output`` is the validated final answer of a completed run, else ``None``; ``reason`` says
    why a run did not complete. ``cost_usd`` is ``None`` when any model call
    had no known price: unknown, not free. A run with status ``awaiting_approval`` lists the
    calls waiting for a person in ``pending``.
    """

    run_id: str
    thread_id: str
    agent: str
    model: str
    status: RunStatus
    output: OutputT | None
    usage: Usage
    cost_usd: float | None
    steps: int
    tool_calls: int
    reason: ErrorInfo | None
    messages: tuple[Message, ...]
    pending: tuple[PendingCall, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the run completed."""
        return self.status == "completed"

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
            output=output if state.status == "completed" else None,
            usage=state.usage,
            cost_usd=state.cost_usd,
            steps=state.step,
            tool_calls=state.tool_calls,
            reason=state.reason,
            messages=tuple(state.own_messages),
            pending=tuple(state.pending.values()),
        )
