"""The RabbitMQ intake against a real broker: a message becomes one durable run and its reply
follows; a message seen twice makes one run; poison goes to the dead letters with its reason and
never comes back; a message is acknowledged only once its run is durable; replies outlive the
intake; and the intake holds no more messages than its prefetch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from keel import ConfigurationError, Runtime
from keel.intake import IntakeError, RabbitMQIntake
from keel.stores import SQLiteStore
from tests.rabbitmq import Broker

from ._support import (
    BlockingStore,
    FailingClaims,
    FailingStore,
    died,
    echo,
    eventually,
    start_dying,
)

_SAFETY_S = 20.0


def intake(runtime: Runtime, broker: Broker, **options: Any) -> RabbitMQIntake:
    return RabbitMQIntake(runtime, url=broker.url, queue=broker.queue, **options)


async def runs(runtime: Runtime) -> list[str]:
    return [r.run_id for r in await runtime.store.list_runs(limit=None)]


async def test_a_message_becomes_a_run_whose_result_is_published_to_the_reply_queue(
    rabbitmq: Broker,
) -> None:
    async with Runtime(store="memory", agents=[echo()]) as runtime:
        async with intake(runtime, rabbitmq) as taking:
            await rabbitmq.publish(
                {"agent": "echo", "input": "Where is order 1043?", "thread": "customer-42"},
                message_id="m-1",
                reply_to=rabbitmq.replies,
                correlation_id="ask-1",
            )
            reply = await rabbitmq.take(rabbitmq.replies)
        [run_id] = await runs(runtime)
        assert reply.correlation_id == "ask-1"
        assert json.loads(reply.body) == {
            "run_id": run_id,
            "agent": "echo",
            "thread": "customer-42",
            "status": "completed",
            "output": "echo: Where is order 1043?",
            "reason": None,
        }
        assert (taking.counts.accepted, taking.counts.replied) == (1, 1)
        assert await rabbitmq.count(rabbitmq.queue) == 0


async def test_a_message_published_twice_with_one_id_makes_one_run(rabbitmq: Broker) -> None:
    async with Runtime(store="memory", agents=[echo()]) as runtime:
        async with intake(runtime, rabbitmq) as taking:
            for _ in range(2):
                await rabbitmq.publish(
                    {"agent": "echo", "input": "Hi"}, message_id="m-1", reply_to=rabbitmq.replies
                )
            first = json.loads((await rabbitmq.take(rabbitmq.replies)).body)
            second = json.loads((await rabbitmq.take(rabbitmq.replies)).body)
        assert await runs(runtime) == [first["run_id"]]
        assert second["run_id"] == first["run_id"]
        assert taking.counts.accepted == 2


POISON = [
    ("not-json", b"Where is order 1043?", "not_json"),
    ("not-an-object", b'["echo", "Hi"]', "not_an_object"),
    ("missing-input", b'{"agent": "echo"}', "invalid_field"),
    ("unknown-field", b'{"agent": "echo", "input": "Hi", "thraed": "t"}', "invalid_field"),
    ("unknown-agent", b'{"agent": "sales", "input": "Hi"}', "unknown_agent"),
    ("too-long", json.dumps({"agent": "echo", "input": "x" * 51}).encode(), "input_too_long"),
    ("bad-thread", b'{"agent": "echo", "input": "Hi", "thread": "a\\nb"}', "refused"),
]


async def test_every_kind_of_poison_is_dead_lettered_with_its_reason_and_not_redelivered(
    rabbitmq: Broker,
) -> None:
    async with Runtime(store="memory", agents=[echo()]) as runtime:
        async with intake(runtime, rabbitmq, max_input_chars=50) as taking:
            for message_id, body, _ in POISON:
                await rabbitmq.publish(body, message_id=message_id, reply_to=rabbitmq.replies)
            letters = [await rabbitmq.take(rabbitmq.dead) for _ in POISON]
            replies = [json.loads((await rabbitmq.take(rabbitmq.replies)).body) for _ in POISON]
        by_id = {letter.message_id: letter for letter in letters}
        for message_id, body, code in POISON:
            letter = by_id[message_id]
            headers = letter.headers or {}
            assert letter.body == body  # the original, to send again once fixed
            assert (headers["Keel-Reason-Code"], headers["Keel-Source"]) == (code, rabbitmq.queue)
            assert headers["Keel-Reason"]
        assert {r["status"] for r in replies} == {"rejected"}
        assert sorted(r["reason"]["code"] for r in replies) == sorted(c for _, _, c in POISON)
        assert await runs(runtime) == []
        assert taking.counts.dead_lettered == len(POISON)
    # Acknowledged on the run queue: nothing came back once the intake let go.
    assert await rabbitmq.count(rabbitmq.queue) == 0
    assert await rabbitmq.count(rabbitmq.dead) == 0


async def test_a_message_is_tried_again_while_the_store_is_down_then_makes_one_run(
    rabbitmq: Broker,
) -> None:
    store = FailingStore(times=2)
    async with Runtime(store=store, agents=[echo()]) as runtime:
        async with intake(runtime, rabbitmq, retry_delay_s=0.01) as taking:
            await rabbitmq.publish(
                {"agent": "echo", "input": "Hi"}, message_id="m-1", reply_to=rabbitmq.replies
            )
            reply = json.loads((await rabbitmq.take(rabbitmq.replies)).body)
        assert reply["status"] == "completed"
        assert await runs(runtime) == [reply["run_id"]]
        assert (store.failed, taking.counts.retried, taking.counts.dead_lettered) == (2, 2, 0)


async def test_a_message_that_keeps_failing_is_dead_lettered_after_max_deliveries(
    rabbitmq: Broker,
) -> None:
    store = FailingStore(times=None)
    async with Runtime(store=store, agents=[echo()]) as runtime:
        async with intake(runtime, rabbitmq, retry_delay_s=0.01, max_deliveries=3) as taking:
            await rabbitmq.publish({"agent": "echo", "input": "Hi"}, message_id="m-1")
            letter = await rabbitmq.take(rabbitmq.dead)
        headers = letter.headers or {}
        assert headers["Keel-Reason-Code"] == "too_many_failures"
        assert "tried 3 times" in str(headers["Keel-Reason"])
        assert "the database is down" in str(headers["Keel-Reason"])
        assert (store.failed, taking.counts.retried) == (3, 2)
    assert await rabbitmq.count(rabbitmq.queue) == 0


async def test_the_worker_that_drives_the_runs_outlives_a_store_failure(rabbitmq: Broker) -> None:
    store = FailingClaims(times=1)
    async with Runtime(store=store) as runtime:
        runtime.register(echo())
        async with intake(runtime, rabbitmq, retry_delay_s=0.01):
            await rabbitmq.publish(
                {"agent": "echo", "input": "Hi"}, message_id="m-1", reply_to=rabbitmq.replies
            )
            reply = json.loads((await rabbitmq.take(rabbitmq.replies)).body)
        assert (reply["status"], store.times) == ("completed", 0)


async def test_a_message_delivered_too_often_is_dead_lettered_without_a_try(
    rabbitmq: Broker,
) -> None:
    """A quorum queue counts deliveries, crashes included (``x-delivery-count``): a message
    whose tries keep killing the intake is dead-lettered rather than tried forever."""
    store = FailingStore(times=0)
    async with Runtime(store=store, agents=[echo()]) as runtime:
        async with intake(runtime, rabbitmq, max_deliveries=3):
            await rabbitmq.publish(
                {"agent": "echo", "input": "Hi"}, message_id="m-1", headers={"x-delivery-count": 3}
            )
            letter = await rabbitmq.take(rabbitmq.dead)
        headers = letter.headers or {}
        assert headers["Keel-Reason-Code"] == "too_many_failures"
        assert "delivered 4 times without being handled" in str(headers["Keel-Reason"])
        assert await runs(runtime) == []


async def test_the_intake_holds_no_more_messages_than_its_prefetch(rabbitmq: Broker) -> None:
    store = BlockingStore()
    async with Runtime(store=store, agents=[echo()]) as runtime:
        async with intake(runtime, rabbitmq, prefetch=2) as taking:
            for number in range(5):
                await rabbitmq.publish({"agent": "echo", "input": "Hi"}, message_id=f"m-{number}")
            await asyncio.wait_for(store.until_waiting(2), _SAFETY_S)
            # Two are held, unacknowledged, while their runs are not durable; three wait.
            assert await rabbitmq.count(rabbitmq.queue) == 3

            async def all_accepted() -> bool:
                return taking.counts.accepted == 5

            store.release.set()
            await eventually(all_accepted)
        assert store.most_waiting == 2
        assert len(await runs(runtime)) == 5


async def test_a_reply_owed_outlives_the_intake_that_accepted_the_message(
    rabbitmq: Broker, tmp_path: Path
) -> None:
    path = tmp_path / "keel.db"
    async with Runtime(store=path, agents=[echo()]) as runtime:
        async with intake(runtime, rabbitmq, drive=False):  # accepts; nobody drives the run
            await rabbitmq.publish(
                {"agent": "echo", "input": "Hi"}, message_id="m-1", reply_to=rabbitmq.replies
            )

            async def accepted() -> bool:
                return bool(await runs(runtime))

            await eventually(accepted)
        [run_id] = await runs(runtime)
        assert (await runtime.result(run_id)).status == "queued"
    # Another intake drives the run, and replies from the outbox.
    async with Runtime(store=path, agents=[echo()]) as restarted, intake(restarted, rabbitmq):
        reply = json.loads((await rabbitmq.take(rabbitmq.replies)).body)
    assert (reply["run_id"], reply["status"], reply["output"]) == (run_id, "completed", "echo: Hi")


async def test_an_intake_killed_after_submitting_before_acknowledging_makes_no_second_run(
    rabbitmq: Broker, tmp_path: Path
) -> None:
    path = tmp_path / "keel.db"
    await rabbitmq.declare(rabbitmq.queue)  # so that the message waits for the intake
    dying = await start_dying("rabbitmq", rabbitmq.url, rabbitmq.queue, str(path))
    await rabbitmq.publish(
        {"agent": "echo", "input": "Hi"}, message_id="m-1", reply_to=rabbitmq.replies
    )
    out = await died(dying)
    [submitted] = [line.split()[1] for line in out.splitlines() if line.startswith("submitted")]
    async with SQLiteStore(path) as store:
        assert [r.run_id for r in await store.list_runs(limit=None)] == [submitted]
    # The broker delivers the message again, to an intake that lives: the same run.
    async with Runtime(store=path, agents=[echo()]) as runtime:
        async with intake(runtime, rabbitmq) as taking:
            reply = json.loads((await rabbitmq.take(rabbitmq.replies)).body)
        assert await runs(runtime) == [submitted]
        assert (reply["run_id"], reply["status"]) == (submitted, "completed")
        assert taking.counts.accepted == 1


async def test_a_wrong_password_is_refused_without_showing_it(rabbitmq: Broker) -> None:
    async with Runtime(store="memory", agents=[echo()]) as runtime:
        url = rabbitmq.url.replace("guest:guest@", "guest:not-the-password@")
        taking = RabbitMQIntake(runtime, url=url, queue=rabbitmq.queue)
        with pytest.raises(IntakeError, match="cannot connect to RabbitMQ") as refused:
            await taking.start()
        assert "not-the-password" not in str(refused.value)
        assert "not-the-password" not in repr(taking)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"url": "http://guest:secret@127.0.0.1/"}, r"AMQP URL .*'http://guest:\*\*\*@"),
        ({"url": "amqp://127.0.0.1/", "queue": " "}, "queue must be a non-empty queue name"),
        (
            {"url": "amqp://127.0.0.1/", "queue": "a", "dead_letter_queue": "a"},
            "three different queues",
        ),
        ({"url": "amqp://127.0.0.1/", "prefetch": 0}, "prefetch must be"),
    ],
)
def test_bad_settings_are_refused_before_connecting(
    options: dict[str, Any], complaint: str
) -> None:
    runtime = Runtime(store="memory")
    with pytest.raises(ConfigurationError, match=complaint):
        RabbitMQIntake(runtime, **options)
