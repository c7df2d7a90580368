"""Which journal events make webhooks, and the payload of each, built from the journal.

The payload is what the journal says at the event's position (the run's state folded up to
it), so every attempt of a delivery sends the same bytes, whenever it is made. The journal is
already scrubbed of the runtime's secrets (they are masked before events apply). Tool call
arguments are left out of ``approval.requested``: a person reads them where they decide.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from keel._core.eventbase import Event
from keel._core.events import ApprovalRequested, RunFinished, RunPaused
from keel._core.fold import fold
from keel.ports import RunRecord
from keel.webhooks._config import Webhook
from keel.webhooks._outbox import Delivery, delivery_id

__all__ = ["deliveries_for", "event_type_of", "payload"]


def event_type_of(event: Event) -> str | None:
    """The webhook event a journal event makes, if any."""
    if isinstance(event, RunFinished):
        return f"run.{event.status}"
    if isinstance(event, ApprovalRequested):
        return "approval.requested"
    if isinstance(event, RunPaused):
        return "run.paused"
    return None


def deliveries_for(
    record: RunRecord,
    events: Sequence[Event],
    first_seq: int,
    endpoints: Sequence[Webhook],
    *,
    horizon: float,
    now: float,
) -> list[Delivery]:
    """The deliveries ``events`` (numbered from ``first_seq``) of ``record``'s run make,
    one per event and endpoint that wants it. Events from before ``horizon`` make none: the
    outbox did not exist then, or already dealt with them and forgot."""
    made = []
    for offset, event in enumerate(events):
        kind = event_type_of(event)
        if kind is None or event.at < horizon:
            continue
        seq = first_seq + offset
        for endpoint in endpoints:
            if endpoint.wants(kind, record.tenant):
                made.append(
                    Delivery(
                        id=delivery_id(record.run_id, seq, endpoint.name),
                        endpoint=endpoint.name,
                        event_type=kind,
                        run_id=record.run_id,
                        seq=seq,
                        next_attempt_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
    return made


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def payload(delivery: Delivery, journal: Sequence[Event]) -> bytes:
    """The JSON body of ``delivery``: ``type``, ``timestamp`` and ``data`` (the run as of the
    event), from the run's ``journal``."""
    upto = list(journal[: delivery.seq])
    state = fold(upto)
    event = upto[-1]
    reason = state.reason
    data: dict[str, Any] = {
        "run_id": state.run_id,
        "agent": state.agent,
        "thread": state.thread_id,
        "tenant": state.tenant,
        "user": state.user,
        "status": state.status,
        "reason": None if reason is None else {"code": reason.code, "message": reason.message},
        "output": state.output if isinstance(event, RunFinished) else None,
        "usage": {
            "requests": state.usage.requests,
            "input_tokens": state.usage.input_tokens,
            "output_tokens": state.usage.output_tokens,
        },
        "cost_usd": state.cost_usd,
        "steps": state.step,
        "created_at": _iso(state.started_at),
        "at": _iso(event.at),
        "seq": delivery.seq,
    }
    if isinstance(event, ApprovalRequested):
        data["pending"] = [
            {
                "id": pending.call.id,
                "tool": pending.call.name,
                "kind": pending.kind,
                "reason": pending.reason,
            }
            for pending in event.calls
        ]
    body = {"type": delivery.event_type, "timestamp": _iso(event.at), "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()
