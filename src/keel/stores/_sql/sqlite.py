"""The SQLite store: one file, WAL mode, durable before a write returns.

Reads run inline on the caller's thread, on a read connection of their own (in WAL mode a
reader never waits for the writer, and sees every commit made before it started). A write's
statements run inline too, on the write connection, and its commit on the store's writer
thread (:mod:`.sqlite_writer`), which commits every write waiting in one transaction: the
event loop never waits for an fsync, and concurrent appends share one.

Every write transaction is ``BEGIN IMMEDIATE``: it takes the write lock before reading, so a
writer in another process waits on the busy timeout (on the writer thread, never the event
loop) instead of failing on a stale read. The
journal's position is ``runs.last_seq``, advanced by a conditional ``UPDATE`` in the same
transaction as the events (:mod:`.programs`); the statements are rendered once, at import, so
sqlite3's statement cache prepares each of them once.

Durability: ``synchronous="full"`` (the default) fsyncs the WAL on every commit, so a
returned write survives a power loss; ``"normal"`` survives the process crashing, and commits
faster. The file, and its ``-wal`` and ``-shm`` companions, are readable by their owner only.

Watching: a write wakes this store's watchers after its commit; another process's commits (or
another store object's) are seen through ``PRAGMA data_version``, which a waiting watcher reads
every ``poll_interval_s`` on the read connection (it changes when any other connection commits).

Lease times come from the store's :class:`keel.ports.Clock` (all processes on one file share
the machine's clock), so a test can expire a lease without sleeping.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Literal, TypeVar

from keel._sqlite import use_wal
from keel.errors import ConfigurationError, StoreError
from keel.ports import Clock, SystemClock
from keel.stores._common import closed_error
from keel.stores._keyring import Keyring
from keel.stores._signals import Signals
from keel.stores._sql.program import Task
from keel.stores._sql.programs import Programs
from keel.stores._sql.sqlite_schema import (
    CREATE_MIGRATIONS_TABLE,
    HAS_MIGRATIONS_TABLE,
    INSERT_MIGRATION,
    LATEST_VERSION,
    MIGRATIONS,
    SELECT_SCHEMA_VERSION,
)
from keel.stores._sql.sqlite_writer import Writer, drive
from keel.stores._sql.statements import TABLES, Spelling, Statements
from keel.stores._sql.store import SQLStore

__all__ = ["SQLITE", "SQLiteStore"]

T = TypeVar("T")

SQLITE = Statements(
    Spelling(
        schema="main",
        tables={table: table for table in TABLES},
        now=":now",
        skip_locked="",
        lock="",
        param=lambda name: f":{name}",
        # A list parameter is bound as a JSON array (sqlite_writer.bind).
        in_list=lambda name: f"IN (SELECT value FROM json_each(:{name}))",  # noqa: S608
        index_hint=lambda name: f"INDEXED BY {name}",
        arrival="rowid",
    )
)
"""Every statement in SQLite's spelling: rendered once, constants from then on."""

_SQLITE_NOTADB = 26  # "file is not a database"
_SQLITE_CORRUPT = 11


class SQLiteStore(SQLStore):
    """A :class:`keel.ports.Store` in one SQLite file.

    Args:
        path: The database file; parent directories are created. ``":memory:"`` keeps the
            database in memory (gone on ``close``).
        synchronous: ``"full"`` (default) makes each write durable against power loss;
            ``"normal"`` only against the process crashing, and commits faster.
        busy_timeout_s: How long a write waits for another process's write lock before
            failing with :class:`keel.errors.StoreError`.
        clock: The clock lease times are measured by; the system clock by default.
        auto_migrate: Bring the schema up to date when the store is first used (default).
            With ``False``, a database that lacks migrations is refused with a
            :class:`keel.errors.StoreError` until :meth:`upgrade` (``keel db upgrade``) runs.
        max_group: The most writes committed in one transaction (1 turns group commit off).
        poll_interval_s: How often a waiting watcher checks for other processes' commits.
        keyring: Encrypts event bodies, thread messages and the runs' content fields
            (:class:`keel.stores.Keyring`; see :mod:`keel.stores._sealed`); ``None`` writes
            them plain. Plain values are read either way.

    The file is opened, and its schema checked, on first use. One store may be used from
    several threads and event loops. Errors from SQLite are raised as
    :class:`keel.errors.StoreError` with the path and the operation, the cause chained.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "keel.db",
        *,
        synchronous: Literal["full", "normal"] = "full",
        busy_timeout_s: float = 5.0,
        clock: Clock | None = None,
        auto_migrate: bool = True,
        max_group: int = 256,
        poll_interval_s: float = 0.002,
        keyring: Keyring | None = None,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ConfigurationError(
                f"synchronous must be 'full' or 'normal', got {synchronous!r}; use 'full' "
                "unless losing the last writes on a power cut is acceptable"
            )
        if not busy_timeout_s >= 0:
            raise ConfigurationError(
                f"busy_timeout_s must be 0 or more seconds, got {busy_timeout_s!r}; "
                "the default is 5.0"
            )
        if isinstance(max_group, bool) or not isinstance(max_group, int) or max_group < 1:
            raise ConfigurationError(
                f"max_group must be a whole number of at least 1, got {max_group!r}; use 1 to "
                "commit every write on its own, or the default 256"
            )
        if not 0 < poll_interval_s <= 60:
            raise ConfigurationError(
                f"poll_interval_s must be more than 0 and at most 60 seconds, got "
                f"{poll_interval_s!r}; the default is 0.002"
            )
        self._path = os.fspath(path)
        self._memory = self._path in (":memory:", "")
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._auto_migrate = auto_migrate
        self._max_group = max_group
        self._open_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._writer_conn: sqlite3.Connection | None = None
        self._writer: Writer | None = None
        self._schema_ready = False
        self._closed = False
        self._signals = Signals(
            poll=None if self._memory else self._data_version, poll_interval_s=poll_interval_s
        )
        self._programs = Programs(SQLITE, where=f"in '{self._path}'", keyring=keyring)

    @property
    def path(self) -> str:
        """The database file this store uses."""
        return self._path

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r}, synchronous={self._synchronous!r})"

    async def upgrade(self) -> list[int]:
        """Apply the migrations this database lacks; return their versions (``[]``: none).

        Safe to run while other processes use the file: the migration holds the write lock.
        """
        with self._open_lock:
            reader = self._open()
            with self._read_lock:
                applied = self._migrate(reader)
            self._schema_ready = True
        return applied

    async def close(self) -> None:
        """Finish the writes under way and close the file. Closing twice is fine; any other
        use afterwards raises."""
        with self._open_lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop()
        with self._open_lock, self._read_lock:
            for conn in {id(c): c for c in (self._reader, self._writer_conn) if c}.values():
                try:
                    conn.close()
                except sqlite3.Error as exc:
                    raise self._error("close", exc) from exc
            self._reader = self._writer_conn = None

    # --- running programs -----------------------------------------------------------------

    async def _run(self, task: Task[T]) -> T:
        writer, reader = self._ready()
        try:
            if task.write:
                return await writer.submit(task.program)
            with self._read_lock:
                return drive(reader, task.program(), self._clock.now(), [])
        except sqlite3.Error as exc:
            raise self._error(task.action, exc) from exc

    def _data_version(self) -> int:
        """A number that changes when another connection commits (read by watchers)."""
        if self._closed:
            return -1
        _, reader = self._ready()
        with self._read_lock:
            try:
                version: int = reader.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as exc:
                raise self._error("watch", exc) from exc
        return version

    def _ready(self) -> tuple[Writer, sqlite3.Connection]:
        """The writer and the read connection, opening the file and checking (or migrating)
        its schema on first use."""
        writer, reader = self._writer, self._reader
        if writer is not None and reader is not None and self._schema_ready:
            return writer, reader
        with self._open_lock:
            reader = self._open()
            if not self._schema_ready:
                with self._read_lock:
                    if self._auto_migrate:
                        self._migrate(reader)
                    else:
                        self._check_schema(reader)
                self._schema_ready = True
            if self._writer is None:
                assert self._writer_conn is not None
                self._writer = Writer(
                    self._writer_conn,
                    lock=self._read_lock if self._memory else threading.Lock(),
                    clock=self._clock,
                    signals=self._signals,
                    max_group=self._max_group,
                    busy_timeout_s=self._busy_timeout_s,
                    name=f"keel-sqlite-writer:{self._path}",
                )
                # A store dropped without close() still ends its thread.
                weakref.finalize(self, self._writer.stop_soon)
            return self._writer, reader

    def _open(self) -> sqlite3.Connection:
        """Open the connections (with the open lock held); the read connection."""
        if self._closed:
            raise closed_error(repr(self))
        if self._reader is not None:
            return self._reader
        if not self._memory:
            self._create_file()
        writer = self._connect()
        try:
            reader = writer if self._memory else self._connect()
        except BaseException:
            writer.close()
            raise
        self._writer_conn, self._reader = writer, reader
        return reader

    def _create_file(self) -> None:
        """Create the directories and an empty file readable by its owner only (SQLite gives
        the ``-wal`` and ``-shm`` files the database file's permissions)."""
        path = Path(self._path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory for the Keel database '{self._path}': {exc}; "
                "choose a path in a writable directory"
            ) from exc
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except IsADirectoryError:
            pass  # sqlite3 says what is wrong, below
        except OSError as exc:
            raise StoreError(
                f"cannot create the Keel database '{self._path}': {exc}; choose a path in a "
                "writable directory"
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        try:
            # The first statement that reads the file: a file that is not a database fails here.
            use_wal(conn, self._busy_timeout_s)
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout_s * 1000)}")
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorcode == _SQLITE_NOTADB:
                raise StoreError(
                    f"'{self._path}' is not a Keel SQLite database ({exc}); point SQLiteStore "
                    "at another path, or move that file away if it is not needed"
                ) from exc
            if exc.sqlite_errorcode == _SQLITE_CORRUPT:
                raise StoreError(
                    f"the Keel SQLite database '{self._path}' is damaged ({exc}); restore it "
                    "from a backup, or point SQLiteStore at another path"
                ) from exc
            raise self._error("open", exc) from exc

    def _migrate(self, conn: sqlite3.Connection) -> list[int]:
        """Apply the migrations this database lacks, in one transaction; their versions."""
        applied: list[int] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(CREATE_MIGRATIONS_TABLE)
                (version,) = conn.execute(SELECT_SCHEMA_VERSION).fetchone()
                self._refuse_newer(version)
                for migration in MIGRATIONS:
                    if migration.version <= version:
                        continue
                    for statement in migration.statements:
                        conn.execute(statement)
                    conn.execute(INSERT_MIGRATION, (migration.version, migration.name, time.time()))
                    applied.append(migration.version)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error("schema migration", exc) from exc
        return applied

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """Refuse a database whose schema is not this Keel's (``auto_migrate=False``)."""
        try:
            (has_table,) = conn.execute(HAS_MIGRATIONS_TABLE).fetchone()
            version = conn.execute(SELECT_SCHEMA_VERSION).fetchone()[0] if has_table else 0
        except sqlite3.Error as exc:
            raise self._error("schema check", exc) from exc
        self._refuse_newer(version)
        if version < LATEST_VERSION:
            raise StoreError(
                f"the Keel database '{self._path}' has schema {version} and this Keel needs "
                f"schema {LATEST_VERSION}; run `keel db upgrade` (or open the store with "
                "auto_migrate=True)"
            )

    def _refuse_newer(self, version: int) -> None:
        if version > LATEST_VERSION:
            raise StoreError(
                f"'{self._path}' was written by a newer Keel (schema {version}; this "
                f"Keel knows up to schema {LATEST_VERSION}); upgrade keel"
            )

    def _error(self, action: str, exc: sqlite3.Error) -> StoreError:
        message = f"SQLite store '{self._path}': {action} failed: {exc}"
        if exc.sqlite_errorname in ("SQLITE_BUSY", "SQLITE_LOCKED"):
            message += (
                f"; another connection held the write lock for longer than busy_timeout_s="
                f"{self._busy_timeout_s:g}: raise it, or look for a stuck writer"
            )
        return StoreError(message)
