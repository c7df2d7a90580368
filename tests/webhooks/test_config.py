"""Endpoints are checked when they are made, and never show their secret or their URL."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from keel.errors import ConfigurationError
from keel.webhooks import DEFAULT_EVENTS, Webhook, Webhooks, new_secret

SECRET = new_secret()


def test_an_endpoint_gets_every_event_but_pauses_by_default() -> None:
    endpoint = Webhook("https://example.com/hooks/keel?token=abc", SECRET)
    assert endpoint.events == DEFAULT_EVENTS
    assert "run.paused" not in endpoint.events
    assert endpoint.name == "example.com/hooks/keel"
    assert isinstance(endpoint.secret, SecretStr)
    assert endpoint.wants("run.completed", "acme")


def test_its_repr_shows_neither_the_secret_nor_the_url() -> None:
    endpoint = Webhook("https://user:pw@example.com/h?token=abc", SECRET)
    shown = repr(endpoint) + repr(Webhooks([endpoint]))
    for hidden in (SECRET, SECRET[6:], "token=abc", "pw@"):
        assert hidden not in shown


@pytest.mark.parametrize("url", ["ftp://example.com/h", "example.com/h", "https:///h", ""])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="http:// or https:// URL"):
        Webhook(url, SECRET)


def test_unknown_events_are_named() -> None:
    with pytest.raises(ConfigurationError, match=r"got run\.exploded"):
        Webhook("https://example.com/h", SECRET, events={"run.completed", "run.exploded"})
    with pytest.raises(ConfigurationError, match="got none"):
        Webhook("https://example.com/h", SECRET, events=set())


def test_a_tenant_filter_keeps_to_one_tenant() -> None:
    endpoint = Webhook("https://example.com/h", SECRET, events={"run.failed"}, tenant="acme")
    assert endpoint.wants("run.failed", "acme")
    assert not endpoint.wants("run.failed", "globex")
    assert not endpoint.wants("run.completed", "acme")


def test_two_endpoints_need_distinct_names() -> None:
    one = Webhook("https://example.com/h?a=1", SECRET)
    two = Webhook("https://example.com/h?a=2", SECRET)
    with pytest.raises(ConfigurationError, match="distinct names"):
        Webhooks([one, two])
    Webhooks([one, Webhook("https://example.com/h?a=2", SECRET, name="second")])


def test_bad_numbers_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="max_attempts must be 1 or more"):
        Webhooks([], max_attempts=0)
    with pytest.raises(ConfigurationError, match="timeout_s must be a positive number"):
        Webhooks([], timeout_s=0)
