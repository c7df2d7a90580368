"""Streamed model text across processes, through Redis pub/sub.

The process that drives a run is the only one that sees its model's text as it streams; a
follower in another process (an HTTP replica serving an SSE client, say) gets it through
Redis:

- **Interest.** A follower sets the key ``{prefix}want:{run_id}`` with an expiry, and renews
  it while it follows. Before each model call, the driving process asks whether the key exists
  (one round trip, only when a relay is configured): if it does, the model is asked to stream,
  as it is when a follower is in the same process. A follower that leaves lets the key expire;
  until then the text is published to nobody, which costs little.
- **Text.** Each piece is published on ``{prefix}run:{run_id}`` by one background task per
  process, in order, tagged with the publishing process's id. The driver waits for what it
  queued to be published before it journals the answer, so the text leaves before the answer
  does; a follower still drops a piece that reaches it after the answer it belongs to (the
  answer carries the whole text).
- **Subscriptions.** A process holds one pub/sub connection, subscribed to the runs its
  followers follow, and hands each piece to them; pieces its own runs published are skipped,
  since they reached its followers directly.

Redis never breaks a run: when it cannot be reached, the run goes on without streaming to
other processes (logged once), and their followers get the text whole with the answer, from
the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from keel._redact import redact_url
from keel.errors import ConfigurationError, MissingExtraError
from keel.resilience._redis import redis_client

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["Deliver", "RedisDeltaRelay"]

Deliver = Callable[[int, str], None]
"""Takes one piece of a run's text: its step and the text."""

_log = logging.getLogger("keel.runtime")


class RedisDeltaRelay:
    """Publishes this process's streamed text and receives other processes' (see the module
    docstring). ``origin`` tells this process's pieces from others'."""

    def __init__(
        self,
        redis_url_or_client: str | Redis,
        *,
        origin: str,
        prefix: str = "keel:deltas:",
        interest_ttl_s: float = 30.0,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401 - checks that the extra is installed
            from redis.exceptions import RedisError
        except ImportError as exc:
            raise MissingExtraError(
                package="redis", extra="redis", feature="Streaming text across processes"
            ) from exc
        if interest_ttl_s < 1:
            raise ConfigurationError(f"interest_ttl_s must be at least 1, got {interest_ttl_s}")
        self._target = redis_url_or_client
        self._origin = origin
        self._prefix = prefix
        self._ttl_ms = round(interest_ttl_s * 1000)
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._client: Redis | None = None
        self._owns_client = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue[tuple[str, str]] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._delivers: dict[str, list[Deliver]] = {}
        self._complained: set[str] = set()

    def __repr__(self) -> str:
        where = redact_url(self._target) if isinstance(self._target, str) else "client"
        return f"RedisDeltaRelay({where!r}, prefix={self._prefix!r})"

    # -- the connection, one per event loop ---------------------------------------------------

    def _redis(self) -> Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A runtime used from several loops in turn (run_sync) gets a client per loop:
            # a client's connections belong to the loop that opened them.
            self._forget()
            self._client, self._owns_client = redis_client(self._target)
            self._loop = loop
        return self._client

    def _forget(self) -> None:
        for task in (self._publisher, self._reader):
            if task is not None and not task.done():
                with contextlib.suppress(RuntimeError):  # its loop may be closed
                    task.cancel()
        self._publisher = self._reader = None
        self._outbox = None
        self._pubsub = None
        self._client = None

    def _complain(self, what: str, error: BaseException) -> None:
        if what not in self._complained:
            self._complained.add(what)
            _log.warning(
                "Redis could not be reached to %s (%s: %s); streamed text stays in this "
                "process, and followers elsewhere get it whole with the answer",
                what,
                type(error).__name__,
                error,
            )

    # -- the driving side ---------------------------------------------------------------------

    async def wanted(self, run_id: str) -> bool:
        """Whether a follower in some process wants ``run_id``'s text as it streams."""
        try:
            return bool(await self._redis().exists(f"{self._prefix}want:{run_id}"))
        except self._errors as error:
            self._complain("ask whether a run is followed", error)
            return False

    def publish(self, run_id: str, step: int, text: str) -> None:
        """Queue one piece for publishing (in order, by a background task)."""
        self._redis()
        if self._outbox is None:
            self._outbox = asyncio.Queue()
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.create_task(self._publish_queued(self._outbox))
        message = json.dumps({"o": self._origin, "s": step, "t": text}, ensure_ascii=False)
        self._outbox.put_nowait((f"{self._prefix}run:{run_id}", message))

    async def flushed(self) -> None:
        """Return once every piece queued so far is published (or given up on)."""
        if self._outbox is not None and self._publisher is not None:
            await self._outbox.join()

    async def _publish_queued(self, outbox: asyncio.Queue[tuple[str, str]]) -> None:
        client = self._redis()
        while True:
            batch = [await outbox.get()]
            while not outbox.empty():
                batch.append(outbox.get_nowait())
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for channel, message in batch:
                        pipe.publish(channel, message)
                    await pipe.execute()
            except self._errors as error:
                self._complain("publish streamed text", error)
            finally:
                for _ in batch:
                    outbox.task_done()

    # -- the following side -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def following(self, run_id: str, deliver: Deliver) -> AsyncIterator[None]:
        """While inside, ``deliver`` gets the pieces of ``run_id``'s text that other processes
        stream, and they are asked to stream it."""
        channel = f"{self._prefix}run:{run_id}"
        delivers = self._delivers.setdefault(run_id, [])
        delivers.append(deliver)
        renewing: asyncio.Task[None] | None = None
        try:
            try:
                if len(delivers) == 1:
                    pubsub = await self._subscriptions()
                    await pubsub.subscribe(channel)
                # Subscribed first, then the interest: no piece streamed for it is missed.
                await self._want(run_id)
                renewing = asyncio.create_task(self._renew(run_id))
            except self._errors as error:
                self._complain("follow a run's streamed text", error)
            yield
        finally:
            if renewing is not None:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
            delivers.remove(deliver)
            if not delivers:
                del self._delivers[run_id]
                if self._pubsub is not None and self._loop is asyncio.get_running_loop():
                    with contextlib.suppress(*self._errors):
                        await self._pubsub.unsubscribe(channel)

    async def _want(self, run_id: str) -> None:
        await self._redis().set(f"{self._prefix}want:{run_id}", "1", px=self._ttl_ms)

    async def _renew(self, run_id: str) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self._want(run_id)
            except self._errors as error:
                self._complain("renew a follower's interest", error)

    async def _subscriptions(self) -> PubSub:
        client = self._redis()
        if self._pubsub is None:
            self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(self._pubsub))
        return self._pubsub

    async def _read(self, pubsub: PubSub) -> None:
        prefix = f"{self._prefix}run:"
        while True:
            if not self._delivers:
                # Nobody here follows a run: stop; the next follower starts a reader again
                # (it registers before it looks for one, so none is left without).
                self._reader = None
                return
            if not pubsub.subscribed:  # a first subscription is on its way
                await asyncio.sleep(0.01)
                continue
            try:
                message = await pubsub.get_message(timeout=1.0)
            except self._errors as error:
                self._complain("receive streamed text", error)
                await asyncio.sleep(1.0)
                continue
            if message is not None:
                self._dispatch(message, prefix)

    def _dispatch(self, message: dict[str, Any], prefix: str) -> None:
        channel = message.get("channel")
        data = message.get("data")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if not isinstance(channel, str) or not isinstance(data, bytes | str):
            return
        try:
            piece = json.loads(data)
            origin, step, text = piece["o"], piece["s"], piece["t"]
        except (ValueError, KeyError, TypeError):
            return  # not ours: ignore
        if origin == self._origin or not isinstance(step, int) or not isinstance(text, str):
            return
        for deliver in list(self._delivers.get(channel.removeprefix(prefix), ())):
            deliver(step, text)

    async def aclose(self) -> None:
        """Stop publishing and receiving; close the client if the relay made it."""
        client, owns = self._client, self._owns_client
        same_loop = self._loop is asyncio.get_running_loop()
        pubsub = self._pubsub
        tasks = [t for t in (self._publisher, self._reader) if t is not None]
        self._forget()
        if not same_loop:
            return  # its tasks and connections belong to a loop that is gone
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, *self._errors):
                await task
        if pubsub is not None:
            with contextlib.suppress(*self._errors):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        if client is not None and owns:
            with contextlib.suppress(*self._errors):
                await client.aclose()
