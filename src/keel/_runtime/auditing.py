"""What the runtime writes to the audit log (:mod:`keel.audit`), and when.

Governance facts come from the journal, right after they are appended: each check round
(``policy.decided``: the point, every check's verdict, the outcome and reason, a digest of the
tool call's arguments), each request for a person (``approval.requested``) and each person's
decision (``approval.decided``, by whom), and each pause for spending or rate limits
(``budget.refused``, ``rate.limited``). The runtime's own API adds budget changes
(``budget.changed``) and deletions (``run.deleted``, ``runs.deleted``, ``thread.deleted``); the
``keel`` command adds key rotations (``keys.rotated``) and its budget changes.

Records carry the run's tenant and user, never arguments or results: a digest of the
arguments proves which ones were decided on without keeping them. An audit record is written
after the journal append it describes; a crash between the two loses the record, not the
fact (the journal keeps it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keel._core.events import ApprovalRequested, CallDecided, ChecksDecided, Event, RunPaused
from keel._core.state import RunState
from keel._runtime.call_guards import GUARDED
from keel.audit import AuditEntry, AuditLog, digest_arguments

__all__ = ["Auditor", "entries_for"]

_PAUSES = {code: "rate.limited" if code == "rate_limited" else "budget.refused" for code in GUARDED}


def _arguments(state: RunState, call_id: str) -> str | None:
    """The digest of a call of the latest turn (answered or not), or ``None``."""
    turn = state.messages[state.turn_index] if state.turn_index >= 0 else None
    for call in getattr(turn, "tool_calls", ()):
        if call.id == call_id:
            return digest_arguments(call.arguments)
    return None


def _entry(state: RunState, action: str, **fields: Any) -> AuditEntry:
    return AuditEntry(
        actor="runtime",
        action=action,
        subject=state.run_id,
        tenant=state.tenant,
        user=fields.pop("user", state.user),
        **fields,
    )


def entries_for(state: RunState, events: Sequence[Event]) -> list[AuditEntry]:
    """The audit entries for ``events``, just appended to the journal of the run in ``state``."""
    found: list[AuditEntry] = []
    for event in events:
        if isinstance(event, ChecksDecided):
            digest = _arguments(state, event.subject) if event.point == "tool_call" else None
            found.append(
                _entry(
                    state,
                    "policy.decided",
                    decision=event.verdict,
                    reason=event.reason,
                    arguments_digest=digest,
                    details={
                        "agent": state.agent,
                        "point": event.point,
                        "subject": event.subject,
                        "step": event.step,
                        "checks": [[r.check, r.verdict] for r in event.results],
                    },
                )
            )
        elif isinstance(event, ApprovalRequested):
            for pending in event.calls:
                found.append(
                    _entry(
                        state,
                        "approval.requested",
                        decision=pending.kind,
                        reason=pending.reason,
                        arguments_digest=digest_arguments(pending.call.arguments),
                        details={"call": pending.call.id, "tool": pending.call.name},
                    )
                )
        elif isinstance(event, CallDecided):
            edited = None if event.arguments is None else digest_arguments(event.arguments)
            found.append(
                _entry(
                    state,
                    "approval.decided",
                    user=event.by,
                    decision=event.decision,
                    reason=event.reason,
                    arguments_digest=edited,
                    details={"call": event.call_id, "run_user": state.user},
                )
            )
        elif isinstance(event, RunPaused) and event.reason.code in _PAUSES:
            found.append(
                _entry(
                    state,
                    _PAUSES[event.reason.code],
                    decision=event.reason.code,
                    reason=event.reason.message,
                )
            )
    return found


class Auditor:
    """Writes the runtime's audit records to one log."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    async def journaled(self, state: RunState, events: Sequence[Event]) -> None:
        """Record what ``events`` (just journaled for ``state``'s run) mean for governance."""
        entries = entries_for(state, events)
        if entries:
            await self.log.append_many(entries)

    async def record(self, action: str, subject: str, **fields: Any) -> None:
        """Record an action of the runtime's API (a budget change, a deletion...)."""
        await self.log.append(AuditEntry(actor="runtime", action=action, subject=subject, **fields))
