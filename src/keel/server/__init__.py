"""Keel's HTTP server: the agents of a Python module behind a versioned API
(``pip install 'keel-runtime[server]'``).

::

    from keel.server import create_app

    app = create_app(agents=[support])   # a FastAPI app: uvicorn module:app, or keel serve

- :func:`create_app`: the FastAPI application (runs, streams, WebSocket sessions, decisions,
  threads, health and metrics), on a runtime it opens or one it is given.
- :func:`openai_router`: ``/v1/chat/completions`` and ``/v1/models`` for any OpenAI client
  (:class:`Caller`: who calls).
- :class:`ServerSettings`: how it serves (``KEEL_SERVER_*`` variables, a config file).
- API keys, bound to a tenant, a user and scopes, kept hashed beside the journal:
  :class:`KeyStore` (:class:`MemoryKeyStore`, :class:`SQLiteKeyStore`,
  :class:`PostgresKeyStore`) and :func:`open_key_store`.

See docs/guide/server.md. The key store works without FastAPI installed; ``create_app``
needs the ``server`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.server._keys import ApiKey, KeyStore, NewKey, Scope
from keel.server._keys_memory import MemoryKeyStore
from keel.server._keys_open import open_key_store
from keel.server._keys_sqlite import SQLiteKeyStore

if TYPE_CHECKING:
    from keel.server._app import create_app
    from keel.server._keys_postgres import PostgresKeyStore
    from keel.server._openai import openai_router
    from keel.server._openai_caller import Caller
    from keel.server._settings import ServerSettings

__all__ = [
    "ApiKey",
    "Caller",
    "KeyStore",
    "MemoryKeyStore",
    "NewKey",
    "PostgresKeyStore",
    "SQLiteKeyStore",
    "Scope",
    "ServerSettings",
    "create_app",
    "open_key_store",
    "openai_router",
]


def __getattr__(name: str) -> Any:
    # FastAPI, pydantic-settings and psycopg are extras: import them when they are asked for.
    if name == "create_app":
        from keel.server._app import create_app

        return create_app
    if name == "ServerSettings":
        from keel.server._settings import ServerSettings

        return ServerSettings
    if name == "openai_router":
        from keel.server._openai import openai_router

        return openai_router
    if name == "Caller":
        from keel.server._openai_caller import Caller

        return Caller
    if name == "PostgresKeyStore":
        from keel.server._keys_postgres import PostgresKeyStore

        return PostgresKeyStore
    raise AttributeError(f"module 'keel.server' has no attribute {name!r}")
