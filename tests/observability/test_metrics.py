"""Metrics: what a run's events count, with bounded labels, in an exposition that parses."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from keel import Agent, CheckRequest, CheckResult, KeelSettings, Runtime, check, tool
from keel.errors import ConfigurationError
from keel.events import ModelResponded
from keel.messages import AssistantMessage
from keel.observability import Metrics
from keel.testing import FakeClock, MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})
FORBIDDEN_LABELS = {"run_id", "thread_id", "user", "tenant", "run", "thread"}


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, parsed by Prometheus' own parser."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, frozenset(labels.items())), 0.0)


@tool(requires_approval=lambda args: args["amount_usd"] > 100)
def refund(order_id: str, amount_usd: float) -> str:
    """Refund an order."""
    return f"refunded {amount_usd:g} on {order_id}"


@tool(side_effects="write")
def wipe(table: str) -> str:
    """Wipe a table."""
    return "wiped"


@check(points=["tool_call"])
def no_wiping(request: CheckRequest) -> CheckResult:
    if request.call is not None and request.call.name == "wipe":
        return CheckResult.deny("never wipe")
    return CheckResult.allow()


async def approved_and_denied_run(metrics: Metrics) -> Runtime:
    model = ScriptedModel(
        [call("wipe", table="orders"), call("refund", order_id="7", amount_usd=500), "Done."]
    )
    agent = Agent(name="desk", model=model, tools=[refund, wipe], checks=[no_wiping])
    clock = FakeClock(start=1_800_000_000.0)
    runtime = Runtime(
        store=MemoryStore(), settings=NO_MODELS, agents=[agent], clock=clock, observers=[metrics]
    )
    waiting = await runtime.run(agent, "Wipe, then refund $500", tenant="acme", user="u-1")
    assert waiting.status == "awaiting_approval"
    clock.advance(90)
    done = await runtime.approve(waiting.run_id, by="ana")
    assert done.status == "completed"
    return runtime


async def test_a_run_with_a_denial_and_an_approval_counts_each_with_bounded_labels() -> None:
    metrics = Metrics()
    await approved_and_denied_run(metrics)

    assert value(metrics, "keel_runs_started_total", agent="desk") == 1
    assert value(metrics, "keel_runs_finished_total", agent="desk", status="completed") == 1
    assert (
        value(metrics, "keel_model_calls_total", agent="desk", model="scripted", outcome="ok") == 3
    )
    denied = {"point": "tool_call", "verdict": "deny", "check": "no_wiping"}
    assert value(metrics, "keel_check_decisions_total", **denied) == 1
    assert value(metrics, "keel_human_interventions_total", agent="desk", kind="approval") == 1
    assert value(metrics, "keel_approval_decisions_total", decision="approve") == 1
    assert value(metrics, "keel_approval_wait_seconds_sum") == 90
    assert value(metrics, "keel_tool_calls_total", agent="desk", tool="refund", outcome="ok") == 1
    assert value(metrics, "keel_tool_calls_total", agent="desk", tool="wipe", outcome="error") == 1
    for _name, labels in samples(metrics):
        assert not FORBIDDEN_LABELS & {k for k, _ in labels}
        assert not {"acme", "u-1"} & {v for _, v in labels}


async def test_waits_are_measured_from_the_journal_whichever_process_saw_them_begin() -> None:
    """The approval wait and the queue wait count from when the journal says the request was
    made or the run was queued, even in a process that saw neither; a run queued again
    waits from then, not from its start."""
    store, clock = MemoryStore(), FakeClock(start=1_800_000_000.0)
    model = ScriptedModel([call("refund", order_id="7", amount_usd=500), "Done."])
    agent = Agent(name="desk", model=model, tools=[refund])
    first, second = Metrics(), Metrics()
    asking = Runtime(
        store=store, settings=NO_MODELS, agents=[agent], clock=clock, observers=[first]
    )
    deciding = Runtime(
        store=store, settings=NO_MODELS, agents=[agent], clock=clock, observers=[second]
    )
    run_id = await asking.submit(agent, "Refund $500 on order 7")
    clock.advance(5)
    await asking.recover()
    assert (await asking.result(run_id)).status == "awaiting_approval"
    assert value(first, "keel_queue_wait_seconds_sum", agent="desk") == 5

    clock.advance(90)
    queued = await deciding.approve(run_id, by="ana", resume=False)
    assert queued.status == "queued"
    clock.advance(3)
    await deciding.recover()
    assert (await deciding.result(run_id)).status == "completed"
    assert value(second, "keel_approval_wait_seconds_sum") == 90
    assert value(second, "keel_queue_wait_seconds_sum", agent="desk") == 3


def responded(**fields: Any) -> ModelResponded:
    from keel._core.usage import Usage

    return ModelResponded(
        step=1,
        model=fields.pop("model", "openai:gpt-4o"),
        message=AssistantMessage(content="hi"),
        usage=Usage(requests=1, input_tokens=10, output_tokens=4),
        **fields,
    )


async def test_retries_fallbacks_and_cache_hits_come_from_the_attempts() -> None:
    from keel._core.limits import Limits
    from keel._core.messages import Attempt
    from keel._core.state import RunState

    metrics = Metrics()
    state = RunState(run_id="r", thread_id="t", agent="desk", model="m", input="", limits=Limits())
    attempts = (
        Attempt(model="openai:gpt-4o", code="rate_limited", latency_ms=100),
        Attempt(model="openai:gpt-4o", code="server_error", latency_ms=200),
        Attempt(model="anthropic:claude", latency_ms=300),
    )
    metrics.observed(state, [responded(model="anthropic:claude", attempts=attempts, cost_usd=0.5)])
    metrics.observed(state, [responded(cached=True)])

    assert value(metrics, "keel_model_retries_total", agent="desk", model="openai:gpt-4o") == 1
    fallback = {"agent": "desk", "model": "anthropic:claude", "reason": "error"}
    assert value(metrics, "keel_model_fallbacks_total", **fallback) == 1
    assert value(metrics, "keel_model_cache_hits_total", agent="desk", model="openai:gpt-4o") == 1
    assert value(metrics, "keel_errors_total", kind="model", code="rate_limited") == 1
    assert value(metrics, "keel_cost_usd_total", agent="desk", model="anthropic:claude") == 0.5
    tokens = {"agent": "desk", "model": "openai:gpt-4o", "kind": "input"}
    assert value(metrics, "keel_tokens_total", **tokens) == 10
    latency = {"model": "openai:gpt-4o", "outcome": "error"}
    assert value(metrics, "keel_model_call_duration_seconds_count", **latency) == 2


def test_a_family_holds_a_bounded_number_of_label_combinations() -> None:
    from keel._core.limits import Limits
    from keel._core.state import RunState

    metrics = Metrics(max_children=3)
    state = RunState(run_id="r", thread_id="t", agent="desk", model="m", input="", limits=Limits())
    for n in range(10):
        metrics.observed(state, [responded(model=f"model-{n}", cached=True)])

    hits = [k for k in samples(metrics) if k[0] == "keel_model_cache_hits_total"]
    assert len(hits) == 4  # three models, then everything else as "other"
    assert value(metrics, "keel_model_cache_hits_total", agent="other", model="other") == 7


async def test_scrape_time_readings_show_the_queue_and_waiting_approvals() -> None:
    metrics = Metrics()
    runtime = await approved_and_denied_run(Metrics())
    metrics.watch(runtime, min_interval_s=0)
    agent = Agent(name="queued", model=ScriptedModel(["x"]))
    await runtime.submit(agent, "later")
    await metrics.refresh()

    assert value(metrics, "keel_queue_depth", agent="queued") == 1
    assert value(metrics, "keel_approvals_pending") == 0


async def test_a_failing_store_never_fails_a_scrape() -> None:
    class Broken(MemoryStore):
        async def list_runs(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("database down")

    metrics = Metrics()
    metrics.watch(Runtime(store=Broken(), settings=NO_MODELS), min_interval_s=0)
    await metrics.refresh()

    assert value(metrics, "keel_scrape_errors_total", source="store") == 1


async def test_the_asgi_app_serves_the_exposition() -> None:
    metrics = Metrics()
    await approved_and_denied_run(metrics)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await metrics.asgi_app()({"type": "http", "headers": []}, None, send)

    assert sent[0]["status"] == 200
    assert b"keel_runs_finished_total" in sent[1]["body"]


def test_a_bad_namespace_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        Metrics(namespace="keel-prod")
