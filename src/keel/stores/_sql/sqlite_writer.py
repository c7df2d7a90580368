"""SQLite's writes: statements on the caller's thread, commits on the writer thread, in groups.

Why two threads, and why group commit
-------------------------------------
A durable SQLite commit is an fsync of the WAL: a few hundred microseconds during which the
calling thread waits. Run on the event loop, it would stall every other task for that long. The
rest of a write is quick work in memory, and running it on another thread costs more than it
saves: Python's GIL makes the threads take turns, and a thread that wants the GIL back after
each statement waits for the event loop's thread to let go of it (up to the interpreter's
switch interval, 5 ms, when that thread is busy). So a write's statements run at once, on the
caller's thread, in a ``BEGIN IMMEDIATE`` transaction, and only its ``COMMIT`` goes to the
store's writer thread; the caller is answered on its own event loop once the commit returned.

Writes that arrive while a transaction is open or committing wait in a queue. When the commit
is done, the writer thread asks the event loop of the first waiting write to run the
statements of all of them (up to ``max_group``) in one transaction, whose commit it takes
again: N concurrent writes share one fsync. One write at a time holds the turn (the
connection); the others never touch the connection meanwhile. A transaction that changed no row
(every write in it was refused, or a claim found nothing) has nothing to sync: it commits at
once, on the caller's thread.

``BEGIN IMMEDIATE`` takes the database's write lock. On the caller's thread it never waits for
it: if another connection holds it (another process, another store object), the whole group
goes to the writer thread, which waits up to ``busy_timeout_s``, runs the statements and
commits there.

A refused write (a conflict, a lost lease) changes no row, so it needs no undo and the others
of its group go on. A write that fails after it changed rows (a database error in its second
statement), or whose error took the whole transaction with it, is undone by rolling the
transaction back; the others of its group run again in a new one. If ``COMMIT`` fails, every
write of the group fails with its error: nothing of theirs was written.

Measured on the reference machine (2 cores, a virtual disk, ``synchronous=FULL``): 1,000
concurrent 5-step runs in one process (``bench/concurrency.py``) went from about 820 to about
1,000 runs/s when the statements moved off the writer thread. A lone append still costs about
1.7-1.8 times a bare commit of the same rows on a plain connection (``bench/store_commit.py``):
encoding the events and running the store's statements cost about 100-150 µs, and the two
thread hand-offs around the fsync 50-100 µs on this machine (with the commit on the caller's
thread, which would block the event loop, the same append measured about 1.5 times).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from keel.ports import Clock
from keel.stores._signals import Signals
from keel.stores._sql.program import Execute, ExecuteMany, Fetch, Notify, Program

__all__ = ["Writer", "drive"]

T = TypeVar("T")

_SQLITE_BUSY = 5
# How long the writer thread sleeps between tries for a write lock another connection holds.
_BUSY_SLEEPS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


# Whether a statement reads the clock or a list parameter (the statements are constants).
_BINDS: dict[str, bool] = {}


def bind(sql: str, params: Mapping[str, Any], now: float) -> Mapping[str, Any]:
    """SQLite's parameters: the clock as ``:now``, and lists as JSON (read by ``json_each``)."""
    binds = _BINDS.get(sql)
    if binds is None:
        binds = _BINDS[sql] = ":now" in sql or "json_each" in sql
    if not binds:
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
                rows = op.rows
                if _BINDS.get(op.sql, True):
                    rows = [bind(op.sql, row, now) for row in rows]
                conn.executemany(op.sql, rows)
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
class _Outcome:
    job: _Job
    value: Any = None
    error: BaseException | None = None
    keys: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Commit:
    """An open transaction for the writer thread to commit."""

    outcomes: list[_Outcome]


@dataclass(slots=True)
class _Run:
    """A group for the writer thread to run from ``BEGIN`` (the write lock was busy)."""

    group: list[_Job]


@dataclass(slots=True)
class _Stop:
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None


class Writer:
    """Runs a store's writes on ``conn``, committing them in groups on its own thread.

    Args:
        conn: The write connection (in autocommit mode: transactions are explicit). Its busy
            timeout is set to 0: only the writer thread waits for the write lock.
        lock: Held from ``BEGIN`` to the end of ``COMMIT`` (shared with the reader of an
            in-memory database, which is the same connection).
        clock: The store's clock: ``:now`` of every statement in a transaction.
        signals: Woken with each write's keys after its commit.
        max_group: The most writes committed together (1: one commit per write).
        busy_timeout_s: How long the writer thread waits for another connection's write lock.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        lock: threading.Lock,
        clock: Clock,
        signals: Signals,
        max_group: int,
        busy_timeout_s: float,
        name: str,
    ) -> None:
        conn.execute("PRAGMA busy_timeout = 0")
        self._conn = conn
        self._lock = lock
        self._clock = clock
        self._signals = signals
        self._max_group = max_group
        self._busy_timeout_s = busy_timeout_s
        self._mutex = threading.Lock()  # guards the fields below
        self._waiting: collections.deque[_Job] = collections.deque()
        self._turn = False  # a group is running or committing
        self._stop: _Stop | None = None
        self._work: queue.SimpleQueue[_Commit | _Run | _Stop] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    async def submit(self, program: Callable[[], Program[T]]) -> T:
        """Run ``program`` in the next group; return its result once that group committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(program, loop, future)
        with self._mutex:
            mine = not self._turn
            if mine:
                self._turn = True
            else:
                self._waiting.append(job)
        if mine:
            self._run_waiting([job])
        return await future

    async def stop(self) -> None:
        """Finish the writes already submitted, then end the thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._request_stop(_Stop(loop, future))
        await future
        self._thread.join()

    def stop_soon(self) -> None:
        """Have the thread end after the writes already submitted (nobody waits for it)."""
        self._request_stop(_Stop())

    def _request_stop(self, stop: _Stop) -> None:
        with self._mutex:
            self._stop = stop
            idle = not self._turn
        if idle:
            self._work.put(stop)

    # --- on the thread that holds the turn ---------------------------------------------------

    def _run_waiting(self, first: list[_Job] | None = None) -> None:
        """Run ``first``, then the waiting writes, a group at a time, here, until a group has
        a commit for the writer thread (or nothing waits any more)."""
        here = asyncio.get_running_loop()
        group = first
        while True:
            if not group:
                with self._mutex:
                    count = min(len(self._waiting), self._max_group)
                    group = [self._waiting.popleft() for _ in range(count)]
                if not group:
                    self._pass_turn()
                    return
            if self._run_group(group, here):
                return
            group = None

    def _run_group(self, group: list[_Job], here: asyncio.AbstractEventLoop) -> bool:
        """Run ``group``'s statements here; whether its commit went to the writer thread (a
        group that changed nothing is committed and answered here)."""
        conn = self._conn
        self._lock.acquire()
        try:
            began = _begin(conn)
        except sqlite3.Error as exc:
            self._lock.release()
            self._deliver([_Outcome(job, error=exc) for job in group], here)
            return False
        if not began:  # another connection holds the write lock: the writer thread waits
            self._work.put(_Run(group))
            return True
        try:
            changes = conn.total_changes
            outcomes = self._statements(group)
            if conn.in_transaction and conn.total_changes != changes:
                self._work.put(_Commit(outcomes))
                return True
            outcomes = self._commit(outcomes)  # nothing to sync: commit here
        except BaseException as exc:
            _rollback(conn)
            self._lock.release()
            self._deliver([_Outcome(job, error=exc) for job in group], here)
            self._pass_turn()
            raise
        self._lock.release()
        self._deliver(outcomes, here)
        return False

    def _statements(self, group: list[_Job]) -> list[_Outcome]:
        """Run ``group``'s programs in the open transaction; the outcome of each one run. If a
        failure needs a rollback, the transaction is gone when this returns, and the writes not
        yet failed wait first in line for the next group."""
        conn = self._conn
        now = self._clock.now()
        outcomes: list[_Outcome] = []
        for index, job in enumerate(group):
            outcome = _Outcome(job)
            changes = conn.total_changes
            try:
                outcome.value = drive(conn, job.program(), now, outcome.keys)
            except Exception as exc:  # noqa: BLE001 - the caller gets it; only its work is undone
                outcome.error = exc
                outcome.keys.clear()
                if conn.total_changes != changes or not conn.in_transaction:
                    # It wrote before it failed (or the error took the transaction with it):
                    # only a rollback undoes that, and the others of the group start again.
                    _rollback(conn)
                    again = [o.job for o in outcomes if o.error is None] + group[index + 1 :]
                    with self._mutex:
                        self._waiting.extendleft(reversed(again))
                    return [*(o for o in outcomes if o.error is not None), outcome]
            outcomes.append(outcome)
        return outcomes

    def _commit(self, outcomes: list[_Outcome]) -> list[_Outcome]:
        """Commit the open transaction (if any); the outcomes, or every write failed with the
        error."""
        if not self._conn.in_transaction:
            return outcomes
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(self._conn)
            return [_Outcome(o.job, error=exc) for o in outcomes]
        return outcomes

    def _deliver(
        self, outcomes: list[_Outcome], here: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Wake the watchers of what committed, and answer the callers: at once on ``here``
        (this thread's event loop), with one call for each other loop (a wake-up of its
        thread)."""
        if len(outcomes) == 1:
            (outcome,) = outcomes
            if outcome.keys:
                self._signals.notify(*outcome.keys)
            loop = outcome.job.loop
            if loop is here:
                _settle(outcome.job.future, outcome.error, outcome.value)
            else:
                _call(loop, _settle, outcome.job.future, outcome.error, outcome.value)
            return
        keys = [key for outcome in outcomes for key in outcome.keys]
        if keys:
            self._signals.notify(*dict.fromkeys(keys))
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome.job.loop, []).append(outcome)
        for loop, settled in by_loop.items():
            if loop is here:
                _settle_all(settled)
            else:
                _call(loop, _settle_all, settled)

    def _pass_turn(self) -> None:
        """Nothing waits: give the turn up (ending the thread if the store is closing)."""
        with self._mutex:
            if self._waiting:  # one came in meanwhile: keep the turn, hand it on
                first = self._waiting[0]
            else:
                self._turn = False
                if self._stop is not None:
                    self._work.put(self._stop)
                return
        self._hand_on(first.loop)

    def _hand_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have ``loop`` run the waiting writes (the writer thread does, if it is closed)."""
        if not _call(loop, self._run_waiting):
            self._lock.acquire()
            self._work.put(_Run([]))

    # --- the writer thread -------------------------------------------------------------------

    def _main(self) -> None:
        while True:
            item = self._work.get()
            if isinstance(item, _Stop):
                if item.loop is not None:
                    _call(item.loop, _settle, item.future, None, None)
                return
            try:
                if isinstance(item, _Commit):
                    outcomes = self._commit(item.outcomes)
                else:
                    outcomes = self._run_here(item.group)
            finally:
                self._lock.release()
            self._after_commit(outcomes)

    def _run_here(self, group: list[_Job]) -> list[_Outcome]:
        """Run a whole group on the writer thread, waiting for the write lock (held by the
        caller of this method, which releases it)."""
        with self._mutex:
            extra = min(len(self._waiting), self._max_group - len(group))
            group = group + [self._waiting.popleft() for _ in range(extra)]
        if not group:
            return []
        try:
            _begin(self._conn, wait_s=self._busy_timeout_s)
        except sqlite3.Error as exc:
            return [_Outcome(job, error=exc) for job in group]
        try:
            outcomes = self._statements(group)
        except BaseException as exc:  # noqa: BLE001 - nobody may be left waiting
            _rollback(self._conn)
            return [_Outcome(job, error=exc) for job in group]
        return self._commit(outcomes)

    def _after_commit(self, outcomes: list[_Outcome]) -> None:
        """Pass the turn on (before answering, so that a caller's next write finds it free),
        then answer."""
        with self._mutex:
            first = self._waiting[0] if self._waiting else None
            if first is None:
                self._turn = False
                if self._stop is not None:
                    self._work.put(self._stop)
        if first is not None:
            self._hand_on(first.loop)
        self._deliver(outcomes)


def _begin(conn: sqlite3.Connection, *, wait_s: float | None = None) -> bool:
    """``BEGIN IMMEDIATE``. Without ``wait_s``, ``False`` if another connection holds the
    write lock; with it, wait that long for the lock, then raise SQLite's busy error."""
    deadline = 0.0
    for attempt in itertools.count():
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != _SQLITE_BUSY:
                raise
            if wait_s is None:
                return False
            if attempt == 0:
                deadline = time.monotonic() + wait_s
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            time.sleep(min(_BUSY_SLEEPS_S[min(attempt, len(_BUSY_SLEEPS_S) - 1)], remaining))
        else:
            return True
    raise AssertionError("unreachable")


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls back by itself on some errors; a second ROLLBACK would then fail.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _call(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> bool:
    """Have ``loop`` run ``callback``; ``False`` if the loop is closed (nobody waits there)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        return False
    return True


def _settle_all(outcomes: list[_Outcome]) -> None:
    for outcome in outcomes:
        _settle(outcome.job.future, outcome.error, outcome.value)


def _settle(future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
