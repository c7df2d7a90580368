"""The PostgreSQL store (see :mod:`keel.stores._sql.postgres`); needs the ``postgres`` extra."""

from keel.errors import MissingExtraError

try:
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a test with psycopg hidden
    raise MissingExtraError(
        package="psycopg", extra="postgres", feature="The PostgreSQL store"
    ) from exc

from keel.stores._sql.postgres import PostgresStore

__all__ = ["PostgresStore"]
