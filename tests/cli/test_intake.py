"""``keel intake`` as a real subprocess: it takes runs from RabbitMQ or NATS, replies when they
stop, stops cleanly on SIGTERM with a summary, never prints a broker password, and says what is
missing when it is not told where runs come from."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nats import JetStream, jetstream, nats_url, next_message
from tests.rabbitmq import Broker, rabbitmq, rabbitmq_url

__all__ = ["jetstream", "nats_url", "rabbitmq", "rabbitmq_url"]  # the broker fixtures

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "tests" / "intake" / "echo_app.py")
_SAFETY_S = 20.0


def start(*args: str, db: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    env["KEEL_DB"] = str(db)
    return subprocess.Popen(
        [sys.executable, "-m", "keel", "intake", APP, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, then the exit: its stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.to_thread(process.communicate, timeout=_SAFETY_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    return err


async def test_keel_intake_takes_runs_from_rabbitmq_and_replies(
    rabbitmq: Broker, tmp_path: Path
) -> None:
    await rabbitmq.declare(rabbitmq.queue)
    process = start("--rabbitmq", rabbitmq.url, "--queue", rabbitmq.queue, db=tmp_path / "k.db")
    await rabbitmq.publish(
        {"agent": "echo", "input": "Hi"}, message_id="m-1", reply_to=rabbitmq.replies
    )
    reply = json.loads((await rabbitmq.take(rabbitmq.replies)).body)
    err = await stop(process)
    assert (reply["status"], reply["output"]) == ("completed", "echo: Hi")
    assert "intake stopped: 1 accepted, 0 dead-lettered" in err
    assert "guest:***@" in err  # the URL as it was given, password masked
    assert "guest:guest@" not in err


async def test_keel_intake_takes_runs_from_nats_and_replies(
    jetstream: JetStream, tmp_path: Path
) -> None:
    subjects = [jetstream.subject, jetstream.dead, f"{jetstream.subject}.outbox"]
    await jetstream.js.add_stream(name=jetstream.stream, subjects=subjects)
    replies = await jetstream.listen()
    process = start(
        "--nats",
        jetstream.url,
        "--subject",
        jetstream.subject,
        "--stream",
        jetstream.stream,
        "--durable",
        jetstream.durable,
        db=tmp_path / "k.db",
    )
    await jetstream.publish(
        {"agent": "echo", "input": "Hi"}, **{"Keel-Reply-To": jetstream.replies}
    )
    reply = json.loads((await next_message(replies)).data)
    err = await stop(process)
    assert (reply["status"], reply["output"]) == ("completed", "echo: Hi")
    assert "intake stopped: 1 accepted" in err


@pytest.mark.parametrize(
    "args",
    [(), ("--rabbitmq", "amqp://127.0.0.1/", "--nats", "nats://127.0.0.1:4222")],
    ids=["neither", "both"],
)
def test_keel_intake_needs_one_source_of_runs(args: tuple[str, ...], tmp_path: Path) -> None:
    process = start(*args, db=tmp_path / "k.db")
    _, err = process.communicate(timeout=_SAFETY_S)
    assert process.returncode == 2
    assert "--rabbitmq amqp://... or --nats nats://..." in err
