"""``keel serve``: the agents of an app behind the HTTP API (the ``server`` extra).

Settings come from flags, then ``KEEL_SERVER_*`` variables, then ``--config`` (a TOML or JSON
file with a ``server`` table); the store from ``--db`` or ``KEEL_DB`` as for every command.
A setting that does not fit ends in one line naming it, with exit code 2. Until an API key
exists, the server listens on loopback only: a non-loopback ``--host`` is refused.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from keel._cli._common import DbOption, app_of, fail, guarded, stderr
from keel._cli.health import _plan
from keel._cli.loader import load_app, loaded_module
from keel._settings import KeelSettings
from keel.errors import MissingExtraError, UsageError

__all__ = ["serve"]


def _server_modules() -> Any:
    """``keel.server``'s app and runner, or a one-line error naming the extra."""
    try:
        from keel.server import _app, _serve, _settings
    except ImportError as exc:
        missing = MissingExtraError(
            package=exc.name or "fastapi", extra="server", feature="keel serve"
        )
        fail(missing.message)
    return _app, _serve, _settings


def _probes(app: str) -> dict[str, list[Any]]:
    """The app's ``health_probes`` by agent (none for a ``module:attribute`` app)."""
    if ":" in app.replace("\\", "/").split("/")[-1]:
        return {}
    return {agent.name: probes for agent, probes in _plan(app, None)}


def _companions(app: str) -> tuple[Any, list[Any]]:
    """The app module's ``webhooks`` (a :class:`keel.webhooks.Webhooks`) and ``schedules``
    (a list of :class:`keel.schedules.Schedule`), when it defines them."""
    module = loaded_module(app)
    webhooks = getattr(module, "webhooks", None)
    schedules = list(getattr(module, "schedules", None) or ())
    if webhooks is not None:
        from keel.webhooks import Webhooks

        if not isinstance(webhooks, Webhooks):
            raise UsageError(
                f"{app} defines webhooks as {type(webhooks).__name__}; make it "
                "keel.webhooks.Webhooks([...]) or rename it"
            )
    if schedules:
        from keel.schedules import Schedule

        wrong = [type(s).__name__ for s in schedules if not isinstance(s, Schedule)]
        if wrong:
            raise UsageError(
                f"{app} defines schedules holding {', '.join(sorted(set(wrong)))}; make it a "
                "list of keel.schedules.Schedule or rename it"
            )
    return webhooks, schedules


async def _any_keys(settings: KeelSettings) -> bool:
    from keel.server import open_key_store

    store = open_key_store(settings.db, schema=settings.db_schema)
    try:
        return await store.any_keys()
    finally:
        await store.aclose()


def serve(
    app_target: Annotated[
        str | None,
        typer.Argument(
            metavar="APP",
            help="The agents to serve: a Python file or module (every agent it defines), or "
            "file.py:attribute (default: $KEEL_APP).",
        ),
    ] = None,
    *,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", help="Port to listen on (default 8000).")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="A TOML or JSON file with a 'server' table of settings."),
    ] = None,
    inline_worker: Annotated[
        bool | None,
        typer.Option(
            "--inline-worker/--no-inline-worker",
            help="Drive runs in this process too (default on); off: keel worker drives them.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", help="Runs the inline worker drives at once."),
    ] = None,
    grace: Annotated[
        float | None,
        typer.Option("--grace", help="Seconds work in progress may finish after SIGTERM."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Serve the app's agents over HTTP (API under /v1, docs at /docs) until SIGTERM or
    Ctrl-C, which drain it: new requests get 503, runs under way get --grace seconds, then
    go back to the store for another worker."""
    app_module, serve_module, settings_module = _server_modules()
    chosen = app_of(app_target)
    if chosen is None:
        fail("say which agents to serve: keel serve path/to/file.py (or set KEEL_APP)")
    agents = guarded(lambda: load_app(chosen))
    probes = guarded(lambda: _probes(chosen))
    settings = guarded(
        lambda: settings_module.ServerSettings.from_environ(
            config_file=config,
            override_names={"worker_concurrency": "--concurrency", "grace_s": "--grace"},
            host=host,
            port=port,
            inline_worker=inline_worker,
            worker_concurrency=concurrency,
            grace_s=grace,
        )
    )
    keel_settings = guarded(KeelSettings.from_environ)
    if db is not None:
        keel_settings = keel_settings.model_copy(update={"db": db})
    from keel.server._auth import is_loopback

    keyed = guarded(lambda: asyncio.run(_any_keys(keel_settings)))
    if not keyed and not is_loopback(settings.host):
        fail(
            f"no API key exists yet, so keel serve listens on loopback only, not on "
            f"{settings.host}; create a key first (keel keys create --tenant T --user U --scope "
            "run --scope read), or use --host 127.0.0.1"
        )
    webhooks, schedules = guarded(lambda: _companions(chosen))
    app = app_module.create_app(
        agents=agents,
        settings=settings,
        probes=probes,
        keel_settings=keel_settings,
        webhooks=webhooks,
        schedules=schedules,
    )
    where = f"http://{settings.host}:{settings.port}"
    worker = (
        f"driving runs ({settings.worker_concurrency} at a time)"
        if settings.inline_worker
        else "not driving runs (keel worker does)"
    )
    access = (
        "API keys required" if keyed else "no API key exists: loopback clients only, without a key"
    )
    stderr().print(
        f"keel serve: agents {', '.join(sorted(agents))} on {where} (docs at {where}/docs); "
        f"{worker}; {access}",
        markup=False,
        style="dim",
    )
    guarded(lambda: serve_module.serve(app, settings))
