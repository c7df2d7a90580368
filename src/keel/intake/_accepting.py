"""What every transport shares: a message body becomes a durable run, or a reason it cannot;
how long a transient failure waits before the next try; and what an intake counts.

A transport acknowledges a message only after :meth:`Acceptance.accept` returned: by then
``Runtime.submit`` has made the run durable, with the message's idempotency key. A crash
before the acknowledgement redelivers the message, and submitting it again finds the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from keel import Runtime, UsageError
from keel.errors import ConfigurationError
from keel.intake._poison import PoisonMessage, reason_text
from keel.intake._request import RunRequest, parse_request

__all__ = ["REPLY_WATCHERS", "Acceptance", "IntakeCounts", "IntakeOptions", "describe", "log"]

log = logging.getLogger("keel.intake")

#: The fewest outbox records watched at once (``prefetch``, if it is more). Each watcher waits
#: on one run for up to ``reply_check_s``; with more replies owed than watchers, a record waits
#: its turn, so a reply may come up to (owed / watchers) x reply_check_s after its run stopped.
REPLY_WATCHERS = 64


@dataclass(slots=True)
class IntakeCounts:
    """What an intake did since it started.

    Attributes:
        received: Messages delivered to it (redeliveries included).
        accepted: Messages acknowledged with their run durable (a redelivered message whose
            run existed counts again).
        retried: Tries that failed for a reason that may pass (the store down), put back for
            another try.
        dead_lettered: Messages sent to the dead-letter destination.
        replied: Replies published for runs that stopped.
    """

    received: int = 0
    accepted: int = 0
    retried: int = 0
    dead_lettered: int = 0
    replied: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeOptions:
    """The settings every transport shares (see :class:`keel.intake.RabbitMQIntake`)."""

    prefetch: int = 16
    max_deliveries: int = 5
    retry_delay_s: float = 1.0
    max_retry_delay_s: float = 60.0
    max_input_chars: int = 100_000
    drive: bool = True
    concurrency: int = 8
    reply_check_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("prefetch", "max_deliveries", "max_input_chars", "concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"{name} must be a whole number of at least 1, got {value!r}"
                )
        for name in ("retry_delay_s", "max_retry_delay_s", "reply_check_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(
                    f"{name} must be a positive number of seconds, got {value!r}"
                )

    @property
    def watchers(self) -> int:
        """How many outbox records are watched at once."""
        return max(self.prefetch, REPLY_WATCHERS)

    def backoff(self, failures: int) -> float:
        """How long to wait after the ``failures``-th failed try: ``retry_delay_s``, doubled
        each time, at most ``max_retry_delay_s``."""
        return float(min(self.retry_delay_s * 2 ** max(failures - 1, 0), self.max_retry_delay_s))


class Acceptance:
    """Turns message bodies into durable runs of ``runtime``'s agents."""

    def __init__(
        self, runtime: Runtime, options: IntakeOptions, *, stopping: asyncio.Event
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.counts = IntakeCounts()
        self._stopping = stopping

    async def accept(self, body: bytes, *, default_key: str | None) -> tuple[RunRequest, str]:
        """Submit the run ``body`` asks for; the request and the run's id (the earlier run's,
        for a message seen before).

        Raises :class:`PoisonMessage` for a message no retry can help; any other exception is
        a failure that may pass (the store down) and the message should be tried again.
        """
        request = parse_request(
            body,
            agents=self.runtime.agents.keys(),
            max_input_chars=self.options.max_input_chars,
            default_key=default_key,
        )
        agent = self.runtime.agents[request.agent]
        try:
            run_id = await self.runtime.submit(
                agent,
                request.input,
                thread=request.thread,
                tenant=request.tenant,
                user=request.user,
                roles=request.roles,
                idempotency_key=request.idempotency_key,
            )
        except UsageError as exc:  # the request, not the moment: it would be refused again
            raise PoisonMessage("refused", exc.message) from None
        self.counts.accepted += 1
        return request, run_id

    def exhausted(self, failures: int, error: BaseException) -> PoisonMessage | None:
        """After the ``failures``-th failed try: the dead letter to send when no try is left,
        else ``None`` (count the retry; try again after :meth:`IntakeOptions.backoff`)."""
        if failures >= self.options.max_deliveries:
            return PoisonMessage(
                "too_many_failures",
                f"tried {failures} times (max_deliveries); the last try failed with "
                f"{describe(error)}",
            )
        self.counts.retried += 1
        log.warning(
            "a message could not be submitted (try %d of %d), trying again in %.3gs: %s",
            failures,
            self.options.max_deliveries,
            self.options.backoff(failures),
            describe(error),
        )
        return None

    async def pause(self, failures: int) -> None:
        """Wait before the next try, on the runtime's clock; cut short when the intake stops
        (the message is then put back at once, its count kept)."""
        sleeping = asyncio.ensure_future(self.runtime.clock.sleep(self.options.backoff(failures)))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (sleeping, stopping):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter


def describe(error: BaseException) -> str:
    """An error in one line, without any password."""
    text = getattr(error, "message", None) or str(error) or ""
    return reason_text(f"{type(error).__name__}: {text}" if text else type(error).__name__)
