"""Receivers check a webhook with verify_signature: it passes what the sender signed, and
says what is wrong with anything else."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from keel.errors import ConfigurationError
from keel.webhooks import WebhookVerificationError, new_secret, sign, verify_signature
from keel.webhooks._signing import signed_headers

NOW = 1_700_000_000
BODY = b'{"type":"run.completed","data":{"run_id":"run_1"}}'


@pytest.fixture
def secret() -> str:
    return new_secret()


def test_a_signed_request_passes(secret: str) -> None:
    headers = signed_headers(secret, "msg_1", NOW, BODY)
    verify_signature(secret, headers, BODY, now=NOW + 10)
    verify_signature(SecretStr(secret), {k.upper(): v for k, v in headers.items()}, BODY, now=NOW)


def test_a_tampered_body_fails(secret: str) -> None:
    headers = signed_headers(secret, "msg_1", NOW, BODY)
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        verify_signature(secret, headers, BODY.replace(b"run_1", b"run_2"), now=NOW)


def test_a_changed_id_fails(secret: str) -> None:
    headers = {**signed_headers(secret, "msg_1", NOW, BODY), "webhook-id": "msg_2"}
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        verify_signature(secret, headers, BODY, now=NOW)


def test_an_old_timestamp_fails_as_a_possible_replay(secret: str) -> None:
    headers = signed_headers(secret, "msg_1", NOW, BODY)
    with pytest.raises(WebhookVerificationError, match=r"too old .* replay"):
        verify_signature(secret, headers, BODY, now=NOW + 301)
    verify_signature(secret, headers, BODY, now=NOW + 301, tolerance_s=600)


def test_a_timestamp_from_the_future_fails(secret: str) -> None:
    headers = signed_headers(secret, "msg_1", NOW + 3600, BODY)
    with pytest.raises(WebhookVerificationError, match="far in the future"):
        verify_signature(secret, headers, BODY, now=NOW)


def test_the_wrong_secret_fails(secret: str) -> None:
    headers = signed_headers(new_secret(), "msg_1", NOW, BODY)
    with pytest.raises(WebhookVerificationError, match="secret is not the sender's"):
        verify_signature(secret, headers, BODY, now=NOW)


def test_any_of_several_signatures_may_match_while_a_secret_is_rotated(secret: str) -> None:
    old = sign(new_secret(), "msg_1", NOW, BODY)
    headers = signed_headers(secret, "msg_1", NOW, BODY)
    headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"
    verify_signature(secret, headers, BODY, now=NOW)


def test_a_missing_header_or_malformed_timestamp_is_named(secret: str) -> None:
    headers = signed_headers(secret, "msg_1", NOW, BODY)
    del headers["webhook-id"]
    with pytest.raises(WebhookVerificationError, match="no webhook-id header"):
        verify_signature(secret, headers, BODY, now=NOW)
    headers = {**signed_headers(secret, "msg_1", NOW, BODY), "webhook-timestamp": "soon"}
    with pytest.raises(WebhookVerificationError, match="whole seconds"):
        verify_signature(secret, headers, BODY, now=NOW)


def test_the_signature_is_the_standard_webhooks_one() -> None:
    # The example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_a_short_or_malformed_secret_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigurationError, match="at least 16 characters"):
        sign("short", "msg_1", NOW, BODY)
    with pytest.raises(ConfigurationError, match="base64") as caught:
        sign("whsec_not*base64*at*all!!", "msg_1", NOW, BODY)
    assert "not*base64" not in str(caught.value)
