"""Spending: a run's cost cap and the shared budgets hold before each model call (the worst
case is checked or reserved first), pause the run with a reason naming the cap or budget, and
let it continue once raised. A model with no known price is refused under either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel import Agent, KeelSettings, Limits, ModelSettings, Price, Runtime, Usage
from keel.budgets import Budget
from keel.messages import AssistantMessage, ModelResponse
from keel.testing import MemoryStore, ScriptedModel

NO_MODELS = KeelSettings.from_environ({})
PRICED = "acme:small"
# A cent a token: a call of at most 100 output tokens and a short prompt may cost about $1.3.
PRICES = {PRICED: Price(input_per_mtok=10_000, output_per_mtok=10_000)}
SETTINGS = ModelSettings(max_tokens=100)


def answer(text: str, *, inputs: int = 20, outputs: int = 30) -> ModelResponse:
    """A scripted answer that used tokens: $0.50 at the test price."""
    return ModelResponse(
        message=AssistantMessage(content=text),
        usage=Usage(requests=1, input_tokens=inputs, output_tokens=outputs),
        model=PRICED,
        finish_reason="stop",
    )


def agent_with(script: list[ModelResponse], *, name: str = "desk", model: str = PRICED) -> Agent:
    return Agent(name=name, model=ScriptedModel(script, name=model), model_settings=SETTINGS)


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(check_json=True) as memory:
        yield memory


async def test_a_run_stops_before_a_call_that_could_pass_its_cap_and_continues_when_raised(
    store: MemoryStore,
) -> None:
    from keel.testing import call

    agent = Agent(
        name="desk",
        model=ScriptedModel(
            [
                ModelResponse(
                    message=AssistantMessage(tool_calls=(call("ping"),)),
                    usage=Usage(requests=1, input_tokens=20, output_tokens=30),
                    model=PRICED,
                ),
                answer("pong"),
            ],
            name=PRICED,
        ),
        tools=[ping],
        model_settings=SETTINGS,
        limits=Limits(max_cost_usd=2.0),
    )
    runtime = Runtime(store=store, settings=NO_MODELS, prices=PRICES)

    paused = await runtime.run(agent, "ping")

    assert paused.status == "paused"
    assert paused.reason is not None
    assert paused.reason.code == "limit.max_cost_usd"
    assert "max_cost_usd" in paused.reason.message
    assert paused.cost_usd == pytest.approx(0.5)  # the first call; the second was not made

    done = await runtime.resume(paused.run_id, agent, limits=Limits(max_cost_usd=5.0))
    assert done.status == "completed"
    assert done.cost_usd == pytest.approx(1.0)


def ping() -> str:
    """Answer pong."""
    return "pong"


async def test_a_model_with_no_known_price_is_refused_under_a_cap(store: MemoryStore) -> None:
    agent = Agent(
        name="desk",
        model=ScriptedModel([answer("hi")], name="acme:unknown"),
        limits=Limits(max_cost_usd=10.0),
    )
    runtime = Runtime(store=store, settings=NO_MODELS, prices=PRICES)

    result = await runtime.run(agent, "hi")

    assert result.status == "paused"
    assert result.reason is not None
    assert result.reason.code == "budget.unpriced"
    assert "acme:unknown" in result.reason.message
    assert "prices=" in result.reason.message


async def test_a_tenant_budget_pauses_the_run_that_could_pass_it_and_a_raise_lets_it_go_on(
    store: MemoryStore,
) -> None:
    runtime = Runtime(
        store=store,
        settings=NO_MODELS,
        prices=PRICES,
        budgets=[Budget("tenant", 2.0, window="day")],
    )

    first = await runtime.run(agent_with([answer("one")]), "1", tenant="acme")
    second = await runtime.run(agent_with([answer("two")], name="desk2"), "2", tenant="acme")
    third = await runtime.run(agent_with([answer("three")], name="desk3"), "3", tenant="acme")
    other = await runtime.run(agent_with([answer("four")], name="desk4"), "4", tenant="globex")

    assert [first.status, second.status, third.status, other.status] == [
        "completed",
        "completed",
        "paused",
        "completed",
    ]
    assert third.reason is not None
    assert third.reason.code == "budget.exhausted"
    assert "tenant" in third.reason.message
    assert "acme" in third.reason.message
    [acme] = [
        s for s in await runtime.budget_statuses(keys={"tenant": "acme"}) if s.scope == "tenant"
    ]
    assert acme.spent_usd == pytest.approx(1.0)
    assert acme.reserved_usd == pytest.approx(0.0)  # the refused call reserved nothing

    await runtime.set_budget("tenant", "acme", 5.0, window="day", by="finance")
    done = await runtime.resume(third.run_id, agent_with([answer("three")], name="desk3"))

    assert done.status == "completed"
    [acme] = [
        s for s in await runtime.budget_statuses(keys={"tenant": "acme"}) if s.scope == "tenant"
    ]
    assert acme.spent_usd == pytest.approx(1.5)
    assert acme.limit_usd == 5.0
    assert await runtime.budget_reservations() == []


async def test_budgets_live_beside_the_journal_in_a_sqlite_store(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    # A call here may cost up to about $1.09 (9 prompt tokens, 100 output): the first fits,
    # and after it has spent $0.10 the second no longer does.
    budgets = [Budget("agent", 1.15, window="total")]
    async with Runtime(store=db, settings=NO_MODELS, prices=PRICES, budgets=budgets) as runtime:
        done = await runtime.run(agent_with([answer("ok", outputs=0, inputs=10)]), "a")
        assert done.status == "completed"
    # Another runtime (another process, in production) sees the spend.
    async with Runtime(store=db, settings=NO_MODELS, prices=PRICES, budgets=budgets) as runtime:
        refused = await runtime.run(agent_with([answer("no")]), "b")
        assert refused.status == "paused"
        assert refused.reason is not None
        assert refused.reason.code == "budget.exhausted"
        [status] = await runtime.budget_statuses()
        assert status.spent_usd == pytest.approx(0.1)


async def test_budget_methods_say_when_budgets_are_off(store: MemoryStore) -> None:
    from keel import UsageError

    runtime = Runtime(store=store, settings=NO_MODELS)
    assert runtime.budget_ledger is None
    with pytest.raises(UsageError, match="budgets=\\[\\]"):
        await runtime.set_budget("tenant", "acme", 1.0)


async def test_runs_paused_by_budgets_and_rate_limits_replay_exactly(store: MemoryStore) -> None:
    from keel.resilience import LocalRateLimiter, RateLimit
    from keel.testing import FakeClock

    clock = FakeClock()
    runtime = Runtime(
        store=store,
        settings=NO_MODELS,
        clock=clock,
        prices=PRICES,
        budgets=[Budget("tenant", 1.0)],
        rate_limits=[RateLimit(requests_per_minute=1, scope="agent", on_limit="pause")],
        rate_limiter=LocalRateLimiter(clock=clock),
    )
    agent = agent_with([answer("one"), answer("two")])

    by_budget = await runtime.run(agent, "first", tenant="acme")  # $1.09 at most > $1
    await runtime.set_budget("tenant", "acme", 10.0)
    done = await runtime.resume(by_budget.run_id, agent)
    by_rate = await runtime.run(agent, "second", tenant="acme")
    clock.advance(60)
    done_later = await runtime.resume(by_rate.run_id, agent)

    assert by_budget.reason is not None
    assert by_budget.reason.code == "budget.exhausted"
    assert by_rate.reason is not None
    assert by_rate.reason.code == "rate_limited"
    assert (done.status, done_later.status) == ("completed", "completed")
    for run_id in (by_budget.run_id, by_rate.run_id):
        replayed = await runtime.replay(run_id, agent)
        assert replayed.identical, replayed.differences


async def test_a_call_paid_before_a_crash_is_settled_by_the_process_that_takes_over(
    tmp_path: Path,
) -> None:
    import asyncio

    from keel import tool
    from keel.testing import call

    db = tmp_path / "keel.db"
    budgets = [Budget("tenant", 100.0)]
    entered, gate = asyncio.Event(), asyncio.Event()

    @tool(idempotent=True)
    async def ping() -> str:
        """Answer pong."""
        entered.set()
        await gate.wait()  # never set: the process "crashes" while the tool runs
        return "pong"

    first = ModelResponse(
        message=AssistantMessage(tool_calls=(call("ping"),)),
        usage=Usage(requests=1, input_tokens=20, output_tokens=30),
        model=PRICED,
    )
    crashing = Agent(
        name="desk",
        model=ScriptedModel([first], name=PRICED),
        tools=[ping],
        model_settings=SETTINGS,
    )
    runtime = Runtime(store=db, settings=NO_MODELS, prices=PRICES, budgets=budgets)
    task = asyncio.create_task(runtime.run(crashing, "ping", tenant="acme"))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await runtime.close()

    @tool(idempotent=True, name="ping")
    def ping_again() -> str:
        """Answer pong."""
        return "pong"

    async with Runtime(store=db, settings=NO_MODELS, prices=PRICES, budgets=budgets) as other:
        [record] = await other.store.list_runs()
        held = await other.budget_reservations()
        assert [r.run_id for r in held] == [record.run_id]  # the crash left it unsettled
        resumed = Agent(
            name="desk",
            model=ScriptedModel([answer("pong")], name=PRICED),
            tools=[ping_again],
            model_settings=SETTINGS,
        )
        done = await other.resume(record.run_id, resumed)

        assert done.status == "completed"
        assert done.cost_usd == pytest.approx(1.0)
        [acme] = [
            s for s in await other.budget_statuses(keys={"tenant": "acme"}) if s.scope == "tenant"
        ]
        # The first call's cost, paid before the crash, is spent, not dropped with the run.
        assert acme.spent_usd == pytest.approx(1.0)
        assert await other.budget_reservations() == []
