"""Store operations as sans-I/O programs: generators that yield database operations.

A program yields :class:`Execute`, :class:`Fetch`, :class:`ExecuteMany` and :class:`Notify`
and is sent each one's result (a row count, a list of rows, ``None``); its return value is the
operation's result, and an exception it raises refuses the operation (the executor rolls its
work back). The helpers below (``rows = yield from fetch(...)``) give the results their types.

A :class:`Task` is what a store hands its executor: a way to make the program (a retry makes a
fresh one), whether it writes, and whether its statements must commit together.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

__all__ = [
    "Execute",
    "ExecuteMany",
    "Fetch",
    "Notify",
    "Op",
    "Params",
    "Program",
    "Row",
    "Task",
    "execute",
    "execute_many",
    "fetch",
    "fetch_one",
    "notify",
]

T = TypeVar("T")
Row: TypeAlias = tuple[Any, ...]
Params: TypeAlias = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Execute:
    """Run a statement; the result is its row count."""

    sql: str
    params: Params


@dataclass(frozen=True, slots=True)
class Fetch:
    """Run a statement; the result is its rows."""

    sql: str
    params: Params


@dataclass(frozen=True, slots=True)
class ExecuteMany:
    """Run a statement once per parameter set; the result is ``None``."""

    sql: str
    rows: Sequence[Params]


@dataclass(frozen=True, slots=True)
class Notify:
    """Wake the watchers of these keys once this program's writes have committed (this
    process's at once; other processes' through the database, where it can tell them)."""

    keys: tuple[str, ...]


Op: TypeAlias = Execute | Fetch | ExecuteMany | Notify
Program: TypeAlias = Generator[Op, Any, T]


@dataclass(frozen=True, slots=True)
class Task(Generic[T]):
    """One store operation, for an executor to run.

    ``atomic``: the program may run several writing statements that must commit together
    (PostgreSQL runs it in a transaction; without it, in autocommit, each statement commits on
    its own). SQLite runs every write in a transaction anyway. ``committed``, for a write that
    must happen once (an append), says after a lost connection and a conflicting retry whether
    the conflict was the first attempt's own commit (its result, in a 1-tuple) or another
    writer's (``None``).
    """

    action: str
    program: Callable[[], Program[T]]
    write: bool = False
    atomic: bool = False
    committed: Callable[[], Program[tuple[T] | None]] | None = None


def execute(sql: str, params: Params) -> Program[int]:
    """Run ``sql``; its row count."""
    count: int = yield Execute(sql, params)
    return count


def fetch(sql: str, params: Params) -> Program[list[Row]]:
    """Run ``sql``; its rows."""
    rows: list[Row] = yield Fetch(sql, params)
    return rows


def fetch_one(sql: str, params: Params) -> Program[Row | None]:
    """Run ``sql``; its first row, or ``None``."""
    rows: list[Row] = yield Fetch(sql, params)
    return rows[0] if rows else None


def execute_many(sql: str, rows: Sequence[Params]) -> Program[None]:
    """Run ``sql`` once per parameter set."""
    if rows:
        yield ExecuteMany(sql, rows)


def notify(*keys: str) -> Program[None]:
    """Wake the watchers of ``keys`` after commit."""
    yield Notify(keys)
