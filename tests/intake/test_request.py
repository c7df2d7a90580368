"""Reading a message body as a request for a run: what is accepted, and each way a body is
refused, with a code and a reason that says what to send instead."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keel.intake import PoisonMessage, RunRequest, parse_request
from keel.intake._request import derived_key

AGENTS = ("support", "billing")


def parse(body: bytes | dict[str, Any], **options: Any) -> RunRequest:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_request(data, agents=AGENTS, max_input_chars=options.pop("limit", 100), **options)


def test_a_full_body_is_read_field_by_field() -> None:
    request = parse(
        {
            "agent": "support",
            "input": "Where is order 1043?",
            "thread": "customer-42",
            "tenant": "acme",
            "user": "ana",
            "roles": ["agent", "admin"],
            "idempotency_key": "q-1043",
        },
        default_key="message-7",
    )
    assert request == RunRequest(
        agent="support",
        input="Where is order 1043?",
        thread="customer-42",
        tenant="acme",
        user="ana",
        roles=("agent", "admin"),
        idempotency_key="q-1043",
    )


def test_the_message_id_is_the_key_when_the_body_names_none() -> None:
    assert parse({"agent": "billing", "input": "Hi"}, default_key="m-1").idempotency_key == "m-1"
    assert parse({"agent": "billing", "input": "Hi"}).idempotency_key is None


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (b"\xff\xfe not text", "not_json", "not JSON"),
        (b"{'agent': 'support'}", "not_json", "send a JSON object"),
        (b"[1, 2]", "not_an_object", "JSON list, not an object"),
        (b'"support"', "not_an_object", "JSON str"),
        ({"input": "Hi"}, "invalid_field", "'agent' must be a non-empty string, got missing"),
        ({"agent": "support"}, "invalid_field", "'input' must be a non-empty string"),
        ({"agent": "support", "input": "  "}, "invalid_field", "'input' must be a non-empty"),
        (
            {"agent": 7, "input": "Hi"},
            "invalid_field",
            "'agent' must be a non-empty string, got int",
        ),
        ({"agent": "support", "input": "Hi", "thread": 42}, "invalid_field", "'thread'"),
        ({"agent": "support", "input": "Hi", "roles": "admin"}, "invalid_field", "list of strings"),
        (
            {"agent": "support", "input": "Hi", "thraed": "t"},
            "invalid_field",
            "unknown field 'thraed'",
        ),
        ({"agent": "sales", "input": "Hi"}, "unknown_agent", "known: billing, support"),
        ({"agent": "support", "input": "x" * 101}, "input_too_long", "101 characters; at most 100"),
    ],
)
def test_a_body_that_cannot_be_a_run_is_refused_with_its_reason(
    body: bytes | dict[str, Any], code: str, reason: str
) -> None:
    with pytest.raises(PoisonMessage) as refused:
        parse(body)
    assert refused.value.code == code
    assert reason in refused.value.reason


def test_the_longest_input_is_accepted() -> None:
    assert len(parse({"agent": "support", "input": "x" * 100}).input) == 100


def test_a_reason_is_one_line_without_passwords() -> None:
    poison = PoisonMessage(
        "refused", "cannot reach\npostgresql://keel:hunter2@db/keel " + "x" * 2000
    )
    assert "\n" not in poison.reason
    assert "hunter2" not in poison.reason
    assert len(poison.reason) == 1000


def test_a_message_id_too_long_for_a_key_is_hashed() -> None:
    assert derived_key("m" * 255) == "m" * 255
    hashed = derived_key("m" * 256)
    assert hashed.startswith("sha256:")
    assert hashed == derived_key("m" * 256)
    assert hashed != derived_key("m" * 257)
