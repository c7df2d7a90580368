"""One SQL implementation of :class:`keel.ports.Store`, run by SQLite and by PostgreSQL.

How it is built
---------------
Each store operation is written once, in :mod:`.programs`, as a *program*: a generator that
yields database operations (:mod:`.program`: run a statement, fetch rows, run a statement over
many rows, wake watchers after commit) and receives their results. It does no I/O itself, so it
is the same code under SQLite's synchronous ``sqlite3`` and psycopg's asynchronous API: each
backend has an executor that runs the operations on its connection and sends the results back
(as httpx's auth flows are driven by a sync and an async client alike).

The statements are templates in :mod:`.statements`, rendered once per store by the backend's
*spelling* (placeholders, table names with their schema, the clock expression, row locking and
how a list parameter is matched). What differs beyond spelling lives in the backend modules:

- :mod:`.sqlite` and :mod:`.sqlite_writer`: a read connection used inline, writes whose
  statements run inline and whose commits (the fsync) run on one writer thread, the writes that
  wait meanwhile grouped into one transaction; ``PRAGMA data_version`` tells waiting watchers
  about other processes' commits.
- :mod:`.postgres`, :mod:`.postgres_sql`, :mod:`.postgres_group` and :mod:`.postgres_listen`:
  a connection pool, reconnection with the "did my append commit?" check, the one-statement
  append (a data-modifying CTE), group commit (the appends and starts waiting at the same time
  in one statement), ``NOTIFY`` sent after the commit, and one ``LISTEN`` connection per event
  loop.
- :mod:`.sqlite_schema` and :mod:`.postgres_schema`: each dialect's DDL, as numbered,
  forward-only migrations.
- :mod:`.rotation`: re-encrypting what the store keeps with its keyring's first key, in
  batches of conditional updates (the keyring itself, and what it encrypts, are
  :mod:`keel.stores._keyring` and :mod:`keel.stores._sealed`: bodies are sealed when a
  :class:`.programs.Write` is encoded and opened when they are decoded).

A table added later (a queue, budgets, audit, memory) is a few templates and programs here,
written once; a backend overrides a program only to fuse its statements into fewer round trips,
as PostgreSQL does for the append, and may commit several callers' appends together
(:meth:`.store.SQLStore._write`).
"""
