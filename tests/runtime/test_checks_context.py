"""What checks are told about a run (who it is for, the called tool, the calls before) and
the checks of the final answer: redact it, send it back, or let a person decide."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keel import Agent, CheckRequest, CheckResult, KeelSettings, Runtime, UsageError, check, tool
from keel.events import ChecksDecided
from keel.messages import UserMessage
from keel.testing import MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


@tool(side_effects="read")
def lookup(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: shipped"


@tool
def delete(order_id: str) -> str:
    """Delete an order."""
    return f"deleted {order_id}"


async def test_checks_see_the_tenant_user_roles_and_the_tools_side_effects(
    store: MemoryStore,
) -> None:
    seen: list[tuple[str | None, str | None, frozenset[str], str | None]] = []

    @check(points=["tool_call"])
    def spy(request: CheckRequest) -> CheckResult:
        seen.append((request.tenant, request.user, request.roles, request.side_effects))
        return CheckResult.allow()

    model = ScriptedModel([call("lookup", order_id="1"), call("delete", order_id="1"), "done"])
    agent = Agent(name="desk", model=model, tools=[lookup, delete], checks=[spy])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    result = await runtime.run(
        agent, "clean up", tenant="acme", user="ann", roles=["viewer", "agent", "viewer"]
    )

    assert result.status == "completed"
    roles = frozenset({"agent", "viewer"})
    assert seen == [("acme", "ann", roles, "read"), ("acme", "ann", roles, "write")]
    state = await runtime.load_state(result.run_id)
    assert (state.tenant, state.user, state.roles) == ("acme", "ann", ("agent", "viewer"))


async def test_previous_calls_count_earlier_turns_and_this_turns_allowed_calls(
    store: MemoryStore,
) -> None:
    counts: list[int] = []

    @check(points=["tool_call"])
    def at_most_two_deletes(request: CheckRequest) -> CheckResult:
        done = sum(1 for c in request.previous_calls if c.name == "delete")
        counts.append(done)
        if request.call is not None and request.call.name == "delete" and done >= 2:
            return CheckResult.deny("no more than 2 deletes per run")
        return CheckResult.allow()

    model = ScriptedModel(
        [
            call("delete", order_id="1"),
            [call("delete", order_id="2"), call("delete", order_id="3")],
            call("delete", order_id="4"),
            "done",
        ]
    )
    agent = Agent(name="desk", model=model, tools=[delete], checks=[at_most_two_deletes])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    result = await runtime.run(agent, "delete them all")

    assert counts == [0, 1, 2, 2]
    verdicts = [e.verdict for e in await store.load(result.run_id) if isinstance(e, ChecksDecided)]
    assert verdicts == ["allow", "allow", "deny", "deny"]


async def test_an_output_check_redacts_the_final_answer_and_the_thread_keeps_it(
    store: MemoryStore,
) -> None:
    @check(points=["output"])
    def no_cards(request: CheckRequest) -> CheckResult:
        assert request.text is not None
        return CheckResult.modify(request.text.replace("4111", "****"), "card number")

    agent = Agent(name="desk", model=ScriptedModel(["card 4111", "ok"]), checks=[no_cards])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    result = await runtime.run(agent, "my card?", thread="t1")

    assert result.output == "card ****"
    history = await store.thread_history("t1")
    assert "4111" not in repr(history.messages)
    assert (await runtime.replay(result.run_id)).identical


async def test_a_refused_answer_goes_back_to_the_model_then_fails_the_run(
    store: MemoryStore,
) -> None:
    @check(points=["output"])
    def no_secrets(request: CheckRequest) -> CheckResult:
        if request.text and "secret" in request.text:
            return CheckResult.deny("the answer reveals a secret")
        return CheckResult.allow()

    model = ScriptedModel(["the secret is 42", "I cannot say"])
    agent = Agent(name="desk", model=model, checks=[no_secrets])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    result = await runtime.run(agent, "what is the secret?")

    assert result.output == "I cannot say"
    told = [m.content for m in model.requests[1].messages if isinstance(m, UserMessage)]
    assert any("the answer reveals a secret" in str(text) for text in told)

    stubborn = Agent(name="stubborn", model=ScriptedModel(["secret"] * 5), checks=[no_secrets])
    failed = await runtime.run(stubborn, "again")
    assert failed.status == "failed"
    assert failed.reason is not None
    assert failed.reason.code == "check.denied"
    assert "no_secrets" in failed.reason.message


async def test_an_escalated_answer_waits_for_a_person(store: MemoryStore) -> None:
    @check(points=["output"])
    def second_look(request: CheckRequest) -> CheckResult:
        return CheckResult.escalate("answers about refunds need a second look")

    agent = Agent(name="desk", model=ScriptedModel(["refund approved"]), checks=[second_look])
    runtime = Runtime(store=store, settings=NO_MODELS, agents=[agent])

    paused = await runtime.run(agent, "refund?")
    assert paused.status == "awaiting_approval"
    [pending] = await runtime.pending_calls(paused.run_id)
    assert pending.call.name == "output"

    done = await runtime.approve(paused.run_id, pending.call.id, by="lee", agent=agent)
    assert done.output == "refund approved"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"tenant": ""}, "tenant"),
        ({"user": "a\nb"}, "user"),
        ({"roles": "admin"}, "roles"),
        ({"roles": [7]}, "role"),
    ],
)
async def test_who_a_run_is_for_is_validated(
    store: MemoryStore, kwargs: dict[str, object], named: str
) -> None:
    agent = Agent(name="desk", model=ScriptedModel(["hi"]))
    runtime = Runtime(store=store, settings=NO_MODELS)
    with pytest.raises(UsageError, match=named):
        await runtime.run(agent, "hi", **kwargs)  # type: ignore[arg-type]


async def test_a_call_id_repeated_from_turn_to_turn_is_checked_every_time(
    store: MemoryStore,
) -> None:
    from keel.messages import AssistantMessage, ToolCall

    def same_id(order: str) -> AssistantMessage:
        # Some local servers number calls per turn: "call_0" every time.
        return AssistantMessage(
            tool_calls=(
                ToolCall(id="call_0", name="delete", arguments=f'{{"order_id": "{order}"}}'),
            )
        )

    asked: list[str] = []

    @check(points=["tool_call"])
    def one_delete(request: CheckRequest) -> CheckResult:
        assert request.call is not None
        asked.append(request.call.id)
        if any(c.name == "delete" for c in request.previous_calls):
            return CheckResult.deny("one delete per run")
        return CheckResult.allow()

    model = ScriptedModel([same_id("1"), same_id("2"), "done"])
    agent = Agent(name="desk", model=model, tools=[delete], checks=[one_delete])
    result = await Runtime(store=store, settings=NO_MODELS).run(agent, "delete 1 and 2")

    assert result.status == "completed"
    assert len(asked) == 2
    assert len(set(asked)) == 2  # the second call got an id of its own
    verdicts = [e.verdict for e in await store.load(result.run_id) if isinstance(e, ChecksDecided)]
    assert verdicts == ["allow", "deny"]
