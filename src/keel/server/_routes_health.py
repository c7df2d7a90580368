"""Health and metrics: ``/healthz`` (liveness), ``/readyz`` (readiness), semantic probes at
``/v1/health/semantic``, and Prometheus metrics at ``/metrics``.

Liveness and readiness need no key (load balancers and orchestrators ask them) and say
nothing about any tenant. Metrics cover every tenant, so they need the ``admin`` scope once
keys exist; so do the probes, which start runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from keel.observability import HealthCheck, HealthReport, check_health, liveness, readiness
from keel.server._auth import Principal, require
from keel.server._errors import ApiError
from keel.server._models_more import HealthCheckView, HealthView, ProbeView
from keel.server._models_runs import NAME_PATTERN
from keel.server._openapi import errors
from keel.server._state import ServerState, request_state

__all__ = ["router"]

router = APIRouter(tags=["health"])
State = Annotated[ServerState, Depends(request_state)]


def _view(report: HealthReport, agent_of: dict[str, str] | None = None) -> HealthView:
    return HealthView(
        ok=report.ok,
        checks=[HealthCheckView(name=c.name, ok=c.ok, why=c.why) for c in report.checks],
        probes=[
            ProbeView(
                agent=(agent_of or {}).get(p.name, ""),
                name=p.name,
                passed=p.passed,
                answer=p.answer,
                latency_s=p.latency_s,
                why=p.why,
            )
            for p in report.probes
        ],
    )


def _answer(view: HealthView) -> JSONResponse:
    return JSONResponse(view.model_dump(mode="json"), status_code=200 if view.ok else 503)


_HEALTH_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {"model": HealthView, "description": "Not healthy: the checks say why."}
}


@router.get("/healthz", response_model=HealthView, responses=_HEALTH_RESPONSES)
async def healthz() -> JSONResponse:
    """Liveness: the process answers. Nothing else is read, so a stuck database never gets
    a healthy process restarted."""
    return _answer(_view(liveness()))


@router.get("/readyz", response_model=HealthView, responses=_HEALTH_RESPONSES)
async def readyz(state: State) -> JSONResponse:
    """Readiness: not draining, the store answers, its schema is current, no breaker is
    open, and the queue is no deeper than ``ready_max_queue_depth``. 503 otherwise."""
    report = await readiness(state.runtime, max_queue_depth=state.settings.ready_max_queue_depth)
    draining = state.draining.is_set()
    why = "shutting down: takes no new work" if draining else "takes new work"
    report = report.merged(
        HealthReport(checks=(HealthCheck(name="server", ok=not draining, why=why),))
    )
    return _answer(_view(report))


@router.get(
    "/v1/health/semantic",
    response_model=HealthView,
    responses={**errors(404), **_HEALTH_RESPONSES},
)
async def semantic_health(
    state: State,
    principal: Annotated[Principal, Depends(require("admin"))],
    agent: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> JSONResponse:
    """Ask the served agents their health probes (the app's ``health_probes``) and judge
    the answers; 503 when one is wrong. Each probe is a run."""
    chosen = state.probes
    if agent is not None:
        state.agent(agent)  # 404 for an agent not served
        chosen = {agent: state.probes.get(agent, [])}
    report = HealthReport()
    agent_of: dict[str, str] = {}
    for name, probes in chosen.items():
        if not probes:
            continue
        asked = await check_health(state.runtime, state.agent(name), probes, metrics=state.metrics)
        agent_of.update({p.name: name for p in asked.probes})
        report = report.merged(asked)
    if not report.probes:
        raise ApiError(
            404,
            "no_probes",
            "no health probes are configured"
            + (f" for agent '{agent}'" if agent else "")
            + "; define health_probes in the app module (see docs/guide/health.md)",
        )
    return _answer(_view(report, agent_of))


@router.get("/metrics", include_in_schema=False)
async def metrics(
    state: State,
    principal: Annotated[Principal, Depends(require("admin"))],
) -> Response:
    """Prometheus metrics of every run this process journals, and of the store."""
    found = state.metrics
    if found is None:
        raise ApiError(
            404,
            "metrics_off",
            "metrics need prometheus-client: pip install 'keel-runtime[metrics]'",
        )
    from prometheus_client import CONTENT_TYPE_LATEST

    await found.refresh()
    return Response(found.exposition(), media_type=CONTENT_TYPE_LATEST)
