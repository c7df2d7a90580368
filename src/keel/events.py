"""The journal's event types, and what following a run yields.

Every run is an append-only sequence of these events; ``Runtime.events(run_id)`` yields them
(as :class:`RunEvent`, numbered by ``seq``) as they become durable, and ``Runtime.steps``,
``replay``, ``fork`` and ``diff`` read them. New kinds are registered with
:func:`event_kind`; their ``fold`` gets the :class:`RunState`, ``fork`` a :class:`ForkCopy`
and ``place`` a :class:`StepBuilder`.
"""

from keel._core.checks import CheckPoint, CheckRecord, CheckRequest, CheckResult, Verdict
from keel._core.eventbase import ForkCopy
from keel._core.events import (
    ApprovalRequested,
    CallDecided,
    CancelRequested,
    ChecksDecided,
    ChildRun,
    Decision,
    ErrorInfo,
    Event,
    HandedOff,
    ModelFailed,
    ModelResponded,
    ModelSwitched,
    OutputRejected,
    PendingCall,
    RunDequeued,
    RunFinished,
    RunPaused,
    RunQueued,
    RunResumed,
    RunStarted,
    RunStatus,
    ToolCallFinished,
    ToolCallInDoubt,
    ToolCallStarted,
    ToolCallWaiting,
    event_kind,
)
from keel._core.state import RunState
from keel._core.steps import Difference, RunDiff, Step, StepBuilder, ToolStep
from keel._runtime.stream import RunDelta, RunEvent

__all__ = [
    "ApprovalRequested",
    "CallDecided",
    "CancelRequested",
    "CheckPoint",
    "CheckRecord",
    "CheckRequest",
    "CheckResult",
    "ChecksDecided",
    "ChildRun",
    "Decision",
    "Difference",
    "ErrorInfo",
    "Event",
    "ForkCopy",
    "HandedOff",
    "ModelFailed",
    "ModelResponded",
    "ModelSwitched",
    "OutputRejected",
    "PendingCall",
    "RunDelta",
    "RunDequeued",
    "RunDiff",
    "RunEvent",
    "RunFinished",
    "RunPaused",
    "RunQueued",
    "RunResumed",
    "RunStarted",
    "RunState",
    "RunStatus",
    "Step",
    "StepBuilder",
    "ToolCallFinished",
    "ToolCallInDoubt",
    "ToolCallStarted",
    "ToolCallWaiting",
    "ToolStep",
    "Verdict",
    "event_kind",
]
