"""Runs submitted as messages: a RabbitMQ queue or a NATS JetStream subject feeds a runtime.

::

    runtime = Runtime(agents=[support])
    async with RabbitMQIntake(runtime, url="amqp://guest:guest@127.0.0.1/", queue="keel.runs"):
        ...  # each message {"agent": "support", "input": "..."} becomes a durable run

A message is acknowledged only once its run is durable; its message id is the run's
idempotency key, so a redelivered message finds the run it created instead of making a second
one. A message that asks for a reply gets one when its run stops. A message that can never
become a run goes to a dead-letter queue or subject with the reason, and a failure that may
pass (the store down) is tried again with backoff, at most ``max_deliveries`` times. See
docs/guide/queue-intake.md.

``RabbitMQIntake`` needs the ``rabbitmq`` extra (aio-pika) and ``NatsIntake`` the ``nats``
extra (nats-py); each is imported on first use, and using one without its extra raises
:class:`keel.errors.MissingExtraError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.intake._accepting import IntakeCounts
from keel.intake._poison import IntakeError, PoisonMessage
from keel.intake._request import RunRequest, parse_request

if TYPE_CHECKING:
    from keel.intake._nats import NatsIntake
    from keel.intake._rabbitmq import RabbitMQIntake

__all__ = [
    "IntakeCounts",
    "IntakeError",
    "NatsIntake",
    "PoisonMessage",
    "RabbitMQIntake",
    "RunRequest",
    "parse_request",
]


def __getattr__(name: str) -> Any:
    if name == "RabbitMQIntake":
        from keel.intake._rabbitmq import RabbitMQIntake

        return RabbitMQIntake
    if name == "NatsIntake":
        from keel.intake._nats import NatsIntake

        return NatsIntake
    raise AttributeError(f"module 'keel.intake' has no attribute {name!r}")
