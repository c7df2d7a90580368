"""The journal's event types.

A run is an append-only sequence of these events; its state is a fold over them
(:mod:`keel._core.fold`). Each event type carries a ``type`` tag and a schema version ``v``.
Adding a field with a default is backwards compatible; anything else bumps ``v`` and adds an
upgrade in :mod:`keel._core.codec`. Every kind is registered in one registry
(:mod:`keel._core.eventbase`): a new kind is one class, not an edit to every reader.
"""

from keel._core.delegation import ChildRun, ToolCallWaiting
from keel._core.eventbase import FINISHED, OPEN, ErrorInfo, Event, ForkCopy, RunStatus, event_kind
from keel._core.events_checks import ChecksDecided
from keel._core.events_handoff import HandedOff
from keel._core.events_model import ModelFailed, ModelResponded, ModelSwitched, OutputRejected
from keel._core.events_run import (
    CancelRequested,
    RunDequeued,
    RunFinished,
    RunPaused,
    RunQueued,
    RunResumed,
    RunStarted,
)
from keel._core.events_tools import (
    ApprovalRequested,
    CallDecided,
    Decision,
    PendingCall,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
)

__all__ = [
    "FINISHED",
    "OPEN",
    "ApprovalRequested",
    "CallDecided",
    "CancelRequested",
    "ChecksDecided",
    "ChildRun",
    "Decision",
    "ErrorInfo",
    "Event",
    "ForkCopy",
    "HandedOff",
    "ModelFailed",
    "ModelResponded",
    "ModelSwitched",
    "OutputRejected",
    "PendingCall",
    "RunDequeued",
    "RunFinished",
    "RunPaused",
    "RunQueued",
    "RunResumed",
    "RunStarted",
    "RunStatus",
    "ToolCallFinished",
    "ToolCallInDoubt",
    "ToolCallStarted",
    "ToolCallWaiting",
    "event_kind",
]
