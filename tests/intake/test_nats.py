"""The NATS JetStream intake against a real server: a message becomes one durable run and its
reply follows; a message seen twice makes one run; poison goes to the dead-letter subject with
its reason and is acknowledged; a message is acknowledged only once its run is durable; replies
outlive the intake; and the intake holds no more messages than its prefetch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from keel import ConfigurationError, Runtime
from keel.intake import IntakeError, NatsIntake
from keel.stores import SQLiteStore
from tests.nats import JetStream, next_message

from ._support import BlockingStore, FailingStore, died, echo, eventually, start_dying

_SAFETY_S = 20.0


def intake(runtime: Runtime, names: JetStream, **options: Any) -> NatsIntake:
    return NatsIntake(
        runtime,
        url=names.url,
        stream=names.stream,
        subject=names.subject,
        durable=names.durable,
        **options,
    )


async def settled(names: JetStream) -> bool:
    """Whether the run consumer has nothing waiting and nothing unacknowledged."""
    return await names.pending(names.durable) == (0, 0)


async def runs(runtime: Runtime) -> list[str]:
    return [r.run_id for r in await runtime.store.list_runs(limit=None)]


async def test_a_message_becomes_a_run_whose_result_is_published_to_the_reply_subject(
    jetstream: JetStream,
) -> None:
    async with Runtime(store="memory", agents=[echo()]) as runtime:
        async with intake(runtime, jetstream) as taking:
            replies = await jetstream.listen()
            await jetstream.publish(
                {"agent": "echo", "input": "Where is order 1043?"},
                **{"Keel-Reply-To": jetstream.replies, "Keel-Correlation-Id": "ask-1"},
            )
            reply = await next_message(replies)
        [run_id] = await runs(runtime)
        await eventually(lambda: settled(jetstream))
        answer = json.loads(reply.data)
        assert (answer["run_id"], answer["status"]) == (run_id, "completed")
        assert answer["output"] == "echo: Where is order 1043?"
        assert (taking.counts.accepted, taking.counts.replied) == (1, 1)
        assert await jetstream.pending(jetstream.durable) == (0, 0)


async def test_messages_with_one_idempotency_key_make_one_run(jetstream: JetStream) -> None:
    async with Runtime(store="memory", agents=[echo()]) as runtime:
        async with intake(runtime, jetstream) as taking:
            for _ in range(2):  # two stream messages: JetStream does not deduplicate these
                await jetstream.publish({"agent": "echo", "input": "Hi", "idempotency_key": "q-1"})

            async def both_accepted() -> bool:
                return taking.counts.accepted == 2

            await eventually(both_accepted)
        assert len(await runs(runtime)) == 1


POISON = [
    ("not-json", b"Where is order 1043?", "not_json"),
    ("not-an-object", b"42", "not_an_object"),
    ("missing-agent", b'{"input": "Hi"}', "invalid_field"),
    ("unknown-agent", b'{"agent": "sales", "input": "Hi"}', "unknown_agent"),
    ("too-long", json.dumps({"agent": "echo", "input": "x" * 51}).encode(), "input_too_long"),
    ("bad-key", b'{"agent": "echo", "input": "Hi", "idempotency_key": "a\\tb"}', "refused"),
]


async def test_every_kind_of_poison_is_dead_lettered_with_its_reason_and_acknowledged(
    jetstream: JetStream,
) -> None:
    async with Runtime(store="memory", agents=[echo()]) as runtime:
        async with intake(runtime, jetstream, max_input_chars=50) as taking:
            for message_id, body, _ in POISON:
                await jetstream.publish(body, **{"Nats-Msg-Id": message_id})
            letters = await jetstream.dead_letters(len(POISON))
            await eventually(lambda: settled(jetstream))
        by_id = {(letter.headers or {})["Keel-Original-Msg-Id"]: letter for letter in letters}
        for message_id, body, code in POISON:
            letter = by_id[message_id]
            headers = letter.headers or {}
            assert letter.data == body
            assert (headers["Keel-Reason-Code"], headers["Keel-Source"]) == (
                code,
                jetstream.subject,
            )
            assert headers["Keel-Reason"]
            assert "Nats-Msg-Id" not in headers  # or JetStream would take it for a duplicate
        assert await runs(runtime) == []
        assert taking.counts.dead_lettered == len(POISON)


async def test_a_message_is_delivered_again_while_the_store_is_down_then_makes_one_run(
    jetstream: JetStream,
) -> None:
    store = FailingStore(times=2)
    async with Runtime(store=store, agents=[echo()]) as runtime:
        async with intake(runtime, jetstream, retry_delay_s=0.01) as taking:
            replies = await jetstream.listen()
            await jetstream.publish(
                {"agent": "echo", "input": "Hi"}, **{"Keel-Reply-To": jetstream.replies}
            )
            reply = json.loads((await next_message(replies)).data)
        assert reply["status"] == "completed"
        assert await runs(runtime) == [reply["run_id"]]
        assert (store.failed, taking.counts.retried, taking.counts.received) == (2, 2, 3)


async def test_a_message_that_keeps_failing_is_dead_lettered_after_max_deliveries(
    jetstream: JetStream,
) -> None:
    store = FailingStore(times=None)
    async with Runtime(store=store, agents=[echo()]) as runtime:
        async with intake(runtime, jetstream, retry_delay_s=0.01, max_deliveries=3):
            await jetstream.publish({"agent": "echo", "input": "Hi"})
            [letter] = await jetstream.dead_letters(1)
            await eventually(lambda: settled(jetstream))
        headers = letter.headers or {}
        assert headers["Keel-Reason-Code"] == "too_many_failures"
        assert "tried 3 times" in headers["Keel-Reason"]
        assert "the database is down" in headers["Keel-Reason"]
        assert store.failed == 3


async def test_the_intake_holds_no_more_messages_than_its_prefetch(jetstream: JetStream) -> None:
    store = BlockingStore()
    async with Runtime(store=store, agents=[echo()]) as runtime:
        async with intake(runtime, jetstream, prefetch=2) as taking:
            for _ in range(5):
                await jetstream.publish({"agent": "echo", "input": "Hi"})
            await asyncio.wait_for(store.until_waiting(2), _SAFETY_S)
            # Two are held, unacknowledged, while their runs are not durable; three wait.
            assert await jetstream.pending(jetstream.durable) == (3, 2)

            async def all_accepted() -> bool:
                return taking.counts.accepted == 5

            store.release.set()
            await eventually(all_accepted)
        assert store.most_waiting == 2


async def test_a_reply_owed_outlives_the_intake_that_accepted_the_message(
    jetstream: JetStream, tmp_path: Path
) -> None:
    path = tmp_path / "keel.db"
    replies = await jetstream.listen()
    async with Runtime(store=path, agents=[echo()]) as runtime:
        async with intake(runtime, jetstream, drive=False) as taking:
            await jetstream.publish(
                {"agent": "echo", "input": "Hi"}, **{"Keel-Reply-To": jetstream.replies}
            )

            async def accepted() -> bool:
                return taking.counts.accepted == 1

            await eventually(accepted)
        [run_id] = await runs(runtime)
    async with Runtime(store=path, agents=[echo()]) as restarted, intake(restarted, jetstream):
        reply = json.loads((await next_message(replies)).data)
    assert (reply["run_id"], reply["status"], reply["output"]) == (run_id, "completed", "echo: Hi")


async def test_an_intake_killed_after_submitting_before_acknowledging_makes_no_second_run(
    jetstream: JetStream, tmp_path: Path
) -> None:
    path = tmp_path / "keel.db"
    subjects = [jetstream.subject, jetstream.dead, f"{jetstream.subject}.outbox"]
    await jetstream.js.add_stream(name=jetstream.stream, subjects=subjects)
    await jetstream.publish({"agent": "echo", "input": "Hi"})
    where = f"{jetstream.subject}:{jetstream.stream}:{jetstream.durable}"
    out = await died(await start_dying("nats", jetstream.url, where, str(path)))
    [submitted] = [line.split()[1] for line in out.splitlines() if line.startswith("submitted")]
    async with SQLiteStore(path) as store:
        assert [r.run_id for r in await store.list_runs(limit=None)] == [submitted]
    # Unacknowledged, the message is delivered again once the consumer's ack wait (set short
    # by the dying intake) passed: the same run.
    async with Runtime(store=path, agents=[echo()]) as runtime:
        async with intake(runtime, jetstream, drive=False, ack_wait_s=1) as taking:

            async def accepted() -> bool:
                return taking.counts.accepted == 1

            await eventually(accepted)
        assert await runs(runtime) == [submitted]
        assert taking.counts.received == 1


async def test_a_stream_that_does_not_take_the_subjects_is_refused(jetstream: JetStream) -> None:
    await jetstream.js.add_stream(name=jetstream.stream, subjects=[jetstream.subject])
    async with Runtime(store="memory", agents=[echo()]) as runtime:
        with pytest.raises(IntakeError, match=r"does not take .*\.dead, .*\.outbox"):
            await intake(runtime, jetstream).start()
        await jetstream.js.delete_stream(jetstream.stream)
        with pytest.raises(IntakeError, match="has no stream"):
            await intake(runtime, jetstream, create_stream=False).start()


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"url": "amqp://127.0.0.1"}, "NATS URL"),
        ({"stream": "KEEL.RUNS"}, "stream must be a non-empty name"),
        ({"subject": "keel.runs.*"}, "without wildcards"),
        ({"subject": "a", "outbox_subject": "a"}, "three different subjects"),
        ({"ack_wait_s": 0.5}, "ack_wait_s must be at least 1 second"),
    ],
)
def test_bad_settings_are_refused_before_connecting(
    options: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        NatsIntake(Runtime(store="memory"), **options)
