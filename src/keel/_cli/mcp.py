"""``keel mcp APP``: the agents of an app as tools of an MCP server (the ``mcp`` extra).

One tool per agent, taking ``message`` and an optional ``thread``; each call is a journaled
run on the store (``--db`` or ``KEEL_DB``, as for every command). Over stdio by default, so an
MCP client can start it as a subprocess; ``--http`` serves streamable HTTP at ``/mcp``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from keel._cli._common import DbOption, app_of, fail, guarded, make_runtime, target_ref
from keel._cli.loader import load_app
from keel.errors import MissingExtraError

__all__ = ["mcp"]


def _expose() -> Any:
    """``keel.mcp``'s server side, or a one-line error naming the extra."""
    try:
        from keel.mcp import _expose
    except ImportError as exc:
        missing = MissingExtraError(package=exc.name or "mcp", extra="mcp", feature="keel mcp")
        fail(missing.message)
    return _expose


def mcp(
    app_target: Annotated[
        str | None,
        typer.Argument(
            metavar="APP",
            help="The agents to serve: a Python file or module (every agent it defines), or "
            "file.py:attribute (default: $KEEL_APP).",
        ),
    ] = None,
    *,
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP at /mcp instead of stdio.")
    ] = False,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on with --http.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", "-p", help="Port to listen on with --http.")
    ] = 8000,
    db: DbOption = None,
) -> None:
    """Serve the app's agents as MCP tools: over stdio (for a client that starts this command)
    or, with --http, over streamable HTTP. Each tool call is a journaled run."""
    expose = _expose()
    chosen = app_of(app_target)
    if chosen is None:
        fail("say which agents to serve: keel mcp path/to/file.py (or set KEEL_APP)")
    agents = guarded(lambda: load_app(chosen))
    refs = tuple((agent, target_ref(f"{chosen}:{name}")) for name, agent in agents.items())

    async def main() -> None:
        async with make_runtime(db, agents=refs) as runtime:
            server = expose.agent_server(runtime, agents)
            if http:
                await server.run_streamable_http_async(host=host, port=port)
            else:
                await server.run_stdio_async()

    guarded(lambda: asyncio.run(main()))
