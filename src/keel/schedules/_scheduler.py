"""The scheduler: submits a run for each due time of each schedule, once across processes.

Each tick does two things:

1. **Recovery.** Fires that a scheduler took but did not mark submitted within ``grace_s``
   (it died between taking the fire and submitting its run, or while submitting) are
   submitted again under the same run id. The run id of a fire is fixed by the schedule's
   name and due time (:func:`planned_run_id`), and the store refuses a second run with an
   existing id, so a fire whose run did reach the store is not run twice.
2. **Due schedules.** For each enabled schedule due by now (of an agent the runtime knows),
   the scheduler takes the fire with a compare-and-set on the schedule's next due time (see
   :class:`ScheduleStore.claim`), submits the run, and marks the fire submitted.

Catch-up policy: when the due time was missed (no scheduler ran), only the **latest** due
time at or before now fires; older ones are skipped and counted (``Fired.skipped``). A daily
report missed for a week runs once, not seven times.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from keel._runtime.planned_ids import submit_as
from keel._side_location import beside
from keel.errors import ConfigurationError, JournalConflictError
from keel.ports import Clock
from keel.schedules._model import Fire, Fired, Schedule, ScheduleState, planned_run_id
from keel.schedules._open import open_schedule_store
from keel.schedules._store import ScheduleStore

if TYPE_CHECKING:
    from keel._runtime.runtime import Runtime

__all__ = ["Scheduler"]

_log = logging.getLogger("keel.schedules")


class Scheduler:
    """Fires due schedules by ``runtime.submit``; runs are then driven by workers.

    Args:
        runtime: Submits the runs; its registered agents are the ones this scheduler fires
            schedules of (others are left to schedulers that know them).
        store: Where schedules are kept: a :class:`ScheduleStore`, a location
            (:func:`open_schedule_store`), or ``None``: beside the runtime's store.
        schedules: Schedules defined in code, stored on :meth:`start` (replacing stored
            ones of the same name, keeping their next due time when the cron expression and
            time zone are unchanged).
        poll_interval_s: The longest wait between ticks (schedules added by another process
            are seen within it).
        grace_s: How long a taken fire may stay unsubmitted before another tick submits it.
        clock: The time; default: the runtime's.

    Use ``async with Scheduler(runtime) as scheduler:`` (or :meth:`start` and
    :meth:`stop`) to tick in the background, or call :meth:`tick` yourself.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        store: ScheduleStore | str | os.PathLike[str] | None = None,
        schedules: Sequence[Schedule] = (),
        poll_interval_s: float = 30.0,
        grace_s: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        for label, value in (("poll_interval_s", poll_interval_s), ("grace_s", grace_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"{label} must be a positive number, got {value!r}")
        self._runtime = runtime
        self._owns_store = not isinstance(store, ScheduleStore)
        if isinstance(store, ScheduleStore):
            self.store = store
        elif store is not None:
            self.store = open_schedule_store(store, schema=runtime.settings.db_schema)
        else:
            location, schema = beside(runtime.store, "schedules")
            self.store = open_schedule_store(location, schema=schema)
        self._schedules = tuple(schedules)
        self._poll_s = float(poll_interval_s)
        self._grace_s = float(grace_s)
        self._clock: Clock = clock or runtime.clock
        self._owner = f"{runtime.owner}:scheduler"
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"Scheduler(store={self.store!r})"

    # -- running in the background -----------------------------------------------------------

    async def start(self) -> None:
        """Store the schedules defined in code and tick in the background until :meth:`stop`."""
        if self._task is not None:
            return
        now = self._clock.now()
        for schedule in self._schedules:
            await self.store.add(schedule, now=now, replace=True)
        await self._warn_unknown_agents()
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="keel-scheduler")

    async def stop(self) -> None:
        """Stop ticking (a tick under way finishes first) and close the store if this
        scheduler opened it."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        if self._owns_store:
            await self.store.aclose()

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
                wait = await self._until_next()
            except Exception as exc:  # noqa: BLE001 - a failing tick must not end the loop
                _log.warning("a scheduler tick failed (%s); trying again", exc)
                wait = self._poll_s
            await self._sleep(wait)

    async def _until_next(self) -> float:
        earliest = await self.store.earliest(self._runtime.agents)
        if earliest is None:
            return self._poll_s
        return min(self._poll_s, max(0.0, earliest - self._clock.now()))

    async def _sleep(self, seconds: float) -> None:
        stopped = asyncio.ensure_future(self._stopping.wait())
        slept = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({stopped, slept}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (stopped, slept):
                waiting.cancel()

    async def _warn_unknown_agents(self) -> None:
        known = self._runtime.agents
        for state in await self.store.all():
            agent = state.schedule.agent
            if agent not in known and agent not in self._warned:
                self._warned.add(agent)
                _log.warning(
                    "schedules of agent %r are not fired here: this runtime does not know the "
                    "agent (register it, or run a scheduler whose runtime does)",
                    agent,
                )

    # -- one tick -----------------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> list[Fired]:
        """Submit the fires due at ``now`` (default: the clock's) and the fires other
        schedulers took and did not submit; return what was submitted."""
        at = self._clock.now() if now is None else float(now)
        fired = await self._recover(at)
        agents = self._runtime.agents
        for state in await self.store.due(at, agents):
            done = await self._fire(state, at)
            if done is not None:
                fired.append(done)
        return fired

    async def _fire(self, state: ScheduleState, now: float) -> Fired | None:
        schedule = state.schedule
        due_at = schedule.latest_at_or_before(now)
        # The due time read may be later than the latest one at or before now only if the
        # schedule changed meanwhile; then the stored one is what is due.
        due_at = max(due_at, state.next_due)
        fire = Fire(
            name=schedule.name,
            due_at=due_at,
            run_id=planned_run_id(schedule.name, due_at),
            agent=schedule.agent,
            input=schedule.input,
            thread=schedule.thread,
            tenant=schedule.tenant,
            user=schedule.user,
            status="claimed",
            claimed_by=self._owner,
            claimed_at=now,
        )
        if not await self.store.claim(state, fire, schedule.next_after(now)):
            return None  # another scheduler took this due time
        skipped = schedule.times_between(state.next_due, due_at)
        if skipped:
            _log.info(
                "schedule %r missed %d due time(s) before %s; only the latest fires",
                schedule.name,
                skipped,
                due_at,
            )
        if await self._submit(fire, now) != "submitted":
            return None  # failed (tried again later), or another scheduler's recovery made it
        return Fired(name=fire.name, due_at=due_at, run_id=fire.run_id, skipped=skipped)

    async def _recover(self, now: float) -> list[Fired]:
        fired = []
        for fire in await self.store.unsubmitted(now - self._grace_s):
            if fire.agent not in self._runtime.agents:
                continue
            # Reported only when this submit made the run: a run that exists was made by the
            # scheduler that took the fire (it was slow, not dead) and is reported there.
            if await self._submit(fire, now) == "submitted":
                _log.info("submitted fire %s of schedule %r for a scheduler that died",
                          fire.due_at, fire.name)  # fmt: skip
                fired.append(
                    Fired(name=fire.name, due_at=fire.due_at, run_id=fire.run_id, recovered=True)
                )
        return fired

    async def _submit(self, fire: Fire, now: float) -> Literal["submitted", "existed"] | None:
        """Submit the fire's run: ``submitted`` (this call made it), ``existed`` (it was made
        before), ``None`` (it failed: the fire stays claimed, and a tick tries again after
        the grace period)."""
        agent = self._runtime.agents.get(fire.agent)
        if agent is None:
            return None
        outcome: Literal["submitted", "existed"] = "submitted"
        try:
            await submit_as(
                self._runtime,
                fire.run_id,
                agent,
                fire.input,
                thread=fire.thread,
                tenant=fire.tenant,
                user=fire.user,
            )
        except JournalConflictError:
            outcome = "existed"  # submitted before, by a scheduler that did not mark it
        except Exception as exc:  # noqa: BLE001 - one schedule's failure must not stop others
            _log.warning(
                "schedule %r could not submit its run for %s (%s); it is tried again in %ss",
                fire.name,
                fire.due_at,
                exc,
                self._grace_s,
            )
            return None
        await self.store.mark_submitted(fire.name, fire.due_at, now=now)
        return outcome
