"""Replies and outbox records: what a reply says about a run that did not complete, and
outbox records that survive a round trip while anything else is refused."""

from __future__ import annotations

import json

import pytest

from keel import Agent, Limits, Runtime
from keel.intake._replies import OutboxRecord, rejected_reply, run_reply
from keel.testing import ScriptedModel, call


async def test_a_reply_for_a_run_that_did_not_complete_has_its_reason_and_no_output() -> None:
    looping = Agent(
        name="looping",
        model=ScriptedModel([call("missing_tool")] * 3),
        limits=Limits(max_steps=1),
    )
    async with Runtime(store="memory") as runtime:
        result = await runtime.run(looping, "Hi")
    reply = json.loads(run_reply(result))
    assert (reply["run_id"], reply["status"], reply["output"]) == (result.run_id, "paused", None)
    assert result.reason is not None
    assert reply["reason"] == {"code": result.reason.code, "message": result.reason.message}


def test_a_rejected_reply_names_the_reason() -> None:
    assert json.loads(rejected_reply("not_json", "the body is not JSON")) == {
        "run_id": None,
        "status": "rejected",
        "reason": {"code": "not_json", "message": "the body is not JSON"},
    }


def test_an_outbox_record_survives_a_round_trip() -> None:
    record = OutboxRecord(run_id="run_1", reply_to="replies", correlation_id="ask-1")
    assert OutboxRecord.decode(record.encode()) == record
    bare = OutboxRecord(run_id="run_1", reply_to="replies")
    assert OutboxRecord.decode(bare.encode()) == bare


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"run_id": "run_1"}',
        b'{"run_id": 1, "reply_to": "replies"}',
        b'{"run_id": "run_1", "reply_to": ""}',
        b'{"run_id": "run_1", "reply_to": "replies", "correlation_id": 7}',
    ],
)
def test_anything_else_on_the_outbox_is_not_a_record(body: bytes) -> None:
    assert OutboxRecord.decode(body) is None
