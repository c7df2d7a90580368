"""The OpenAI-compatible endpoint, answered without streaming: real HTTP through uvicorn, the
official openai client, a real runtime on a memory store and on SQLite, offline models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from keel import Agent, CheckRequest, CheckResult, KeelSettings, Limits, Runtime, check, tool
from keel.errors import ModelResponseError
from keel.messages import ModelRequest, SystemMessage, ToolCall, UserMessage
from keel.testing import FunctionModel, call
from tests.server.openai_app import Member, ServedApp, bearer_keys, client, serve_openai

NO_MODELS = KeelSettings.from_environ({})
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Where is order 123?"}]


@tool
def lookup_order(order_id: str) -> dict[str, str]:
    """Find an order by id."""
    return {"order_id": order_id, "status": "shipped"}


@tool(requires_approval=True)
def refund_order(order_id: str) -> str:
    """Refund an order."""
    return f"order {order_id} refunded"


class Order(BaseModel):
    order_id: str
    status: str


@check(points=["input"])
def civil(request: CheckRequest) -> CheckResult:
    """Refuse insults."""
    if "idiot" in (request.text or ""):
        return CheckResult.deny("please keep it civil")
    return CheckResult.allow()


def _users_said(request: ModelRequest) -> str:
    """Everything the users said that the model was sent, in order."""
    return " | ".join(m.content for m in request.messages if isinstance(m, UserMessage))


def _look_up_once(request: ModelRequest) -> ToolCall:
    return call("lookup_order", order_id="1")


def _broken(request: ModelRequest) -> str:
    raise RuntimeError("the provider sent garbage")


def _unavailable(request: ModelRequest) -> ModelResponseError:
    return ModelResponseError("the provider sent garbage")


@dataclass
class Models:
    """The offline models of the served agents, to look at what they were asked."""

    recall: FunctionModel = field(
        default_factory=lambda: FunctionModel(_users_said, name="recall", record=True)
    )
    broken: FunctionModel = field(default_factory=lambda: FunctionModel(_broken))
    unavailable: FunctionModel = field(default_factory=lambda: FunctionModel(_unavailable))


def _agents(models: Models) -> list[Agent[Any]]:
    return [
        Agent(name="orders", model="rules", tools=[lookup_order, refund_order]),
        Agent(name="typed", model="rules", tools=[lookup_order], output_type=Order),
        Agent(name="recall", instructions="You remember.", model=models.recall),
        Agent(name="civil", model="rules", checks=[civil]),
        Agent(
            name="short",
            model=FunctionModel(_look_up_once),
            tools=[lookup_order],
            limits=Limits(max_steps=1),
        ),
        Agent(name="broken", model=models.broken),
        Agent(name="unavailable", model=models.unavailable),
    ]


AGENT_NAMES = ["broken", "civil", "orders", "recall", "short", "typed", "unavailable"]

KEYS = {
    "acme-ada": Member(tenant="acme", user="ada", roles=("support",)),
    "acme-bob": Member(tenant="acme", user="bob"),
    "umbrella-ada": Member(tenant="umbrella", user="ada"),
}


@pytest.fixture(scope="module")
def models() -> Models:
    return Models()


# One server per store for the whole module: every test names threads of its own.
@pytest.fixture(scope="module", params=["memory", "sqlite"])
def runtime(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models: Models
) -> Runtime:
    store = "memory" if request.param == "memory" else str(tmp_path_factory.mktemp("db") / "k.db")
    return Runtime(store=store, settings=NO_MODELS, agents=_agents(models))


@pytest.fixture(scope="module")
def served(runtime: Runtime) -> Iterator[ServedApp]:
    with serve_openai(runtime, caller=bearer_keys(KEYS)) as app:
        yield app


@pytest.fixture
def ada(served: ServedApp) -> Iterator[openai.OpenAI]:
    with client(served, api_key="acme-ada") as connected:
        yield connected


def test_an_agent_answers_as_a_chat_completion(
    served: ServedApp, ada: openai.OpenAI, runtime: Runtime
) -> None:
    raw = ada.chat.completions.with_raw_response.create(model="orders", messages=USER)
    completion = raw.parse()

    run_id = raw.headers["x-keel-run-id"]
    assert completion.id == f"chatcmpl-{run_id}"
    assert completion.object == "chat.completion"
    assert completion.model == "orders"
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    # The tool ran on the server; its result is in the answer.
    assert choice.message.content == "Lookup order:\n- order_id: 123\n- status: shipped"
    result = served.call(runtime.result(run_id))
    assert result.output == choice.message.content
    assert result.tool_calls == 1
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == result.usage.input_tokens > 0
    assert completion.usage.completion_tokens == result.usage.output_tokens > 0
    assert completion.usage.total_tokens == result.usage.total_tokens


def test_the_caller_is_who_the_run_is_for(
    served: ServedApp, ada: openai.OpenAI, runtime: Runtime
) -> None:
    raw = ada.chat.completions.with_raw_response.create(model="orders", messages=USER)
    with ada.chat.completions.create(model="orders", messages=USER, stream=True) as chunks:
        streamed = next(chunks).id.removeprefix("chatcmpl-")
    for run_id in (raw.headers["x-keel-run-id"], streamed):
        record = served.call(runtime.store.get_run(run_id))
        assert (record.tenant, record.user) == ("acme", "ada")


def test_an_unknown_api_key_is_refused_in_openai_shape(served: ServedApp) -> None:
    with (
        client(served, api_key="stolen") as stranger,
        pytest.raises(openai.AuthenticationError) as refused,
    ):
        stranger.chat.completions.create(model="orders", messages=USER)
    assert refused.value.body == {
        "message": "unknown API key",
        "type": "authentication_error",
        "param": None,
        "code": None,
    }


def test_a_structured_output_is_answered_as_json(ada: openai.OpenAI) -> None:
    completion = ada.chat.completions.create(model="typed", messages=USER)
    content = completion.choices[0].message.content
    assert content is not None
    assert Order.model_validate(json.loads(content)) == Order(order_id="123", status="shipped")


def test_the_models_are_the_agents(ada: openai.OpenAI) -> None:
    listed = ada.models.list()
    assert [m.id for m in listed.data] == AGENT_NAMES
    assert {(m.object, m.owned_by) for m in listed.data} == {("model", "keel")}
    one = ada.models.retrieve("orders")
    assert (one.id, one.owned_by) == ("orders", "keel")
    with pytest.raises(openai.NotFoundError):
        ada.models.retrieve("gpt-4o")


def test_an_unknown_model_is_not_found_and_the_agents_are_named(ada: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        ada.chat.completions.create(model="gpt-4o", messages=USER)
    assert missing.value.code == "model_not_found"
    assert missing.value.param == "model"
    assert ", ".join(AGENT_NAMES) in missing.value.message


def test_only_the_agents_given_are_served() -> None:
    runtime = Runtime(store="memory", settings=NO_MODELS, agents=_agents(Models()))
    only = {"orders": runtime.agents["orders"]}
    with serve_openai(runtime, agents=only) as app, client(app) as anyone:
        assert [m.id for m in anyone.models.list().data] == ["orders"]
        with pytest.raises(openai.NotFoundError):
            anyone.chat.completions.create(model="typed", messages=USER)


def test_a_thread_remembers_the_conversation(ada: openai.OpenAI) -> None:
    thread = {"thread": "soporte:1"}
    first = ada.chat.completions.create(
        model="recall", messages=[{"role": "user", "content": "I am Ada."}], extra_body=thread
    )
    assert first.choices[0].message.content == "I am Ada."
    # The client resends the conversation, as chat clients do; the thread is what counts.
    second = ada.chat.completions.create(
        model="recall",
        messages=[
            {"role": "user", "content": "I am Ada."},
            {"role": "assistant", "content": "I am Ada."},
            {"role": "user", "content": "Who am I?"},
        ],
        extra_body=thread,
    )
    assert second.choices[0].message.content == "I am Ada. | Who am I?"


def test_the_thread_header_names_the_same_thread(ada: openai.OpenAI) -> None:
    ada.chat.completions.create(
        model="recall",
        messages=[{"role": "user", "content": "I am Ada."}],
        extra_headers={"X-Keel-Thread": "by-header"},
    )
    answer = ada.chat.completions.create(
        model="recall",
        messages=[{"role": "user", "content": "Who am I?"}],
        extra_body={"thread": "by-header"},
    )
    assert answer.choices[0].message.content == "I am Ada. | Who am I?"


def test_tenants_never_share_a_thread_by_its_name(served: ServedApp) -> None:
    thread = {"thread": "shared-name"}
    with client(served, api_key="acme-ada") as ada:
        ada.chat.completions.create(
            model="recall",
            messages=[{"role": "user", "content": "My PIN is 4321."}],
            extra_body=thread,
        )
    with client(served, api_key="umbrella-ada") as other:  # the same user of another tenant
        answer = other.chat.completions.create(
            model="recall", messages=[{"role": "user", "content": "My PIN?"}], extra_body=thread
        )
    assert answer.choices[0].message.content == "My PIN?"
    # A thread is its tenant's, as on /v1/runs: another user of the tenant continues it.
    with client(served, api_key="acme-bob") as bob:
        answer = bob.chat.completions.create(
            model="recall", messages=[{"role": "user", "content": "My PIN?"}], extra_body=thread
        )
    assert answer.choices[0].message.content == "My PIN is 4321. | My PIN?"


def test_without_a_thread_the_earlier_turns_come_as_a_transcript_and_system_is_set_aside(
    ada: openai.OpenAI, models: Models
) -> None:
    ada.chat.completions.create(
        model="recall",
        messages=[
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": "I am Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "developer", "content": "Talk like a pirate."},
            {"role": "user", "content": [{"type": "text", "text": "Who am I?"}]},
        ],
    )
    request = models.recall.requests[-1]
    system = [m.content for m in request.messages if isinstance(m, SystemMessage)]
    users = [m.content for m in request.messages if isinstance(m, UserMessage)]
    assert system == ["You remember."]  # the agent's instructions, only
    assert users == [
        "Earlier in this conversation:\n\nUser: I am Ada.\n\nAssistant: Hello Ada.\n\n"
        "The user's new message:\n\nWho am I?"
    ]
    assert "pirate" not in repr(request.messages)


def test_a_run_that_waits_for_approval_is_not_an_answer(
    served: ServedApp, ada: openai.OpenAI, runtime: Runtime
) -> None:
    refund: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Please refund order 4512"}
    ]
    thread = {"thread": "refunds"}
    with pytest.raises(openai.ConflictError) as waiting:
        ada.chat.completions.create(model="orders", messages=refund, extra_body=thread)
    assert waiting.value.code == "awaiting_approval"
    assert waiting.value.type == "run_not_completed"
    assert "refund_order" in waiting.value.message
    run_id = waiting.value.response.headers["x-keel-run-id"]
    assert run_id in waiting.value.message

    # The waiting run holds its thread: the next message is refused, not queued.
    with pytest.raises(openai.ConflictError) as busy:
        ada.chat.completions.create(model="orders", messages=USER, extra_body=thread)
    assert (busy.value.code, busy.value.param) == ("thread_busy", "thread")
    assert run_id in busy.value.message

    decided = served.call(runtime.approve(run_id, by="ops"))
    assert decided.status == "completed"
    after = ada.chat.completions.create(model="orders", messages=USER, extra_body=thread)
    assert after.choices[0].message.content is not None
    assert "shipped" in after.choices[0].message.content


def test_a_paused_run_is_not_an_answer(ada: openai.OpenAI) -> None:
    with pytest.raises(openai.ConflictError) as paused:
        ada.chat.completions.create(model="short", messages=USER)
    assert paused.value.code == "paused"
    assert "max_steps" in paused.value.message or "step" in paused.value.message


def test_a_run_refused_by_a_check_is_unprocessable(ada: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        ada.chat.completions.create(
            model="civil", messages=[{"role": "user", "content": "You idiot"}]
        )
    assert refused.value.code == "check.denied"
    assert "please keep it civil" in refused.value.message


def test_a_failed_run_is_a_bad_gateway_the_client_does_not_retry(
    served: ServedApp, models: Models
) -> None:
    before = models.broken.calls
    retrying = client(served, api_key="acme-ada", max_retries=2)
    with retrying, pytest.raises(openai.InternalServerError) as failed:
        retrying.chat.completions.create(model="broken", messages=USER)
    assert failed.value.status_code == 502
    assert (failed.value.type, failed.value.code) == ("run_failed", "model_error")
    assert "garbage" in failed.value.message
    assert models.broken.calls == before + 1  # one run: a retry would have started another


def test_a_run_paused_by_an_unavailable_model_is_a_503(served: ServedApp, models: Models) -> None:
    before = models.unavailable.calls
    retrying = client(served, api_key="acme-ada", max_retries=2)
    with retrying, pytest.raises(openai.InternalServerError) as paused:
        retrying.chat.completions.create(model="unavailable", messages=USER)
    assert paused.value.status_code == 503
    assert (paused.value.type, paused.value.code) == ("run_not_completed", "model_unavailable")
    assert models.unavailable.calls == before + 1
