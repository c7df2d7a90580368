"""SQLite's writer: one thread that commits every waiting write in one transaction.

Why a thread, and why group commit
----------------------------------
A durable SQLite commit is an fsync of the WAL: a few hundred microseconds during which the
calling thread waits. Run on the event loop, it stalls every other task for that long; run on
one thread per call (an executor), it pays a hand-off each time and still commits one write
per fsync. So a store has one persistent writer thread fed by a simple queue. It takes every
write waiting, opens one ``BEGIN IMMEDIATE`` transaction, runs each caller's program inside
its own ``SAVEPOINT`` (a refused append, a conflict or a lost lease, rolls back only its own
work), commits once, and only then answers each caller on the caller's own event loop
(``loop.call_soon_threadsafe``) and wakes its watchers. N concurrent appends cost one fsync,
not N; a lone append costs its commit plus two thread hand-offs.

Measured with ``bench/store_commit.py`` on the reference machine (2 cores, a virtual disk,
``synchronous=FULL``): 64 tasks appending at once commit about 5,000-7,000 appends/s, against
about 2,100 with one commit per append (``max_group=1``). A lone append of a 3-event step
takes 0.40-0.61 ms where a bare commit of the same rows on a plain connection takes
0.20-0.28 ms (1.8-2.2 times): the two hand-offs cost about 70 µs (a thread round trip alone is
40 µs there), the store's statements and encoding about 60-130 µs more than the bare ones.

A program that fails with a database error is rolled back to its savepoint like a refusal. If
the error took the whole transaction with it (SQLite rolls back by itself on some errors, such
as a full disk), that program fails and the others of the group run again in a new
transaction; if ``COMMIT`` fails, every program of the group fails with its error: nothing of
theirs was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from keel.ports import Clock
from keel.stores._signals import Signals
from keel.stores._sql.program import Execute, ExecuteMany, Fetch, Notify, Program

__all__ = ["Writer", "drive"]

T = TypeVar("T")


def bind(sql: str, params: Mapping[str, Any], now: float) -> Mapping[str, Any]:
    """SQLite's parameters: the clock as ``:now``, and lists as JSON (read by ``json_each``)."""
    if ":now" not in sql and "json_each" not in sql:
        return params
    bound = dict(params)
    bound["now"] = now
    for key, value in bound.items():
        if isinstance(value, list):
            bound[key] = json.dumps(value)
    return bound


def drive(conn: sqlite3.Connection, program: Program[T], now: float, keys: list[str]) -> T:
    """Run ``program`` on ``conn``; the keys it asks to wake are added to ``keys``."""
    try:
        op = next(program)
        while True:
            value: Any = None
            if isinstance(op, Execute):
                value = conn.execute(op.sql, bind(op.sql, op.params, now)).rowcount
            elif isinstance(op, Fetch):
                value = conn.execute(op.sql, bind(op.sql, op.params, now)).fetchall()
            elif isinstance(op, ExecuteMany):
                conn.executemany(op.sql, [bind(op.sql, row, now) for row in op.rows])
            elif isinstance(op, Notify):
                keys.extend(op.keys)
            op = program.send(value)
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        program.close()


@dataclass(slots=True)
class _Job:
    program: Callable[[], Program[Any]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Stop:
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None


@dataclass(slots=True)
class _Outcome:
    job: _Job
    value: Any = None
    error: BaseException | None = None
    keys: list[str] = field(default_factory=list)


class Writer:
    """The thread that runs a store's writes on ``conn``, committing them in groups.

    Args:
        conn: The write connection (in autocommit mode: transactions are explicit).
        lock: Held while a transaction is open (shared with the reader of an in-memory
            database, which is the same connection).
        clock: The store's clock: ``:now`` of every statement in a transaction.
        signals: Woken with each program's keys after its commit.
        max_group: The most writes committed together (1: one commit per write).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        lock: threading.Lock,
        clock: Clock,
        signals: Signals,
        max_group: int,
        name: str,
    ) -> None:
        self._conn = conn
        self._lock = lock
        self._clock = clock
        self._signals = signals
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Job | _Stop] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    async def submit(self, program: Callable[[], Program[T]]) -> T:
        """Run ``program`` in the next group; return its result once that group committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(program, loop, future))
        return await future

    async def stop(self) -> None:
        """Finish the writes already submitted, then end the thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Stop(loop, future))
        await future
        self._thread.join()

    def stop_soon(self) -> None:
        """Have the thread end after the writes already submitted (nobody waits for it)."""
        self._queue.put(_Stop())

    def _main(self) -> None:
        take = self._queue.get_nowait
        while True:
            first = self._queue.get()
            stop = first if isinstance(first, _Stop) else None
            group = [first] if isinstance(first, _Job) else []
            while stop is None and len(group) < self._max_group:
                try:
                    item = take()
                except queue.Empty:
                    break
                if isinstance(item, _Stop):
                    stop = item
                else:
                    group.append(item)
            if group:
                with self._lock:
                    try:
                        outcomes = self._transaction(group)
                    except BaseException as exc:  # noqa: BLE001 - nobody may be left waiting
                        _rollback(self._conn)
                        outcomes = [_Outcome(job, error=exc) for job in group]
                self._answer(outcomes)
            if stop is not None:
                if stop.loop is not None:
                    _call(stop.loop, _settle, stop.future, None, None)
                return

    def _transaction(self, group: list[_Job]) -> list[_Outcome]:
        """Run ``group`` in one transaction; the outcome of each job, after the commit."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [_Outcome(job, error=exc) for job in group]
        now = self._clock.now()
        alone = len(group) == 1
        outcomes: list[_Outcome] = []
        for index, job in enumerate(group):
            outcome = _Outcome(job)
            try:
                if not alone:
                    conn.execute("SAVEPOINT keel_write")
                outcome.value = drive(conn, job.program(), now, outcome.keys)
                if not alone:
                    conn.execute("RELEASE keel_write")
            except Exception as exc:  # noqa: BLE001 - the caller gets it; only its work is undone
                outcome.error = exc
                outcome.keys.clear()
                if alone or not _undo(conn):
                    _rollback(conn)
                    if alone:
                        return [outcome]
                    # The transaction is gone: the others of the group start again.
                    done = [o.job for o in outcomes if o.error is None]
                    failed = [o for o in outcomes if o.error is not None]
                    rest = done + group[index + 1 :]
                    return [*failed, outcome, *(self._transaction(rest) if rest else [])]
            outcomes.append(outcome)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            return [_Outcome(job, error=exc) for job in group]
        return outcomes

    def _answer(self, outcomes: list[_Outcome]) -> None:
        for outcome in outcomes:
            if outcome.keys:
                self._signals.notify(*outcome.keys)
            job = outcome.job
            _call(job.loop, _settle, job.future, outcome.error, outcome.value)


def _undo(conn: sqlite3.Connection) -> bool:
    """Roll back to the job's savepoint; ``False`` if the whole transaction is gone."""
    if not conn.in_transaction:
        return False
    try:
        conn.execute("ROLLBACK TO keel_write")
        conn.execute("RELEASE keel_write")
    except sqlite3.Error:
        return False
    return True


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls back by itself on some errors; a second ROLLBACK would then fail.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _call(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
        loop.call_soon_threadsafe(callback, *args)


def _settle(future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
