"""Runs submitted as messages on a NATS JetStream subject (the ``nats`` extra: nats-py).

Messages are taken from a stream through a durable pull consumer (explicit acks,
``max_ack_pending`` = ``prefetch``), fetched only when a handler is free, so this process never
holds more than ``prefetch`` unacknowledged messages. A failure that may pass is given back
with a delayed ``nak`` (the backoff); JetStream counts the deliveries. The outbox is a second
durable consumer on the same stream: a record whose run is still going is given back with a
``nak`` to look at again.

Without a stream, :meth:`NatsIntake.start` creates one taking the run, dead-letter and outbox
subjects, with work-queue retention (a message leaves the stream once acknowledged; dead
letters stay until someone takes them). An existing stream is used as it is, if it takes all
three subjects.
"""

from __future__ import annotations

try:
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.api import (
        AckPolicy,
        ConsumerConfig,
        DeliverPolicy,
        RetentionPolicy,
        StorageType,
    )
except ImportError as exc:  # pragma: no cover - exercised where nats-py is missing
    from keel.errors import MissingExtraError

    raise MissingExtraError(package="nats-py", extra="nats", feature="The NATS intake") from exc

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

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
from keel.intake._subjects import covers

__all__ = ["CORRELATION_HEADER", "REPLY_HEADER", "NatsIntake"]

#: The header a message names its reply subject in (a JetStream message's own reply subject
#: is its acknowledgement's).
REPLY_HEADER = "Keel-Reply-To"
#: The request's correlation id, echoed on its reply.
CORRELATION_HEADER = "Keel-Correlation-Id"
_MSG_ID = "Nats-Msg-Id"
_ORIGINAL_ID = "Keel-Original-Msg-Id"
_CONNECT_TIMEOUT_S = 10.0
# A fetch asks the server for one message and waits up to this long for it. One at a time: a
# request the server still holds when the intake goes would take a message and keep it from
# everyone for the ack wait; a one-message request is done when it delivers, and stop() lets
# the last one end (waiting at most this long) instead of abandoning it.
_FETCH_WAIT_S = 1.0


class NatsIntake(BaseIntake):
    """Takes runs from a NATS JetStream subject: each message becomes a durable run, its reply
    (if asked with the header ``Keel-Reply-To``) is published when the run stops, and a
    message that cannot become a run goes to the dead-letter subject.

    Args:
        runtime: Submits the runs; its registered agents are the ones messages may name.
        url: The server, e.g. ``nats://127.0.0.1:4222`` (a password in it never appears in a
            log or an error).
        stream: The JetStream stream holding ``subject`` (created if missing, see the module).
        subject: The subject messages arrive on.
        durable: The durable consumer's name; intakes sharing it share the messages.
        dead_letter_subject: Where messages that cannot become runs go, with the headers
            ``Keel-Reason-Code`` and ``Keel-Reason`` (default ``<subject>.dead``).
        outbox_subject: Where replies owed wait until their run stops (default
            ``<subject>.outbox``).
        create_stream: Create ``stream`` if it does not exist.
        ack_wait_s: How long a delivery may stay unacknowledged before JetStream delivers it
            again: how soon the message of an intake that died is taken up by another.
        prefetch: The most messages held unacknowledged at once (the consumer's
            ``max_ack_pending``, shared by every intake on ``durable``).
        max_deliveries, retry_delay_s, max_retry_delay_s, max_input_chars, drive,
        concurrency, reply_check_s: As for :class:`keel.intake.RabbitMQIntake`.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        url: str = "nats://127.0.0.1:4222",
        stream: str = "KEEL_RUNS",
        subject: str = "keel.runs",
        durable: str = "keel-intake",
        dead_letter_subject: str | None = None,
        outbox_subject: str | None = None,
        create_stream: bool = True,
        ack_wait_s: float = 30.0,
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
        if not isinstance(url, str) or not url.startswith(("nats://", "tls://")):
            raise ConfigurationError(
                f"url must be a NATS URL such as nats://127.0.0.1:4222, got "
                f"{redact_url(str(url))!r}"
            )
        self.url = url
        self.stream = _name("stream", stream, subject_like=False)
        self.subject = _name("subject", subject, subject_like=True)
        self.durable = _name("durable", durable, subject_like=False)
        self.dead_letter_subject = _name(
            "dead_letter_subject", dead_letter_subject or f"{subject}.dead", subject_like=True
        )
        self.outbox_subject = _name(
            "outbox_subject", outbox_subject or f"{subject}.outbox", subject_like=True
        )
        subjects = (self.subject, self.dead_letter_subject, self.outbox_subject)
        if len(set(subjects)) < 3 or any("*" in s or ">" in s for s in subjects):
            raise ConfigurationError(
                "subject, dead_letter_subject and outbox_subject must be three different "
                "subjects without wildcards"
            )
        self.create_stream = create_stream
        if isinstance(ack_wait_s, bool) or not isinstance(ack_wait_s, int | float):
            raise ConfigurationError(f"ack_wait_s must be a number of seconds, got {ack_wait_s!r}")
        if not ack_wait_s >= 1:
            raise ConfigurationError(f"ack_wait_s must be at least 1 second, got {ack_wait_s!r}")
        self.ack_wait_s = float(ack_wait_s)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._pullers: list[asyncio.Task[None]] = []
        self._pulling = True

    def __repr__(self) -> str:
        return f"NatsIntake({redact_url(self.url)!r}, subject={self.subject!r})"

    # --- connecting ---------------------------------------------------------------------------

    async def _open(self) -> None:
        nc = self._nc = Client()
        failures: list[Exception] = []

        async def on_error(error: Exception) -> None:
            if nc.is_connected or not failures:
                log.warning("intake: NATS connection: %s", describe(error))
            failures.append(error)  # while connecting the first time: said once, at the end

        try:
            # Reconnect forever once connected; the first connection is bounded here.
            await asyncio.wait_for(
                nc.connect(
                    self.url,
                    name="keel-intake",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=on_error,
                ),
                _CONNECT_TIMEOUT_S,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            cause = failures[-1] if failures else exc
            raise IntakeError(
                f"cannot connect to NATS at {redact_url(self.url)} within "
                f"{_CONNECT_TIMEOUT_S:g}s: {describe(cause)}; check that the server runs there "
                "(with JetStream on) and the URL's credentials"
            ) from None
        js = self._js = nc.jetstream()
        await self._ensure_stream(js)
        options = self.options
        runs = await self._consumer(
            js, self.subject, self.durable, self.ack_wait_s, options.prefetch
        )
        outbox = await self._consumer(
            js,
            self.outbox_subject,
            f"{self.durable}-outbox",
            options.reply_check_s + 30,  # a watcher holds a record up to reply_check_s
            options.watchers,
        )
        self._pullers = [
            asyncio.create_task(
                self._pull(runs, self._handle, limit=options.prefetch), name="keel-intake-runs"
            ),
            asyncio.create_task(
                self._pull(outbox, self._watch, limit=options.watchers, watcher=True),
                name="keel-intake-outbox",
            ),
        ]
        log.info("intake: taking runs from NATS subject %s (stream %s)", self.subject, self.stream)

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        wanted = [self.subject, self.dead_letter_subject, self.outbox_subject]
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            if not self.create_stream:
                raise IntakeError(
                    f"NATS has no stream {self.stream!r}; create it with the subjects "
                    f"{', '.join(wanted)} (or pass create_stream=True)"
                ) from None
            await js.add_stream(
                name=self.stream,
                subjects=wanted,
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
            )
            return
        taken = info.config.subjects or []
        missing = [s for s in wanted if not any(covers(pattern, s) for pattern in taken)]
        if missing:
            raise IntakeError(
                f"NATS stream {self.stream!r} does not take {', '.join(missing)} (its subjects: "
                f"{', '.join(taken) or 'none'}); add them to the stream, or choose subjects it "
                "takes"
            )

    async def _consumer(
        self, js: JetStreamContext, subject: str, durable: str, ack_wait_s: float, limit: int
    ) -> JetStreamContext.PullSubscription:
        config = ConsumerConfig(
            durable_name=durable,
            filter_subject=subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait_s,
            # Unbounded here: the intake counts deliveries itself and dead-letters with the
            # reason, where the server would drop the message silently.
            max_deliver=-1,
            max_ack_pending=limit,
        )
        try:
            await js.add_consumer(self.stream, config)
            return await js.pull_subscribe_bind(durable, stream=self.stream)
        except nats.errors.Error as exc:
            raise IntakeError(
                f"NATS refused consumer {durable!r} on stream {self.stream!r}: {describe(exc)}; "
                "if it exists with other settings, delete it or choose another durable name"
            ) from None

    async def _stop_receiving(self) -> None:
        self._pulling = False
        pullers, self._pullers = self._pullers, []
        _, stuck = await asyncio.wait(pullers, timeout=_FETCH_WAIT_S + 5) if pullers else ((), ())
        for task in stuck:  # a fetch that outlived its own expiry: the connection is gone
            task.cancel()
        await asyncio.gather(*pullers, return_exceptions=True)

    async def _close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _pull(
        self,
        subscription: JetStreamContext.PullSubscription,
        handle: Callable[[Msg], Awaitable[None]],
        *,
        limit: int,
        watcher: bool = False,
    ) -> None:
        """Fetch a message whenever one of ``limit`` handlers is free, and hand it to a
        handler task."""
        free = asyncio.Semaphore(limit)
        while self._pulling:
            await free.acquire()
            try:
                [message] = await subscription.fetch(batch=1, timeout=_FETCH_WAIT_S)
            except (nats.errors.TimeoutError, TimeoutError):
                free.release()
                continue
            except nats.errors.Error as exc:
                free.release()
                log.warning("intake: fetching from NATS failed: %s", describe(exc))
                await asyncio.sleep(_FETCH_WAIT_S)  # the client reconnects meanwhile
                continue
            if not self._pulling:  # fetched while stopping: back at once, for another intake
                free.release()
                with contextlib.suppress(nats.errors.Error):
                    await message.nak()
                return
            work = _released(self._given_back_unless_settled(handle, message), free)
            self._spawn(work, "keel-intake-nats", watcher=watcher)

    async def _given_back_unless_settled(
        self, handle: Callable[[Msg], Awaitable[None]], message: Msg
    ) -> None:
        """Handle ``message``; if the handler fails before settling it (JetStream unreachable
        while dead-lettering), or stopping cancels it, give the message back with a ``nak``
        (after a backoff, or at once) rather than leave it to the ack wait."""
        try:
            await handle(message)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # settled already, or the connection is gone
                await message.nak()
            raise
        except Exception:
            with contextlib.suppress(Exception):
                await message.nak(delay=self.options.backoff(1))
            raise

    # --- run messages -------------------------------------------------------------------------

    async def _handle(self, message: Msg) -> None:
        self.counts.received += 1
        meta = message.metadata
        headers = message.headers or {}
        source = headers.get(_MSG_ID) or (
            f"nats:{meta.stream}:{meta.sequence.stream}:{meta.timestamp.isoformat()}"
        )
        deliveries = meta.num_delivered
        if deliveries > self.options.max_deliveries:  # earlier tries died with their process
            await self._dead_letter(
                message,
                PoisonMessage(
                    "too_many_failures",
                    f"delivered {deliveries} times without being handled (max_deliveries "
                    f"{self.options.max_deliveries})",
                ),
            )
            return
        try:
            _, run_id = await self._acceptance.accept(message.data, default_key=derived_key(source))
            reply_to = headers.get(REPLY_HEADER)
            if reply_to:
                record = OutboxRecord(
                    run_id=run_id,
                    reply_to=reply_to,
                    correlation_id=headers.get(CORRELATION_HEADER),
                )
                # Deduplicated by JetStream: a redelivered message owes one reply, not two.
                await self._jetstream().publish(
                    self.outbox_subject, record.encode(), headers={_MSG_ID: f"keel-reply:{run_id}"}
                )
        except PoisonMessage as poison:
            await self._dead_letter(message, poison)
            return
        except Exception as exc:  # noqa: BLE001 - a failure that may pass: try again later
            exhausted = self._acceptance.exhausted(deliveries, exc)
            if exhausted is not None:
                await self._dead_letter(message, exhausted)
            else:
                await message.nak(delay=self.options.backoff(deliveries))
            return
        await message.ack()

    async def _dead_letter(self, message: Msg, poison: PoisonMessage) -> None:
        original = message.headers or {}
        # The server's headers stay behind: a copied Nats-Msg-Id would be taken for a duplicate.
        headers = {k: v for k, v in original.items() if not k.startswith("Nats-")}
        if _MSG_ID in original:
            headers[_ORIGINAL_ID] = original[_MSG_ID]
        headers |= {
            CODE_HEADER: poison.code,
            REASON_HEADER: poison.reason,
            SOURCE_HEADER: self.subject,
        }
        await self._jetstream().publish(self.dead_letter_subject, message.data, headers=headers)
        self.counts.dead_lettered += 1
        log.warning(
            "intake: message %s dead-lettered to %s [%s]: %s",
            original.get(_MSG_ID, "(no id)"),
            self.dead_letter_subject,
            poison.code,
            poison.reason,
        )
        reply_to = original.get(REPLY_HEADER)
        if reply_to:
            await self._reply(
                reply_to,
                original.get(CORRELATION_HEADER),
                rejected_reply(poison.code, poison.reason),
            )
        await message.ack()

    # --- replies ------------------------------------------------------------------------------

    async def _watch(self, delivery: Msg) -> None:
        record = OutboxRecord.decode(delivery.data)
        if record is None:
            log.error("intake: dropped an outbox record that is not one: %r", delivery.data[:200])
            await delivery.ack()
            return
        try:
            result = await stopped(self.runtime, record.run_id, within_s=self.options.reply_check_s)
        except RunNotFoundError:
            log.warning("intake: run %s is gone (deleted); its reply is dropped", record.run_id)
            await delivery.ack()
            return
        if result is None:  # still under way: look again
            await delivery.nak()
            return
        await self._reply(record.reply_to, record.correlation_id, run_reply(result))
        self.counts.replied += 1
        await delivery.ack()

    async def _reply(self, reply_to: str, correlation_id: str | None, body: bytes) -> None:
        """Publish a reply: through JetStream (confirmed) when a stream takes its subject, else
        to whoever subscribes to it now."""
        headers = {"Content-Type": "application/json"}
        if correlation_id:
            headers[CORRELATION_HEADER] = correlation_id
        js = self._jetstream()
        try:
            await js.find_stream_name_by_subject(reply_to)
        except nats.js.errors.NotFoundError:
            nc = self._nc
            assert nc is not None
            await nc.publish(reply_to, body, headers=headers)
            await nc.flush()
            return
        await js.publish(reply_to, body, headers=headers)

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise IntakeError("the intake is not connected")
        return self._js


async def _released(work: Awaitable[None], free: asyncio.Semaphore) -> None:
    try:
        await work
    finally:
        free.release()


def _name(what: str, value: object, *, subject_like: bool) -> str:
    allowed = "letters, digits, '-', '_'" + (" and '.'" if subject_like else "")
    bad = not isinstance(value, str) or not value or any(c.isspace() for c in value)
    if not bad and not subject_like and any(c in value for c in ".*>"):  # type: ignore[operator]
        bad = True
    if bad:
        raise ConfigurationError(f"{what} must be a non-empty name of {allowed}, got {value!r}")
    assert isinstance(value, str)
    return value
