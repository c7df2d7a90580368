"""What the runtime writes to the audit log (:mod:`keel.audit`), and when.

Governance facts come from the journal, right after they are appended: each check round
(``policy.decided``: the point, every check's verdict, the outcome and reason, a digest of the
tool call's arguments), each request for a person (``approval.requested``) and each person's
decision (``approval.decided``, by whom), and each pause for spending or rate limits
(``budget.refused``, ``rate.limited``). The runtime's own API adds budget changes
(``budget.changed``) and deletions (``run.deleted``, ``runs.deleted``, ``thread.deleted``); the
``keel`` command adds key rotations (``keys.rotated``) and its budget changes.

Records carry the run's tenant and user, never arguments or results: a digest of the
arguments proves which ones were decided on without keeping them. Audit records are written
after the journal appends they describe: a driver's are held until it stops driving the run
(it finishes, pauses or waits for a person), then written in one append, so a run's decisions
cost one audit write per stretch of driving rather than one per step; other writers' (people's
decisions, cancels) right away. A crash in between loses records, not facts: the journal
keeps them.
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
    """Writes the runtime's audit records to one log (a journal hook of the kernel)."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._held: list[AuditEntry] = []

    async def journaled(self, state: RunState, events: Sequence[Event]) -> None:
        """Make the entries for ``events`` (just journaled for ``state``'s run); they are
        written at the next :meth:`flush`."""
        self._held.extend(entries_for(state, events))

    async def flush(self) -> None:
        """Write the entries held, in one append."""
        if self._held:
            held, self._held = self._held, []
            await self.log.append_many(held)

    async def record(self, action: str, subject: str, **fields: Any) -> None:
        """Record an action of the runtime's API (a budget change, a deletion...)."""
        await self.log.append(AuditEntry(actor="runtime", action=action, subject=subject, **fields))
