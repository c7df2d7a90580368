"""``create_app``: the FastAPI application serving a runtime's agents.

The app owns what it makes and borrows what it is given: a runtime, key store or metrics
passed in are the caller's to close; those it opens (from the environment's
:class:`keel.KeelSettings`) it closes when it stops. Everything starts in the app's lifespan,
on the event loop that serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from keel._agent import Agent
from keel._runtime.runtime import Runtime
from keel._settings import KeelSettings
from keel.observability import Metrics, Probe
from keel.server._auth import require
from keel.server._errors import CatchAll, install_error_handlers
from keel.server._intake import Intake
from keel.server._keys import KeyStore
from keel.server._keys_open import key_store_for
from keel.server._middleware import BodyLimit, RefuseWhileDraining
from keel.server._openai import openai_router
from keel.server._routes_decisions import router as decisions
from keel.server._routes_health import router as health
from keel.server._routes_runs import router as runs
from keel.server._routes_stream import router as stream
from keel.server._routes_threads import router as threads
from keel.server._routes_ws import router as ws
from keel.server._settings import ServerSettings
from keel.server._state import ServerState

if TYPE_CHECKING:
    from keel.schedules import Schedule, Scheduler
    from keel.webhooks import Webhooks

__all__ = ["create_app"]

_log = logging.getLogger("keel.server")
# How long the inline worker waits before trying again after its loop failed (a store
# outage): long enough not to spin, short enough to come back quickly.
_WORKER_RESTART_S = 1.0

_DESCRIPTION = """\
Keel's HTTP API: start runs of the served agents, follow them (Server-Sent Events or a
WebSocket), decide on what waits for people, and read the decision history.

Authenticate with an API key (`keel keys create`) as `Authorization: Bearer KEY` or
`X-API-Key: KEY`. Errors are JSON: `{"error": {"code", "message", "field"}}`.
"""


def create_app(
    runtime: Runtime | None = None,
    *,
    agents: Iterable[Agent[Any]] | Mapping[str, Agent[Any]] = (),
    settings: ServerSettings | None = None,
    keys: KeyStore | None = None,
    metrics: Metrics | None = None,
    probes: Mapping[str, Sequence[Probe]] | None = None,
    keel_settings: KeelSettings | None = None,
    webhooks: Webhooks | None = None,
    schedules: Sequence[Schedule] = (),
) -> FastAPI:
    """The API serving ``agents`` (see docs/guide/server.md).

    Args:
        runtime: The runtime to serve (borrowed: the caller closes it). Default: one the app
            opens when it starts, on ``keel_settings`` (default: read from the environment),
            and closes when it stops.
        agents: The agents served, by name; with a runtime, its registered agents are served
            too. Each is registered with the runtime.
        settings: How to serve (default: :class:`ServerSettings` defaults).
        keys: Where API keys are kept. Default: beside the runtime's store (the same SQLite
            file or PostgreSQL schema; in memory for a memory store).
        metrics: The :class:`keel.observability.Metrics` served at ``/metrics``: pass the one
            your runtime observes. Default: the app's own (watching the store for queue
            depth and the like; it also counts the events of a runtime the app opens).
        probes: Semantic health probes per agent name, asked by ``/v1/health/semantic``.
        keel_settings: Settings of the runtime the app opens (ignored with ``runtime``).
        webhooks: Signed webhooks to deliver while the app runs (:mod:`keel.webhooks`); it
            observes the runtime the app opens, so runs of this process are told at once.
        schedules: Cron schedules this app fires while it runs (:mod:`keel.schedules`);
            every replica may run them: each due time fires once.
    """
    served = dict(agents) if isinstance(agents, Mapping) else {a.name: a for a in agents}
    for agent in served.values():
        if not isinstance(agent, Agent):
            raise TypeError(f"agents must be keel.Agent objects, got {type(agent).__name__}")
    chosen = settings or ServerSettings()
    asked = {name: list(found) for name, found in (probes or {}).items()}

    # Made now (it opens nothing until used) so that routers can be given it; opened and
    # closed with the app.
    own_metrics = metrics if metrics is not None else _new_metrics()
    opened = runtime is None
    if runtime is None:
        live = Runtime(
            settings=keel_settings or KeelSettings.from_environ(),
            recover_on_start=False,  # the inline worker (or another) claims what is left
            observers=[
                *([own_metrics] if own_metrics is not None else []),
                *([webhooks] if webhooks is not None else []),
            ],
        )
    else:
        live = runtime
    scheduler: Scheduler | None = None
    if schedules:
        from keel.schedules import Scheduler

        scheduler = Scheduler(live, schedules=schedules)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            for agent in served.values():
                live.register(agent)
            key_store = keys if keys is not None else key_store_for(live)
            if own_metrics is not None and metrics is None:
                own_metrics.watch(live)
            state = ServerState(
                settings=chosen,
                runtime=live,
                agents=live.agents,
                keys=key_store,
                intake=Intake(chosen.max_inflight, retry_after_s=chosen.retry_after_s),
                metrics=own_metrics,
                probes=asked,
            )
            app.state.keel = state
            if chosen.inline_worker and state.agents:
                state.worker = live.worker(
                    concurrency=chosen.worker_concurrency, grace_s=chosen.grace_s
                )
                state.worker_task = asyncio.create_task(
                    _keep_working(state), name="keel-inline-worker"
                )
            try:
                async with _beside(live, webhooks, scheduler):
                    yield
            finally:
                state.drain()
                if state.worker_task is not None:
                    await state.worker_task
                if keys is None:
                    await key_store.aclose()
        finally:
            if opened:
                await live.close()

    app = FastAPI(
        title="Keel",
        version="1",
        description=_DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    for router in (runs, stream, decisions, threads, ws, health):
        app.include_router(router)
    # /v1/chat/completions and /v1/models for OpenAI clients: the same keys and tenants.
    app.include_router(openai_router(live, caller=require("run")))
    # Added innermost first: a request meets CatchAll, then the drain, then the size limit.
    app.add_middleware(BodyLimit, limit=chosen.max_body_bytes)
    app.add_middleware(RefuseWhileDraining)
    app.add_middleware(CatchAll)
    return app


@contextlib.asynccontextmanager
async def _beside(
    runtime: Runtime, webhooks: Webhooks | None, scheduler: Scheduler | None
) -> AsyncIterator[None]:
    """Webhooks delivered and schedules fired while the app serves (a delivery or a fire cut
    short here is finished by another replica, or by this one when it starts again)."""
    if webhooks is not None:
        await webhooks.start(runtime)
    try:
        if scheduler is not None:
            await scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                await scheduler.stop()
    finally:
        if webhooks is not None:
            await webhooks.stop()


def _new_metrics() -> Metrics | None:
    """Metrics of the app's own, when prometheus-client is installed."""
    try:
        return Metrics()
    except Exception:  # noqa: BLE001 - metrics are optional: the metrics extra is missing
        return None


async def _keep_working(state: ServerState) -> None:
    """Run the inline worker until the drain; a failure of its loop (the store went away)
    is logged and the loop starts again, so the process keeps driving runs once it is back."""
    worker = state.worker
    assert worker is not None
    while not state.draining.is_set():
        try:
            await worker.run()
        except Exception as exc:  # noqa: BLE001 - a store outage must not end the worker
            _log.warning("the inline worker stopped (%s); starting again", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.draining.wait(), _WORKER_RESTART_S)
