"""Runs submitted as messages on a RabbitMQ queue (the ``rabbitmq`` extra: aio-pika).

One connection (reconnected by aio-pika when it drops), two channels with publisher confirms:
one consumes the run queue with ``prefetch`` unacknowledged messages at most, and publishes the
outbox records, retries and dead letters; the other consumes the outbox and publishes replies.
Every publish is confirmed by the broker before the message it stands for is acknowledged.

Retries: a try that fails for a reason that may pass (the store down) holds the message for
its backoff, then publishes a copy to the back of the queue with the header
``x-keel-attempts`` counting the failed tries, and acknowledges the original: the count
survives restarts on any queue type (RabbitMQ counts deliveries only on quorum queues, whose
``x-delivery-count`` is read too). A copy that reached ``max_deliveries`` is dead-lettered.
"""

from __future__ import annotations

try:
    import aio_pika
    from aio_pika.abc import (
        AbstractChannel,
        AbstractIncomingMessage,
        AbstractQueue,
        AbstractRobustConnection,
    )
    from aio_pika.exceptions import AMQPError
    from aiormq.abc import DeliveredMessage
except ImportError as exc:  # pragma: no cover - exercised where aio-pika is missing
    from keel.errors import MissingExtraError

    raise MissingExtraError(
        package="aio-pika", extra="rabbitmq", feature="The RabbitMQ intake"
    ) from exc

import contextlib
from collections.abc import Coroutine
from typing import Any

from keel import Runtime
from keel._redact import redact_url
from keel.errors import ConfigurationError, RunNotFoundError
from keel.intake._accepting import IntakeOptions, describe, log
from keel.intake._base import BaseIntake
from keel.intake._poison import (
    CODE_HEADER,
    REASON_HEADER,
    SOURCE_HEADER,
    IntakeError,
    PoisonMessage,
)
from keel.intake._replies import OutboxRecord, rejected_reply, run_reply, stopped
from keel.intake._request import derived_key

__all__ = ["ATTEMPTS_HEADER", "RabbitMQIntake"]

#: How many tries of a message failed for a reason that may pass.
ATTEMPTS_HEADER = "x-keel-attempts"
_DELIVERY_COUNT = "x-delivery-count"  # quorum queues: earlier deliveries
_JSON = "application/json"


class RabbitMQIntake(BaseIntake):
    """Takes runs from a RabbitMQ queue: each message becomes a durable run, its reply (if
    asked) is published when the run stops, and a message that cannot become a run goes to
    the dead-letter queue.

    Args:
        runtime: Submits the runs; its registered agents are the ones messages may name.
        url: The broker, e.g. ``amqp://guest:guest@127.0.0.1/`` (its password never appears
            in a log or an error).
        queue: The queue messages arrive on (declared durable if missing).
        dead_letter_queue: Where messages that cannot become runs go, with the headers
            ``Keel-Reason-Code`` and ``Keel-Reason`` (default ``<queue>.dead``).
        outbox_queue: Where replies owed wait until their run stops (default
            ``<queue>.outbox``).
        queue_arguments: Arguments ``queue`` was declared with, if it exists with some (e.g.
            ``{"x-queue-type": "quorum"}``): RabbitMQ refuses a declaration that differs.
        prefetch: The most messages held unacknowledged at once (backpressure).
        max_deliveries: The most tries of a message that keeps failing for a reason that may
            pass, before it is dead-lettered.
        retry_delay_s: The wait after the first failed try, doubled after each further one...
        max_retry_delay_s: ... up to this.
        max_input_chars: The longest input accepted.
        drive: Also drive the accepted runs in this process (a worker), as well as any
            ``keel worker`` sharing the store; ``False`` leaves them to the workers.
        concurrency: Runs the in-process worker drives at once.
        reply_check_s: How long the reply watcher waits on one run before putting its record
            back to look again (so no delivery is held for long).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        url: str,
        queue: str = "keel.runs",
        dead_letter_queue: str | None = None,
        outbox_queue: str | None = None,
        queue_arguments: dict[str, Any] | None = None,
        prefetch: int = 16,
        max_deliveries: int = 5,
        retry_delay_s: float = 1.0,
        max_retry_delay_s: float = 60.0,
        max_input_chars: int = 100_000,
        drive: bool = True,
        concurrency: int = 8,
        reply_check_s: float = 30.0,
    ) -> None:
        super().__init__(
            runtime,
            IntakeOptions(
                prefetch=prefetch,
                max_deliveries=max_deliveries,
                retry_delay_s=retry_delay_s,
                max_retry_delay_s=max_retry_delay_s,
                max_input_chars=max_input_chars,
                drive=drive,
                concurrency=concurrency,
                reply_check_s=reply_check_s,
            ),
        )
        if not isinstance(url, str) or not url.startswith(("amqp://", "amqps://")):
            raise ConfigurationError(
                f"url must be an AMQP URL such as amqp://user:password@host:5672/, got "
                f"{redact_url(str(url))!r}"
            )
        names = {
            "queue": queue,
            "dead_letter_queue": dead_letter_queue,
            "outbox_queue": outbox_queue,
        }
        for name, value in names.items():
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigurationError(f"{name} must be a non-empty queue name, got {value!r}")
        self.url = url
        self.queue = queue
        self.dead_letter_queue = dead_letter_queue or f"{queue}.dead"
        self.outbox_queue = outbox_queue or f"{queue}.outbox"
        if len({self.queue, self.dead_letter_queue, self.outbox_queue}) < 3:
            raise ConfigurationError(
                "queue, dead_letter_queue and outbox_queue must be three different queues"
            )
        self.queue_arguments = queue_arguments
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []

    def __repr__(self) -> str:
        return f"RabbitMQIntake({redact_url(self.url)!r}, queue={self.queue!r})"

    # --- connecting ---------------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            self._connection = await aio_pika.connect_robust(
                self.url, client_properties={"connection_name": "keel-intake"}
            )
        except (AMQPError, OSError) as exc:
            raise IntakeError(
                f"cannot connect to RabbitMQ at {redact_url(self.url)}: {describe(exc)}; check "
                "that the broker runs there and that the URL's user and password are right"
            ) from None
        channel = await self._connection.channel(publisher_confirms=True)
        self._channel = channel
        await channel.set_qos(prefetch_count=self.options.prefetch)
        runs = await self._declare(channel, self.queue, self.queue_arguments)
        await self._declare(channel, self.dead_letter_queue, None)
        await self._declare(channel, self.outbox_queue, None)
        replies = await self._connection.channel(publisher_confirms=True)
        await replies.set_qos(prefetch_count=self.options.watchers)
        outbox = await replies.get_queue(self.outbox_queue)
        self._consumers = [
            (runs, await runs.consume(self._on_run_message)),
            (outbox, await outbox.consume(self._on_outbox_record)),
        ]
        log.info("intake: taking runs from RabbitMQ queue %s", self.queue)

    async def _declare(
        self, channel: AbstractChannel, name: str, arguments: dict[str, Any] | None
    ) -> AbstractQueue:
        try:
            return await channel.declare_queue(name, durable=True, arguments=arguments)
        except AMQPError as exc:
            raise IntakeError(
                f"RabbitMQ refused to declare queue {name!r}: {describe(exc)}; if it exists with "
                "other arguments (a quorum queue...), pass the same ones as queue_arguments"
            ) from None

    async def _stop_receiving(self) -> None:
        for queue, tag in self._consumers:
            await queue.cancel(tag)
        self._consumers = []

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    # --- run messages -------------------------------------------------------------------------

    async def _on_run_message(self, message: AbstractIncomingMessage) -> None:
        work = self._given_back_on_failure(message, self._handle(message))
        self._spawn(work, f"keel-intake-{message.delivery_tag}")

    async def _given_back_on_failure(
        self, message: AbstractIncomingMessage, work: Coroutine[Any, Any, None]
    ) -> None:
        """Run ``work``, which settles ``message``; if it fails first (the broker unreachable
        while dead-lettering or republishing), give the message back to the queue after a
        pause, so that it is never held for good."""
        try:
            await work
        except Exception:
            await self._acceptance.pause(1)
            with contextlib.suppress(Exception):  # settled already, or the channel is gone
                await message.nack(requeue=True)
            raise

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        self.counts.received += 1
        failed = _failures(message)
        if failed >= self.options.max_deliveries:  # its tries died with their process
            await self._dead_letter(
                message,
                PoisonMessage(
                    "too_many_failures",
                    f"delivered {failed + 1} times without being handled (max_deliveries "
                    f"{self.options.max_deliveries})",
                ),
            )
            return
        key = None if not message.message_id else derived_key(message.message_id)
        try:
            _, run_id = await self._acceptance.accept(message.body, default_key=key)
            if message.reply_to:
                record = OutboxRecord(
                    run_id=run_id, reply_to=message.reply_to, correlation_id=message.correlation_id
                )
                await self._publish(self.outbox_queue, aio_pika.Message(record.encode()))
        except PoisonMessage as poison:
            await self._dead_letter(message, poison)
            return
        except Exception as exc:  # noqa: BLE001 - a failure that may pass: try again later
            await self._retry(message, exc)
            return
        await message.ack()

    async def _retry(self, message: AbstractIncomingMessage, error: Exception) -> None:
        failures = _failures(message) + 1
        exhausted = self._acceptance.exhausted(failures, error)
        if exhausted is not None:
            await self._dead_letter(message, exhausted)
            return
        await self._acceptance.pause(failures)
        headers = {k: v for k, v in (message.headers or {}).items() if k != _DELIVERY_COUNT}
        copy = _copy(message, {**headers, ATTEMPTS_HEADER: failures})
        await self._publish(self.queue, copy)
        await message.ack()

    async def _dead_letter(self, message: AbstractIncomingMessage, poison: PoisonMessage) -> None:
        headers = {
            **(message.headers or {}),
            CODE_HEADER: poison.code,
            REASON_HEADER: poison.reason,
            SOURCE_HEADER: self.queue,
        }
        await self._publish(self.dead_letter_queue, _copy(message, headers))
        self.counts.dead_lettered += 1
        log.warning(
            "intake: message %s dead-lettered to %s [%s]: %s",
            message.message_id or "(no id)",
            self.dead_letter_queue,
            poison.code,
            poison.reason,
        )
        if message.reply_to:
            await self._reply(
                message.reply_to, message.correlation_id, rejected_reply(poison.code, poison.reason)
            )
        await message.ack()

    # --- replies ------------------------------------------------------------------------------

    async def _on_outbox_record(self, delivery: AbstractIncomingMessage) -> None:
        work = self._given_back_on_failure(delivery, self._watch(delivery))
        self._spawn(work, f"keel-intake-reply-{delivery.delivery_tag}", watcher=True)

    async def _watch(self, delivery: AbstractIncomingMessage) -> None:
        record = OutboxRecord.decode(delivery.body)
        if record is None:
            log.error("intake: dropped an outbox record that is not one: %r", delivery.body[:200])
            await delivery.ack()
            return
        try:
            result = await stopped(self.runtime, record.run_id, within_s=self.options.reply_check_s)
        except RunNotFoundError:
            log.warning("intake: run %s is gone (deleted); its reply is dropped", record.run_id)
            await delivery.ack()
            return
        if result is None:  # still under way: to the back of the outbox, to look again
            await self._publish(self.outbox_queue, aio_pika.Message(delivery.body))
        else:
            await self._reply(record.reply_to, record.correlation_id, run_reply(result))
            self.counts.replied += 1
        await delivery.ack()

    async def _reply(self, reply_to: str, correlation_id: str | None, body: bytes) -> None:
        reply = aio_pika.Message(
            body,
            content_type=_JSON,
            correlation_id=correlation_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await self._publish(reply_to, reply)
        except _UnroutableError:  # no such queue: whoever asked is gone
            log.warning("intake: reply queue %s does not exist; the reply is dropped", reply_to)

    async def _publish(self, queue: str, message: aio_pika.Message) -> None:
        """Publish to ``queue`` through the default exchange; returns once the broker
        confirmed. A message no queue takes raises ``_UnroutableError``."""
        channel = self._channel
        if channel is None:
            raise IntakeError("the intake is not connected")
        message.delivery_mode = aio_pika.DeliveryMode.PERSISTENT
        returned = await channel.default_exchange.publish(message, routing_key=queue)
        if isinstance(returned, DeliveredMessage):  # the broker sent it back: no such queue
            raise _UnroutableError(f"RabbitMQ has no queue {queue!r} to take the message")


class _UnroutableError(IntakeError):
    """A publish to a queue that does not exist."""


def _failures(message: AbstractIncomingMessage) -> int:
    """How many tries of ``message`` failed already: our header, or the broker's count of
    earlier deliveries (a quorum queue's, after crashes), whichever is higher."""
    headers = message.headers or {}
    counted = [headers.get(ATTEMPTS_HEADER), headers.get(_DELIVERY_COUNT)]
    return max(
        (int(c) for c in counted if isinstance(c, int) and not isinstance(c, bool)), default=0
    )


def _copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    """``message`` again, with ``headers``: same body, id, reply destination and type."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )
