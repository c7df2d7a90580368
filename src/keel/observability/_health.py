"""Health: liveness, readiness, and semantic probes that ask an agent questions.

- :func:`liveness`: the process answers (nothing is read: a stuck database must not get a
  process killed that would come back to the same database).
- :func:`readiness`: the store answers, its schema is the one this Keel writes, no model's
  breaker is open, and the queue is not deeper than allowed; each with ``ok`` and ``why``.
- :func:`check_health`: configured :class:`Probe` questions go through an agent, and each
  answer is checked (exact, contains, or a scorer function), so that a deploy can be failed
  when the agent answers wrong though every process is up.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.errors import ConfigurationError, StoreError

if TYPE_CHECKING:
    from keel._agent import Agent
    from keel._runtime.runtime import Runtime
    from keel.observability._metrics import Metrics

__all__ = [
    "HealthCheck",
    "HealthReport",
    "Probe",
    "ProbeResult",
    "check_health",
    "liveness",
    "readiness",
]

Scorer = Callable[[str], "bool | Awaitable[bool]"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheck:
    """One thing checked: its name, whether it is fine, and why (in words)."""

    name: str
    ok: bool
    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """A probe's outcome: the agent's answer, whether it passed, how long it took."""

    name: str
    question: str
    answer: str | None
    passed: bool
    latency_s: float
    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    """The outcome of a health check: ``ok`` when every check and probe is."""

    checks: tuple[HealthCheck, ...] = ()
    probes: tuple[ProbeResult, ...] = ()
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        ok = all(c.ok for c in self.checks) and all(p.passed for p in self.probes)
        object.__setattr__(self, "ok", ok)

    def merged(self, other: HealthReport) -> HealthReport:
        """This report and ``other`` together."""
        return HealthReport(checks=self.checks + other.checks, probes=self.probes + other.probes)


@dataclass(frozen=True, slots=True)
class Probe:
    """A question with a known right answer, and how to recognize it.

    Give exactly one of ``exact`` (the whole answer, surrounding space ignored), ``contains``
    (a piece of text the answer must hold; ``case_sensitive=False`` by default) or ``scorer``
    (a function of the answer returning ``True`` when it is right; it may be async).
    ``name`` labels the probe in reports and metrics (default: the question, shortened).
    """

    question: str
    exact: str | None = None
    contains: str | None = None
    scorer: Scorer | None = None
    name: str = ""
    case_sensitive: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise ConfigurationError("a Probe needs a question (non-empty text)")
        given = [x for x in (self.exact, self.contains, self.scorer) if x is not None]
        if len(given) != 1:
            raise ConfigurationError(
                "a Probe needs exactly one of exact=..., contains=... or scorer=... to say "
                f"what a right answer to {self.question[:60]!r} is"
            )
        if self.scorer is not None and not callable(self.scorer):
            raise ConfigurationError("a Probe's scorer must be a function of the answer text")
        if not self.name:
            short = " ".join(self.question.split())
            object.__setattr__(self, "name", short[:60])

    async def judge(self, answer: str) -> tuple[bool, str]:
        """Whether ``answer`` is right, and why not."""
        if self.exact is not None:
            ok = self._fold(answer.strip()) == self._fold(self.exact.strip())
            return ok, "matches" if ok else f"expected exactly {self.exact!r}"
        if self.contains is not None:
            ok = self._fold(self.contains) in self._fold(answer)
            return ok, "contains the expected text" if ok else f"does not contain {self.contains!r}"
        assert self.scorer is not None
        scored = self.scorer(answer)
        if inspect.isawaitable(scored):
            scored = await scored
        ok = bool(scored)
        return ok, "the scorer accepted it" if ok else "the scorer rejected it"

    def _fold(self, text: str) -> str:
        return text if self.case_sensitive else text.casefold()


def liveness() -> HealthReport:
    """The process is alive (it answered); nothing else is read."""
    return HealthReport(checks=(HealthCheck(name="process", ok=True, why="the process answers"),))


async def readiness(
    runtime: Runtime,
    *,
    timeout_s: float = 5.0,
    max_queue_depth: int | None = None,
    allow_open_breakers: bool = False,
) -> HealthReport:
    """Whether ``runtime`` can take work: its store answers within ``timeout_s``, the schema
    is current, no breaker is open (unless ``allow_open_breakers``), and at most
    ``max_queue_depth`` runs are queued (``None``: the depth is reported, never fails)."""
    if timeout_s <= 0:
        raise ConfigurationError(f"timeout_s must be positive, got {timeout_s!r}")
    store_check, queued = await _store_check(runtime, timeout_s, max_queue_depth)
    checks = [store_check]
    checks.append(await _schema_check(runtime, reachable=store_check.ok))
    checks.append(await _breakers_check(runtime, timeout_s, allow_open_breakers))
    if queued is None:
        checks.append(HealthCheck(name="queue", ok=False, why="unknown: the store did not answer"))
    elif max_queue_depth is not None and queued > max_queue_depth:
        why = f"{queued} runs queued, more than the {max_queue_depth} allowed"
        checks.append(HealthCheck(name="queue", ok=False, why=why))
    else:
        checks.append(HealthCheck(name="queue", ok=True, why=f"{queued} runs queued"))
    return HealthReport(checks=tuple(checks))


async def _store_check(
    runtime: Runtime, timeout_s: float, max_queue_depth: int | None
) -> tuple[HealthCheck, int | None]:
    scan = 1000 if max_queue_depth is None else max_queue_depth + 1
    try:
        queued = await asyncio.wait_for(
            runtime.store.list_runs(status="queued", limit=scan), timeout_s
        )
    except TimeoutError:
        return HealthCheck(name="store", ok=False, why=f"no answer within {timeout_s:g} s"), None
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return HealthCheck(name="store", ok=False, why=_reason(exc)), None
    return HealthCheck(name="store", ok=True, why=f"{type(runtime.store).__name__} answers"), len(
        queued
    )


async def _schema_check(runtime: Runtime, *, reachable: bool) -> HealthCheck:
    store = runtime.store
    if not hasattr(store, "upgrade"):
        return HealthCheck(name="schema", ok=True, why="the store keeps no schema")
    if not reachable:
        return HealthCheck(name="schema", ok=False, why="unknown: the store did not answer")
    path = getattr(store, "path", None)
    if isinstance(path, str) and path not in ("", ":memory:"):
        from keel.stores._sql.sqlite_schema import LATEST_VERSION

        try:
            version = await asyncio.to_thread(_sqlite_version, path)
        except sqlite3.Error as exc:
            return HealthCheck(name="schema", ok=False, why=f"cannot read the schema ({exc})")
        if version != LATEST_VERSION:
            why = f"schema {version}, this Keel writes {LATEST_VERSION}: run `keel db upgrade`"
            return HealthCheck(name="schema", ok=False, why=why)
        return HealthCheck(name="schema", ok=True, why=f"schema {version} is current")
    versions = getattr(store, "schema_version", None)
    if callable(versions):  # PostgreSQL: ask the database, now
        try:
            version, latest = await versions()
        except StoreError as exc:
            return HealthCheck(name="schema", ok=False, why=str(exc))
        if version != latest:
            why = f"schema {version}, this Keel writes {latest}: run `keel db upgrade`"
            return HealthCheck(name="schema", ok=False, why=why)
        return HealthCheck(name="schema", ok=True, why=f"schema {version} is current")
    # In-memory SQLite: the store made its schema when it opened.
    return HealthCheck(name="schema", ok=True, why="made by the store when it opened")


def _sqlite_version(path: str) -> int:
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=2) as conn:
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    conn.close()
    return int(row[0])


async def _breakers_check(runtime: Runtime, timeout_s: float, allow_open: bool) -> HealthCheck:
    if runtime.breakers is None:
        return HealthCheck(name="breakers", ok=True, why="no circuit breakers")
    try:
        statuses = await asyncio.wait_for(runtime.breaker_statuses(), timeout_s)
    except Exception as exc:  # noqa: BLE001 - an unreadable board is reported, not raised
        return HealthCheck(name="breakers", ok=False, why=f"cannot read them ({_reason(exc)})")
    opened = sorted(s.name for s in statuses if s.state == "open")
    if not opened:
        return HealthCheck(name="breakers", ok=True, why="no breaker is open")
    return HealthCheck(name="breakers", ok=allow_open, why=f"open: {', '.join(opened)}")


def _reason(exc: BaseException) -> str:
    from keel._redact import redact

    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return redact(" ".join(str(message).split()))


async def check_health(
    runtime: Runtime,
    agent: Agent[Any],
    probes: Sequence[Probe],
    *,
    metrics: Metrics | None = None,
    timeout_s: float = 60.0,
) -> HealthReport:
    """Ask ``agent`` each probe's question (a run of its own, on a thread of its own) and
    judge its answer. With ``metrics``, each probe's outcome and latency is recorded
    (``keel_health_probe_ok``, ``keel_health_ok``)."""
    if not probes:
        raise ConfigurationError(f"no probes to ask agent '{agent.name}'; give at least one")
    for probe in probes:
        if not isinstance(probe, Probe):
            raise ConfigurationError(
                f"probes must be keel.observability.Probe objects, got {type(probe).__name__}"
            )
    results = [await _ask(runtime, agent, probe, timeout_s) for probe in probes]
    if metrics is not None:
        for result in results:
            metrics.record_probe(
                agent.name, result.name, ok=result.passed, latency_s=result.latency_s
            )
        metrics.record_health(agent.name, ok=all(r.passed for r in results))
    return HealthReport(probes=tuple(results))


async def _ask(runtime: Runtime, agent: Agent[Any], probe: Probe, timeout_s: float) -> ProbeResult:
    started = time.perf_counter()

    def done(answer: str | None, passed: bool, why: str) -> ProbeResult:
        latency = time.perf_counter() - started
        return ProbeResult(
            name=probe.name,
            question=probe.question,
            answer=answer,
            passed=passed,
            latency_s=latency,
            why=why,
        )

    thread = f"keel-health-{uuid.uuid4().hex[:12]}"
    try:
        result = await asyncio.wait_for(
            runtime.run(agent, probe.question, thread=thread), timeout_s
        )
    except TimeoutError:
        return done(None, False, f"no answer within {timeout_s:g} s")
    except Exception as exc:  # noqa: BLE001 - a failing agent is an unhealthy one
        return done(None, False, f"the run failed: {_reason(exc)}")
    if result.status != "completed":
        return done(None, False, f"the run ended {result.status}")
    output = result.final_output
    answer = output if isinstance(output, str) else str(output)
    try:
        passed, why = await probe.judge(answer)
    except Exception as exc:  # noqa: BLE001 - a broken scorer fails the probe, says why
        return done(answer, False, f"the scorer raised {type(exc).__name__}")
    return done(answer, passed, why)
