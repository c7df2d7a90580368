"""JSON encoding of events and messages. No pickle, no class reconstruction from data:
every payload is validated against the explicit schema of a registered event kind
(:mod:`keel._core.eventbase`), chosen by its ``type`` tag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from keel._core import events as _events  # noqa: F401 - registers the built-in kinds
from keel._core.eventbase import Event, registry
from keel._core.messages import Message

__all__ = [
    "decode_event",
    "decode_message",
    "decode_messages",
    "encode_event",
    "encode_message",
    "encode_messages",
    "event_to_dict",
]

_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)
_MESSAGES: TypeAdapter[list[Message]] = TypeAdapter(list[Message])


def encode_event(event: Event) -> bytes:
    """Serialize an event to compact JSON bytes."""
    data: bytes = registry.adapter(type(event)).dump_json(event)
    return data


def decode_event(data: str | bytes) -> Event:
    """Parse and validate an event; raises ``pydantic.ValidationError`` on bad data,
    including a ``type`` tag no registered kind has."""
    event: Event = registry.union().validate_json(data)
    return event


def event_to_dict(event: Event) -> dict[str, Any]:
    """An event as plain JSON-compatible data (for display and diffing)."""
    result: dict[str, Any] = registry.adapter(type(event)).dump_python(event, mode="json")
    return result


def encode_message(message: Message) -> bytes:
    """Serialize a message to compact JSON bytes."""
    return _MESSAGE.dump_json(message)


def decode_message(data: str | bytes) -> Message:
    """Parse and validate a message."""
    return _MESSAGE.validate_json(data)


def encode_messages(messages: Sequence[Message]) -> bytes:
    """Serialize a list of messages."""
    return _MESSAGES.dump_json(list(messages))


def decode_messages(data: str | bytes) -> list[Message]:
    """Parse and validate a list of messages."""
    return _MESSAGES.validate_json(data)
