"""Webhooks reach a real receiver, signed: when a run ends and when it waits for a person;
failures are retried with backoff (the same webhook-id each time), until a delivery is dead."""

from __future__ import annotations

import logging
import socket

import pytest

from keel import Agent, Limits, RunContext, Runtime, tool
from keel.errors import ModelError
from keel.testing import FakeClock, FunctionModel, call
from keel.webhooks import Webhook, Webhooks, new_secret, verify_signature
from tests.webhooks.conftest import answering, payloads, refunding
from tests.webhooks.receiver import Receiver

SECRET = new_secret()


async def started(runtime: Runtime, *endpoints: Webhook, **options: object) -> Webhooks:
    webhooks = Webhooks(list(endpoints), **options)  # type: ignore[arg-type]
    await webhooks.start(runtime, background=False)
    return webhooks


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_approval_request_and_the_runs_end_are_delivered_signed(
    runtime: Runtime, receiver: Receiver, clock: FakeClock
) -> None:
    webhooks = await started(runtime, Webhook(receiver.url, SECRET))
    agent = refunding()
    runtime.register(agent)
    waiting = await runtime.run(agent, "Refund order 42", tenant="acme", user="ann")
    await webhooks.run_once(scan=True)
    done = await runtime.approve(waiting.run_id, by="bob")
    await webhooks.run_once(scan=True)
    await webhooks.stop()

    asked, ended = payloads(receiver)
    assert asked["type"] == "approval.requested"
    assert asked["data"]["run_id"] == waiting.run_id
    assert (asked["data"]["status"], asked["data"]["tenant"], asked["data"]["user"]) == (
        "awaiting_approval",
        "acme",
        "ann",
    )
    assert [(p["tool"], p["kind"]) for p in asked["data"]["pending"]] == [("refund", "approval")]
    assert ended["type"] == "run.completed"
    assert (ended["data"]["output"], ended["data"]["agent"]) == ("Refunded.", "desk")
    assert ended["data"]["usage"]["requests"] == 2
    assert done.status == "completed"
    for request in receiver.received:
        verify_signature(SECRET, request.headers, request.body, now=clock.now())
    assert len({r.id for r in receiver.received}) == 2


async def test_a_failed_run_is_told_and_an_endpoint_gets_only_what_it_asked_for(
    runtime: Runtime, receiver: Receiver
) -> None:
    failures = Webhook(receiver.url, SECRET, events={"run.failed"}, name="failures")
    acme = Webhook(receiver.url, SECRET, tenant="acme", name="acme")
    webhooks = await started(runtime, failures, acme)
    ok = await runtime.run(answering(), "hi", tenant="acme")
    await runtime.run(answering(), "hi", tenant="globex")
    broken = Agent(name="broken", model=FunctionModel(lambda r: ModelError("bad request")))
    failed = await runtime.run(broken, "hi", tenant="globex")
    await webhooks.run_once(scan=True)
    await webhooks.stop()

    told = sorted((p["type"], p["data"]["run_id"]) for p in payloads(receiver))
    assert failed.status == "failed"
    assert told == sorted([("run.completed", ok.run_id), ("run.failed", failed.run_id)])
    [failure] = [p for p in payloads(receiver) if p["type"] == "run.failed"]
    assert failure["data"]["reason"]["code"] == failed.reason.code  # type: ignore[union-attr]
    assert {r.path for r in receiver.received} == {"/hooks"}


async def test_503s_are_retried_with_growing_backoff_and_the_same_webhook_id(
    runtime: Runtime, receiver: Receiver, clock: FakeClock
) -> None:
    webhooks = await started(runtime, Webhook(receiver.url, SECRET), backoff_s=10)
    receiver.fail_next(2, status=503)
    await runtime.run(answering(), "hi")

    [first] = await webhooks.run_once(scan=True)
    assert (first.status, first.attempts, first.last_status) == ("pending", 1, 503)
    wait = first.next_attempt_at - clock.now()
    assert 5 <= wait <= 10  # 10s, half of it random
    assert await webhooks.run_once(scan=True) == []  # not due yet
    clock.advance(wait)
    [second] = await webhooks.run_once(scan=True)
    wait = second.next_attempt_at - clock.now()
    assert (second.status, 10 <= wait <= 20) == ("pending", True)  # doubled
    clock.advance(wait)
    [third] = await webhooks.run_once(scan=True)
    await webhooks.stop()

    assert (third.status, third.attempts, third.last_status) == ("delivered", 3, 200)
    assert len(receiver.received) == 3
    assert len({r.id for r in receiver.received}) == 1  # one id for every attempt
    assert len({r.body for r in receiver.received}) == 1  # and the same body
    assert len({r.headers["webhook-timestamp"] for r in receiver.received}) == 3


async def test_retry_after_is_honoured(
    runtime: Runtime, receiver: Receiver, clock: FakeClock
) -> None:
    webhooks = await started(runtime, Webhook(receiver.url, SECRET))
    receiver.fail_next(1, status=429, retry_after="120")
    await runtime.run(answering(), "hi")

    [limited] = await webhooks.run_once(scan=True)
    assert limited.next_attempt_at == pytest.approx(clock.now() + 120, abs=1)
    clock.advance(119)
    assert await webhooks.run_once(scan=True) == []
    clock.advance(2)
    [done] = await webhooks.run_once(scan=True)
    await webhooks.stop()
    assert done.status == "delivered"


async def test_a_404_is_not_retried(runtime: Runtime, receiver: Receiver) -> None:
    webhooks = await started(runtime, Webhook(receiver.url, SECRET))
    receiver.fail_next(1, status=404)
    await runtime.run(answering(), "hi")

    [dead] = await webhooks.run_once(scan=True)
    await webhooks.stop()
    assert (dead.status, dead.attempts, dead.last_status) == ("dead", 1, 404)
    assert "not retried" in (dead.last_error or "")


async def test_after_max_attempts_a_delivery_is_dead_listed_and_can_be_retried(
    runtime: Runtime, receiver: Receiver, clock: FakeClock
) -> None:
    webhooks = await started(runtime, Webhook(receiver.url, SECRET), max_attempts=3)
    receiver.fail_always(500)
    await runtime.run(answering(), "hi")
    outcomes = []
    for _ in range(3):
        [attempted] = await webhooks.run_once(scan=True)
        outcomes.append(attempted.status)
        clock.advance(3600)
    assert outcomes == ["pending", "pending", "dead"]
    assert await webhooks.run_once(scan=True) == []  # dead: no more attempts
    [dead] = await webhooks.outbox.deliveries(status="dead")
    assert "gave up after 3 attempts" in (dead.last_error or "")

    receiver.fail_next(0)
    receiver._failures.clear()
    again = await webhooks.outbox.retry(dead.id, now=clock.now())
    assert again is not None
    assert (again.status, again.attempts) == ("pending", 0)
    [delivered] = await webhooks.run_once(scan=True)
    await webhooks.stop()
    assert delivered.status == "delivered"
    assert {r.id for r in receiver.received} == {dead.id}


async def test_an_unreachable_endpoint_is_retried_and_no_secret_or_token_is_told(
    runtime: Runtime, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hooks?token=TOKEN-IN-URL"
    endpoint = Webhook(url, SECRET)
    webhooks = await started(runtime, endpoint, max_attempts=2)
    await runtime.run(answering(), "hi")

    with caplog.at_level(logging.INFO, logger="keel.webhooks"):
        [first] = await webhooks.run_once(scan=True)
        clock.advance(3600)
        [second] = await webhooks.run_once(scan=True)
    await webhooks.stop()

    assert first.status == "pending"
    assert "could not reach the endpoint" in (first.last_error or "")
    assert second.status == "dead"
    told = " ".join(
        [caplog.text, repr(endpoint), repr(webhooks), first.last_error or "", repr(second)]
    )
    assert "TOKEN-IN-URL" not in told
    assert SECRET not in told
    assert SECRET[6:] not in told
    assert first.endpoint == "127.0.0.1/hooks"


async def test_runs_of_this_process_are_delivered_in_the_background(
    tmp_path: object, receiver: Receiver
) -> None:
    import asyncio
    from pathlib import Path

    webhooks = Webhooks([Webhook(receiver.url, SECRET)], scan_interval_s=3600)
    path = Path(str(tmp_path)) / "live.db"
    runtime = Runtime(store=str(path), observers=[webhooks])
    async with runtime, webhooks.running(runtime):
        await asyncio.sleep(0)  # the deliverer made its first scan
        result = await runtime.run(answering(), "hi")
        # Told by the observer, not by the hourly scan.
        [got] = await asyncio.to_thread(receiver.wait_for, 1)
    assert got.json["data"]["run_id"] == result.run_id


async def test_a_pause_is_told_to_an_endpoint_that_asks_for_it(
    runtime: Runtime, receiver: Receiver
) -> None:
    @tool
    def lookup(ctx: RunContext[None], order_id: str) -> str:
        """Look an order up."""
        return "shipped"

    looping = Agent(
        name="looping",
        model=FunctionModel(lambda request: call("lookup", order_id="1")),
        tools=[lookup],
        limits=Limits(max_steps=1),
    )
    pauses = Webhook(receiver.url, SECRET, events={"run.paused"}, name="pauses")
    others = Webhook(receiver.url, SECRET, name="others")
    webhooks = await started(runtime, pauses, others)
    paused = await runtime.run(looping, "Where is order 1?")
    await webhooks.run_once(scan=True)
    await webhooks.stop()

    assert paused.status == "paused"
    [told] = payloads(receiver)
    assert (told["type"], told["data"]["status"]) == ("run.paused", "paused")
    assert told["data"]["reason"]["code"] == paused.reason.code  # type: ignore[union-attr]
