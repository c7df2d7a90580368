"""Replies: what a message that asked for one gets once its run stops, and the outbox record
that keeps the question until then.

A message asks for a reply with a reply destination (AMQP ``reply_to``, the NATS header
``Keel-Reply-To``) and, optionally, a correlation id. Accepting the message writes an outbox
record (a small JSON message on the intake's own outbox queue or subject) before the message
is acknowledged. A watcher consumes the outbox: it waits a while for the run to stop, then
publishes the reply and acknowledges the record, or puts the record back to look again later.
So a reply survives the intake restarting while the run goes on: the record stays on the
broker until the reply is out. It is published at least once: a crash between publishing the
reply and acknowledging the record publishes it again, with the same run id and correlation id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json

from keel import RunResult, Runtime

__all__ = ["OutboxRecord", "rejected_reply", "run_reply", "stopped"]

# Not stopped yet: a reply waits for every other status.
_UNDER_WAY = ("queued", "running")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRecord:
    """A reply owed: to ``reply_to``, for run ``run_id``, with the request's
    ``correlation_id``."""

    run_id: str
    reply_to: str
    correlation_id: str | None = None

    def encode(self) -> bytes:
        """The record as the outbox keeps it."""
        return json.dumps(
            {
                "run_id": self.run_id,
                "reply_to": self.reply_to,
                "correlation_id": self.correlation_id,
            }
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> OutboxRecord | None:
        """The record in ``body``; ``None`` for anything else (it is dropped, with a log)."""
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        run_id, reply_to = data.get("run_id"), data.get("reply_to")
        correlation_id = data.get("correlation_id")
        if not isinstance(run_id, str) or not isinstance(reply_to, str) or not reply_to:
            return None
        if correlation_id is not None and not isinstance(correlation_id, str):
            return None
        return cls(run_id=run_id, reply_to=reply_to, correlation_id=correlation_id)


async def stopped(runtime: Runtime, run_id: str, *, within_s: float) -> RunResult[Any] | None:
    """The run's result once it stopped (completed, failed, cancelled, paused or waiting for
    a person), waiting up to ``within_s``; ``None`` while it is still queued or running."""
    result: RunResult[Any] = await runtime.wait(run_id, timeout_s=within_s)
    return None if result.status in _UNDER_WAY else result


def run_reply(result: RunResult[Any]) -> bytes:
    """The reply for a run that stopped: its id, status, output (a completed run's) and the
    reason it did not complete."""
    reason = result.reason
    return to_json(
        {
            "run_id": result.run_id,
            "agent": result.agent,
            "thread": result.thread_id,
            "status": result.status,
            "output": result.output_or_none,
            "reason": None if reason is None else {"code": reason.code, "message": reason.message},
        },
        fallback=str,
    )


def rejected_reply(code: str, reason: str) -> bytes:
    """The reply for a message that did not become a run (it went to the dead letters)."""
    return json.dumps(
        {"run_id": None, "status": "rejected", "reason": {"code": code, "message": reason}}
    ).encode()
