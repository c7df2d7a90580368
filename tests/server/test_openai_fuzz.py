"""No request makes the OpenAI-compatible endpoint answer with a server error, or with a
status or a body its OpenAPI schema does not describe: Schemathesis generates requests from
that schema, valid and not, and sends them over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from keel import Agent, KeelSettings, Runtime, tool
from tests.server.openai_app import ServedApp, serve_openai


@tool
def lookup_order(order_id: str) -> dict[str, str]:
    """Find an order by id."""
    return {"order_id": order_id, "status": "shipped"}


# Not "every schema-valid request is accepted": the schema cannot say that the last message
# must be the user's, and such requests get a 400 naming the field, as they should.
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def served() -> Iterator[ServedApp]:
    agent = Agent(name="orders", model="rules", tools=[lookup_order])
    runtime = Runtime(store="memory", settings=KeelSettings.from_environ({}), agents=[agent])
    with serve_openai(runtime) as app:
        yield app


def test_no_request_is_answered_with_a_server_error(served: ServedApp) -> None:
    api = schemathesis.openapi.from_url(served.base_url.removesuffix("/v1") + "/openapi.json")
    operations = [found.ok() for found in api.get_all_operations() if isinstance(found, Ok)]
    assert len(operations) == 3  # /v1/chat/completions, /v1/models, /v1/models/{model}
    for operation in operations:

        @given(case=st.one_of(operation.as_strategy(POSITIVE), operation.as_strategy(NEGATIVE)))
        @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        def answered_as_described(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(checks=CHECKS)

        answered_as_described()
