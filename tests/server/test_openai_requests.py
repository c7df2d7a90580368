"""Requests the OpenAI-compatible endpoint refuses: each gets a 4xx in OpenAI's shape naming
the field at fault, never a 500, and starts no run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from keel import Agent, KeelSettings, Runtime
from keel.testing import FunctionModel
from tests.server.openai_app import ServedApp, client, serve_openai

USER: ChatCompletionMessageParam = {"role": "user", "content": "Hi"}
EXPECTED_KEYS = {"message", "type", "param", "code"}
TEXT_HALF_PAIR = {"type": "text", "text": "\udfff"}


def _json(body: object) -> bytes:
    return json.dumps(body).encode()  # escapes what is not ASCII, half pairs too


def _never_called(_: Any) -> str:
    raise AssertionError("a refused request must not reach the model")


@pytest.fixture(scope="module")
def served() -> Iterator[ServedApp]:
    agent = Agent(name="desk", model=FunctionModel(_never_called))
    runtime = Runtime(store="memory", settings=KeelSettings.from_environ({}), agents=[agent])
    with serve_openai(runtime) as app:
        yield app
        runs = app.call(runtime.store.list_runs())
        # Only the request that was accepted on purpose made a run.
        assert [r.thread_id for r in runs] == ["sampling"], "a refused request started a run"


@pytest.fixture(scope="module")
def anyone(served: ServedApp) -> Iterator[openai.OpenAI]:
    with client(served) as connected:
        yield connected


def _refused(anyone: openai.OpenAI, **request: Any) -> openai.BadRequestError:
    request.setdefault("model", "desk")
    with pytest.raises(openai.BadRequestError) as refused:
        anyone.chat.completions.create(**request)
    assert isinstance(refused.value.body, dict)
    assert set(refused.value.body) == EXPECTED_KEYS
    return refused.value


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([{"role": "wizard", "content": "Hi"}], "messages[0].role"),
        ([{"content": "Hi"}], "messages[0].role"),
        (["Hi"], "messages[0]"),
        ([USER, {"role": "tool", "tool_call_id": "c1", "content": "42"}], "messages[1].role"),
        ([{"role": "function", "name": "f", "content": "42"}, USER], "messages[0].role"),
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
                    ],
                },
                USER,
            ],
            "messages[0].tool_calls",
        ),
        ([USER, {"role": "assistant", "content": "Hello"}], "messages[1].role"),
        ([{"role": "user", "content": "   "}], "messages[0].content"),
        ([{"role": "user", "content": None}], "messages[0].content"),
        ([{"role": "user", "content": 42}], "messages[0].content"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "messages[0].content[0]",
        ),
        ([{"role": "user", "content": [{"text": "no type"}]}], "messages[0].content[0]"),
        ([{"role": "system", "content": None}, USER], "messages[0].content"),
    ],
)
def test_a_malformed_conversation_is_refused_naming_the_message(
    anyone: openai.OpenAI, messages: list[Any], param: str
) -> None:
    assert _refused(anyone, messages=messages).param == param


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"n": 2}, "n"),
        ({"n": 0}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            "tools",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream_options": {"include_usage": "sometimes"}}, "stream_options.include_usage"),
        ({"extra_body": {"frobnicate": True}}, "frobnicate"),
        ({"extra_body": {"thread": ""}}, "thread"),
        ({"extra_body": {"thread": "a\nb"}}, "thread"),
        ({"extra_body": {"thread": "x" * 129}}, "thread"),
        ({"extra_body": {"thread": "a/b"}}, "thread"),
        ({"extra_body": {"thread": 7}}, "thread"),
        ({"extra_body": {"thread": "a"}, "extra_headers": {"X-Keel-Thread": "b"}}, "thread"),
        ({"stop": 5}, "stop"),
    ],
)
def test_a_parameter_an_agent_cannot_honour_is_refused_by_name(
    anyone: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    assert _refused(anyone, messages=[USER], **options).param == param


def test_a_missing_parameter_is_named(anyone: openai.OpenAI) -> None:
    refused = _refused(anyone, messages=openai.omit)
    assert refused.param == "messages"
    assert "Missing required parameter" in refused.message
    with pytest.raises(openai.BadRequestError) as no_model:
        anyone.chat.completions.create(model=openai.omit, messages=[USER])  # type: ignore[call-overload]
    assert no_model.value.param == "model"


def test_sampling_parameters_are_accepted_and_ignored(served: ServedApp) -> None:
    # Reaching the model proves they were accepted; the model refuses to answer on purpose.
    with client(served) as anyone, pytest.raises(openai.InternalServerError) as failed:
        anyone.chat.completions.create(
            model="desk",
            messages=[USER],
            temperature=0.2,
            top_p=0.9,
            max_tokens=50,
            seed=1,
            stop=["\n"],
            user="someone",
            metadata={"k": "v"},
            tool_choice="auto",
            response_format={"type": "text"},
            extra_body={"thread": "sampling"},
        )
    assert failed.value.code == "model_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'"hello"', None),
        (b'{"model": "desk", "messages": "Hi"}', "messages"),
        (b'{"model": 7, "messages": []}', "model"),
        (b"[" * 100_000, None),
        # JSON may escape half a surrogate pair, which no response or journal can carry.
        (
            _json({"model": "desk", "messages": [{"role": "user", "content": "a\ud800"}]}),
            "messages[0].content",
        ),
        (
            _json({"model": "desk", "messages": [{"role": "user", "content": [TEXT_HALF_PAIR]}]}),
            "messages[0].content",
        ),
        (_json({"model": "\ud800", "messages": [USER]}), "model"),
        (_json({"model": "desk", "thread": "\udfff", "messages": [USER]}), "thread"),
    ],
)
def test_a_body_no_openai_client_would_send_is_a_400(
    served: ServedApp, body: bytes, param: str | None
) -> None:
    answer = httpx.post(
        f"{served.base_url}/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert set(error) == EXPECTED_KEYS
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
