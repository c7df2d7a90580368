"""What models are sent and answer: messages, requests, responses, stream pieces and usage.

Everything a custom :class:`keel.Model` (or a test double) needs to read a request and build
an answer.
"""

from keel._core.messages import (
    AssistantMessage,
    Attempt,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamComplete,
    StreamEvent,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from keel._core.usage import Usage

__all__ = [
    "AssistantMessage",
    "Attempt",
    "Message",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "StreamComplete",
    "StreamEvent",
    "SystemMessage",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "ToolResultMessage",
    "Usage",
    "UserMessage",
]
