"""``keel health``: readiness of the store, breakers and queue, and the app's semantic probes.

The probes are the app module's ``health_probes`` attribute: a list of
:class:`keel.observability.Probe` (asked of the agent ``--agent`` names, or of the app's only
agent), or a dict from agent name to such a list. Exit codes: 0 healthy, 1 unhealthy, 2 bad
usage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Annotated, Any

import typer

from keel._agent import Agent
from keel._cli._common import (
    EXIT_FAILED,
    DbOption,
    JsonOption,
    app_of,
    call,
    dumps,
    fail,
    guarded,
    stdout,
)
from keel._cli.loader import _module
from keel._runtime.runtime import Runtime
from keel.errors import UsageError
from keel.observability import HealthReport, Probe, check_health, readiness

__all__ = ["health"]

PROBES_ATTRIBUTE = "health_probes"

HealthApp = Annotated[
    str | None,
    typer.Option(
        "--app",
        "-a",
        help="The app whose agents and health_probes to check: a Python file or module "
        "[default: $KEEL_APP].",
    ),
]


def health(
    app: HealthApp = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Ask the probes of this agent only.")
    ] = None,
    db: DbOption = None,
    max_queue_depth: Annotated[
        int | None, typer.Option("--max-queue-depth", min=0, help="Unhealthy above this.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check the store, schema, breakers and queue, then ask the app's health_probes; exit 0
    when healthy, 1 when not."""
    chosen = app_of(app)
    if agent and not chosen:
        fail("say where the agent is defined: --app path/to/file.py (or set KEEL_APP)")
    plan = guarded(lambda: _plan(chosen, agent))

    async def work(runtime: Runtime) -> HealthReport:
        report = await readiness(runtime, max_queue_depth=max_queue_depth)
        for chosen, probes in plan:
            runtime.register(chosen)
            report = report.merged(await check_health(runtime, chosen, probes))
        return report

    report = call(db, work)
    _print(report, as_json=as_json)
    raise typer.Exit(0 if report.ok else EXIT_FAILED)


def _plan(app: str | None, name: str | None) -> list[tuple[Agent[Any], list[Probe]]]:
    """Which probes to ask of which agents."""
    if app is None:
        return []
    if ":" in app.replace("\\", "/").split("/")[-1]:
        raise UsageError(f"--app for keel health is a file or module, without ':', got {app!r}")
    module = _module(app)
    agents = {v.name: v for v in vars(module).values() if isinstance(v, Agent)}
    if not agents:
        raise UsageError(f"{app} defines no keel.Agent")
    declared = getattr(module, PROBES_ATTRIBUTE, None)
    if declared is None:
        if name is not None:
            raise UsageError(f"{app} has no {PROBES_ATTRIBUTE} to ask agent '{name}'")
        return []
    if isinstance(declared, dict):
        table = {str(k): _probes(v, app) for k, v in declared.items()}
    elif isinstance(declared, list | tuple):
        probes = _probes(declared, app)
        target = name if name is not None else (next(iter(agents)) if len(agents) == 1 else None)
        if target is None:
            raise UsageError(
                f"{app} defines several agents ({', '.join(sorted(agents))}); say which one "
                f"the {PROBES_ATTRIBUTE} are for with --agent, or make it a dict"
            )
        table = {target: probes}
    else:
        raise UsageError(
            f"{app}.{PROBES_ATTRIBUTE} must be a list of keel.observability.Probe, or a dict "
            f"from agent name to such a list, not {type(declared).__name__}"
        )
    if name is not None:
        table = {name: table[name]} if name in table else {}
        if not table:
            raise UsageError(f"{app}.{PROBES_ATTRIBUTE} has no probes for agent '{name}'")
    plan: list[tuple[Agent[Any], list[Probe]]] = []
    for agent_name, probes in table.items():
        if agent_name not in agents:
            raise UsageError(
                f"{app}.{PROBES_ATTRIBUTE} names agent '{agent_name}', which it does not define "
                f"(it defines: {', '.join(sorted(agents))})"
            )
        plan.append((agents[agent_name], probes))
    return plan


def _probes(value: Any, app: str) -> list[Probe]:
    if not isinstance(value, Sequence) or not all(isinstance(p, Probe) for p in value):
        raise UsageError(
            f"{app}.{PROBES_ATTRIBUTE} must hold keel.observability.Probe objects (a list, or a "
            "dict of lists)"
        )
    return list(value)


def _print(report: HealthReport, *, as_json: bool) -> None:
    out = stdout()
    if as_json:
        data = {
            "ok": report.ok,
            "checks": [asdict(c) for c in report.checks],
            "probes": [asdict(p) for p in report.probes],
        }
        out.print(dumps(data), markup=False)
        return
    for check in report.checks:
        out.print(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.why}", markup=False)
    for probe in report.probes:
        mark = "ok  " if probe.passed else "FAIL"
        out.print(
            f"{mark}  probe {probe.name!r}: {probe.why} ({probe.latency_s:.2f} s)", markup=False
        )
    out.print("healthy" if report.ok else "unhealthy", markup=False)
