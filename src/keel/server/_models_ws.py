"""What a WebSocket client sends: one JSON object per message, chosen by its ``type``.

Every message may carry an ``id`` of the client's choosing; the answers to it repeat it as
``ref``, so a client can match them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from keel.server._models_more import CallId, Person, Reason
from keel.server._models_runs import RUN_ID_PATTERN, CreateRun

__all__ = [
    "ClientMessage",
    "WsAuth",
    "WsCancel",
    "WsDecision",
    "WsFollow",
    "WsStart",
    "client_message",
]

_STRICT = ConfigDict(extra="forbid")
ClientRef = Annotated[str, StringConstraints(max_length=200)]
RunIdText = Annotated[str, StringConstraints(pattern=RUN_ID_PATTERN)]


class WsAuth(BaseModel):
    """The API key, for clients that cannot set headers (browsers): the first message."""

    model_config = _STRICT

    type: Literal["auth"]
    id: ClientRef | None = None
    api_key: Annotated[str, StringConstraints(min_length=1, max_length=300)]


class WsStart(CreateRun):
    """Start a run on a thread, as ``POST /v1/runs`` does, and follow it on this socket
    (``background`` and ``wait`` do not apply: the socket always follows)."""

    type: Literal["message"]
    id: ClientRef | None = None


class WsDecision(BaseModel):
    """Approve (``arguments``: with these instead) or reject (with a ``reason``) a pending
    call of a run; the socket then follows the run on."""

    model_config = _STRICT

    type: Literal["approve", "reject"]
    id: ClientRef | None = None
    run_id: RunIdText
    call_id: CallId | None = None
    arguments: dict[str, Any] | None = None
    reason: Reason | None = None
    by: Person | None = None


class WsCancel(BaseModel):
    """Cancel a run."""

    model_config = _STRICT

    type: Literal["cancel"]
    id: ClientRef | None = None
    run_id: RunIdText
    reason: Reason | None = None


class WsFollow(BaseModel):
    """Follow a run on this socket, from after event ``after``."""

    model_config = _STRICT

    type: Literal["follow"]
    id: ClientRef | None = None
    run_id: RunIdText
    after: int = Field(default=0, ge=0, le=2**62)


ClientMessage = Annotated[
    WsAuth | WsStart | WsDecision | WsCancel | WsFollow, Field(discriminator="type")
]
client_message: TypeAdapter[WsAuth | WsStart | WsDecision | WsCancel | WsFollow] = TypeAdapter(
    ClientMessage
)
