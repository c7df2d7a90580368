"""A run's summary row, as the store keeps it beside the journal."""

from __future__ import annotations

from typing import Any

from keel._core.state import RunState
from keel.ports import RunRecord

__all__ = ["record_of"]

_PREVIEW = 200


def _cut(text: str) -> str:
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 3] + "..."


def _preview(value: Any) -> str | None:
    if value is None:
        return None
    return _cut(value if isinstance(value, str) else str(value))


def record_of(state: RunState, last_seq: int) -> RunRecord:
    """The summary row of a run in ``state``."""
    reason = state.reason
    return RunRecord(
        run_id=state.run_id,
        thread_id=state.thread_id,
        agent=state.agent,
        model=state.model,
        status=state.status,
        created_at=state.started_at,
        updated_at=state.updated_at,
        input=_cut(state.input),
        steps=state.step,
        tool_calls=state.tool_calls,
        input_tokens=state.usage.input_tokens,
        output_tokens=state.usage.output_tokens,
        cost_usd=state.cost_usd,
        output_preview=_preview(state.output),
        reason_code=reason.code if reason else None,
        reason=reason.message if reason else None,
        last_seq=last_seq,
        holds_thread=state.holds_thread,
        tenant=state.tenant,
        user=state.user,
        tools=_tools(state),
    )


def _tools(state: RunState) -> tuple[str, ...]:
    """The tools the run called (started), each once, sorted: what ``--tool`` filters on."""
    calls = state.started_calls
    if not calls:
        return ()
    return tuple(sorted({call.name for call in calls}))
