"""The journal's JSON encoding: round trips, explicit versions, and refusal of unknown data."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from keel._core.codec import (
    decode_event,
    decode_messages,
    encode_event,
    encode_messages,
    event_to_dict,
)
from keel._core.events import ErrorInfo as Info
from keel._core.events import Event, RunPaused
from keel._core.messages import (
    AssistantMessage,
    Message,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from tests.core.strategies import later_events, run_started


@settings(max_examples=300, deadline=None)
@given(run_started | later_events)
def test_every_event_round_trips_through_json(event: Event) -> None:
    assert decode_event(encode_event(event)) == event


@settings(max_examples=100, deadline=None)
@given(run_started | later_events)
def test_every_event_is_tagged_with_its_type_and_version(event: Event) -> None:
    data = json.loads(encode_event(event))
    assert data["type"] == event.type
    assert data["v"] == 1
    assert event_to_dict(event) == data


def test_messages_round_trip() -> None:
    messages: list[Message] = [
        UserMessage(content="Where is order 123?"),
        AssistantMessage(tool_calls=(ToolCall(id="c", name="lookup", arguments="{}"),)),
        ToolResultMessage(tool_call_id="c", name="lookup", content="shipped", is_error=False),
    ]
    assert decode_messages(encode_messages(messages)) == messages


@pytest.mark.parametrize(
    "data",
    [
        '{"type": "run_paused", "v": 1}',  # a required field is missing
        '{"type": "unheard_of", "v": 1}',  # no such event type
        '{"type": "run_paused", "v": 2, "reason": {"code": "x", "message": "y"}}',  # future version
        '{"__class__": "os.system", "args": ["rm -rf /"]}',  # no class reconstruction, ever
        "not json",
    ],
)
def test_data_that_fits_no_schema_is_refused(data: str) -> None:
    with pytest.raises(ValidationError):
        decode_event(data)


def test_a_known_event_decodes_exactly() -> None:
    data = '{"type": "run_paused", "v": 1, "reason": {"code": "limit.max_steps", "message": "m"}}'
    assert decode_event(data) == RunPaused(reason=Info(code="limit.max_steps", message="m"))
