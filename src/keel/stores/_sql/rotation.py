"""Re-encrypting what a store keeps with its keyring's first key (``keel keys rotate``).

Each table is read in batches, in primary-key order, each batch starting after the last key
of the one before (so a batch is found through the primary key, however large the table).
A batch's new values are computed outside any transaction; then one transaction writes them,
each by a conditional ``UPDATE`` that changes the value only if it still is what was read.
Runs written meanwhile are never overwritten with stale data: a run record an append changed
in between keeps its new value (counted as ``changed``; the next pass takes it), and events
and thread messages, written once, are only ever found as they were. So a pass is safe while
runs are being written, and safe to repeat: a value already encrypted with the first key is
left alone (``current``).

What a pass cannot see: rows written after it passed their place by processes that still
encrypt with the old first key. Give every process the new keys first, then rotate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from keel.errors import ConfigurationError, StoreError
from keel.stores._keyring import Keyring, is_sealed
from keel.stores._sealed import SEALED_FIELDS
from keel.stores._sql.program import Program, Row, Task, execute, fetch
from keel.stores._sql.statements import Statements

__all__ = ["Rotation", "Rotator", "rotate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotation:
    """What a key rotation did, counted in stored values (an event body, a thread message, one
    content field of a run record).

    Attributes:
        rotated: Encrypted with another key, now with the first.
        encrypted: Plain, now encrypted (``encrypt_plain=True``).
        current: Already encrypted with the first key: left as it was.
        plain: Plain, and left so (without ``encrypt_plain``).
        changed: Changed or deleted by someone else between being read and rewritten: left
            to them (their writer encrypted it); run the rotation again to be sure.
    """

    rotated: int = 0
    encrypted: int = 0
    current: int = 0
    plain: int = 0
    changed: int = 0

    def __add__(self, other: Rotation) -> Rotation:
        return Rotation(
            rotated=self.rotated + other.rotated,
            encrypted=self.encrypted + other.encrypted,
            current=self.current + other.current,
            plain=self.plain + other.plain,
            changed=self.changed + other.changed,
        )


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    noun: str  # how a value is named in errors: "event 3 of run 'r'"


_TABLES = (
    _Table("events", ("run_id", "seq"), ("body",), "event {1} of run '{0}'"),
    _Table("thread_messages", ("thread_id", "seq"), ("body",), "message {1} of thread '{0}'"),
    _Table("runs", ("run_id",), SEALED_FIELDS, "the {column} of run '{0}'"),
    _Table("feedback", ("feedback_id",), ("comment",), "the comment of feedback '{0}'"),
)


@dataclass(frozen=True, slots=True)
class _Change:
    column: str
    key: Row
    old: str
    new: str
    encrypts: bool  # plain before (else re-encrypted)


class Rotator:
    """The statements of a rotation, rendered in one dialect."""

    def __init__(self, statements: Statements) -> None:
        render = statements.render
        self._first: dict[str, str] = {}
        self._next: dict[str, str] = {}
        self._update: dict[tuple[str, str], str] = {}
        for table in _TABLES:
            keys, columns = ", ".join(table.keys), ", ".join(table.columns)
            select = f"SELECT {keys}, {columns} FROM {{{table.name}}} "  # noqa: S608 - constants
            order = f" ORDER BY {keys} LIMIT :limit"
            after = " AND ".join(f"{key} = :{key}" for key in table.keys)
            params = ", ".join(f":{key}" for key in table.keys)
            past = f"({keys}) > ({params})" if len(table.keys) > 1 else f"{keys} > {params}"
            self._first[table.name] = render(select + order)
            self._next[table.name] = render(select + "WHERE " + past + order)
            for column in table.columns:
                self._update[table.name, column] = render(
                    f"UPDATE {{{table.name}}} SET {column} = :new "  # noqa: S608 - constants
                    f"WHERE {after} AND {column} = :old"
                )

    def page(self, table: _Table, after: Row | None, limit: int) -> Program[list[Row]]:
        """The next ``limit`` rows of ``table`` after the key ``after`` (``None``: the
        first)."""
        if after is None:
            return (yield from fetch(self._first[table.name], {"limit": limit}))
        params: dict[str, Any] = dict(zip(table.keys, after, strict=True))
        params["limit"] = limit
        return (yield from fetch(self._next[table.name], params))

    def rewrite(self, table: _Table, changes: list[_Change]) -> Program[list[bool]]:
        """Write ``changes`` where the values are still as read; which ones were written."""
        written: list[bool] = []
        for change in changes:
            params: dict[str, Any] = dict(zip(table.keys, change.key, strict=True))
            params["old"], params["new"] = change.old, change.new
            count = yield from execute(self._update[table.name, change.column], params)
            written.append(count == 1)
        return written


Runner = Callable[[Task[Any]], Awaitable[Any]]


async def rotate(
    run: Runner,
    rotator: Rotator,
    keyring: Keyring,
    *,
    where: str,
    encrypt_plain: bool,
    batch_size: int,
) -> Rotation:
    """Re-encrypt every encrypted value (and, with ``encrypt_plain``, every plain one) with
    the first key of ``keyring``, ``batch_size`` rows per transaction; ``run`` runs a task on
    the store."""
    total = Rotation()
    for table in _TABLES:
        after: Row | None = None
        while True:
            page = partial(rotator.page, table, after, batch_size)
            rows: list[Row] = await run(Task(f"read {table.name} to rotate keys", page))
            if not rows:
                break
            changes, counted = _plan(table, rows, keyring, where=where, encrypt_plain=encrypt_plain)
            total += counted
            if changes:
                written: list[bool] = await run(
                    Task(
                        f"re-encrypt {table.name}",
                        partial(rotator.rewrite, table, changes),
                        write=True,
                        atomic=True,
                    )
                )
                total += _tally(changes, written)
            if len(rows) < batch_size:
                break
            after = rows[-1][: len(table.keys)]
    return total


def _plan(
    table: _Table, rows: list[Row], keyring: Keyring, *, where: str, encrypt_plain: bool
) -> tuple[list[_Change], Rotation]:
    """The changes a batch needs, and the values it leaves as they are."""
    changes: list[_Change] = []
    current = plain = 0
    width = len(table.keys)
    for row in rows:
        key = row[:width]
        for column, value in zip(table.columns, row[width:], strict=True):
            if value is None:
                continue
            if not is_sealed(value):
                if encrypt_plain:
                    changes.append(_Change(column, key, value, keyring.encrypt(value), True))
                else:
                    plain += 1
            elif keyring.is_current(value):
                current += 1
            else:
                try:
                    fresh = keyring.rotate(value)
                except ConfigurationError:
                    what = table.noun.format(*key, column=column)
                    raise StoreError(
                        f"{what} {where} is encrypted with none of the {keyring.size} keys; "
                        "add the key it was written with to KEEL_ENCRYPTION_KEYS (after the "
                        "new key) and rotate again"
                    ) from None
                changes.append(_Change(column, key, value, fresh, False))
    return changes, Rotation(current=current, plain=plain)


def _tally(changes: list[_Change], written: list[bool]) -> Rotation:
    rotated = encrypted = changed = 0
    for change, done in zip(changes, written, strict=True):
        if not done:
            changed += 1
        elif change.encrypts:
            encrypted += 1
        else:
            rotated += 1
    return Rotation(rotated=rotated, encrypted=encrypted, changed=changed)
