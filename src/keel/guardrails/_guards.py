"""The detectors as :class:`keel.Check` objects, ready for ``Agent(checks=[...])``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from keel._checks import Check
from keel._core.checks import CHECK_POINTS, CheckPoint, CheckRequest, CheckResult
from keel.errors import ConfigurationError
from keel.guardrails._injection import DEFAULT_THRESHOLD, detect_injection, fence
from keel.guardrails._pii import PIIAction, _entities, check_actions, redact_pii

__all__ = ["InjectionAction", "InjectionGuard", "PIIGuard", "PIIRedactor", "UntrustedToolOutput"]

InjectionAction = Literal["block", "flag", "fence", "escalate"]
_INJECTION_ACTIONS: tuple[str, ...] = ("block", "flag", "fence", "escalate")


def _points(points: Iterable[CheckPoint] | str, guard: str) -> tuple[CheckPoint, ...]:
    chosen: tuple[str, ...] = (points,) if isinstance(points, str) else tuple(points)
    wrong = [p for p in chosen if p not in CHECK_POINTS or p == "model_call"]
    if wrong or not chosen:
        raise ConfigurationError(
            f"{guard}: points must be some of input, tool_call, tool_result, output "
            f"(a model call cannot be changed), got {list(chosen)!r}"
        )
    return tuple(p for p in CHECK_POINTS if p in chosen)


def _arguments(request: CheckRequest) -> Any:
    if request.arguments is not None:
        return dict(request.arguments)
    if request.call is not None:
        return json.loads(request.call.arguments or "{}")
    return None


def PIIGuard(  # noqa: N802 - a factory named like the check it makes
    actions: Mapping[str, PIIAction] | None = None,
    default: PIIAction = "redact",
    points: Iterable[CheckPoint] = ("output",),
    entities: Iterable[str] | None = None,
    name: str = "pii",
    *,
    hash_key: bytes | str | None = None,
) -> Check:
    """A check that redacts personal data and secrets, or refuses text that carries some.

    It answers ``modify`` with the redacted text (at ``tool_call``: the arguments as a JSON
    object, their string values redacted), ``deny`` when a type whose action is ``"block"`` is
    found (the reason names the types, never the values) and ``allow`` when nothing is found.
    Actions are those of :func:`keel.guardrails.redact_pii`.
    """
    chosen: Mapping[str, PIIAction] = check_actions(actions, default)
    wanted = _entities(entities)
    where = _points(points, "PIIGuard")

    def redact(text: str, found: set[str], blocked: set[str]) -> str:
        done = redact_pii(text, chosen, default, entities=wanted, hash_key=hash_key)
        found.update(done.entities)
        blocked.update(done.blocked)
        return done.text

    def walk(value: Any, found: set[str], blocked: set[str]) -> Any:
        if isinstance(value, str):
            return redact(value, found, blocked)
        if isinstance(value, list):
            return [walk(item, found, blocked) for item in value]
        if isinstance(value, dict):
            return {key: walk(item, found, blocked) for key, item in value.items()}
        return value

    def pii(request: CheckRequest) -> CheckResult:
        found: set[str] = set()
        blocked: set[str] = set()
        if request.point == "tool_call":
            arguments = _arguments(request)
            if arguments is None:
                return CheckResult.allow()
            replacement = json.dumps(walk(arguments, found, blocked), ensure_ascii=False)
        else:
            if request.text is None:
                return CheckResult.allow()
            replacement = redact(request.text, found, blocked)
        if blocked:
            return CheckResult.deny(f"contains {', '.join(sorted(blocked))}, which is not allowed")
        if not found:
            return CheckResult.allow()
        return CheckResult.modify(replacement, f"redacted {', '.join(sorted(found))}")

    return Check(pii, name=name, points=where)


def _source(request: CheckRequest) -> str:
    if request.point in ("tool_call", "tool_result"):
        return f"tool:{request.call.name if request.call else 'unknown'}"
    return request.point


def _subject(request: CheckRequest) -> str | None:
    if request.point == "tool_call":
        arguments = _arguments(request)
        return None if arguments is None else json.dumps(arguments, ensure_ascii=False)
    return request.text


def InjectionGuard(  # noqa: N802 - a factory named like the check it makes
    action: InjectionAction = "block",
    points: Iterable[CheckPoint] = ("input", "tool_result"),
    threshold: float = DEFAULT_THRESHOLD,
    name: str = "injection",
) -> Check:
    """A check that stops, flags, fences or escalates text that looks like a prompt injection.

    Args:
        action: ``"block"`` denies (a tool result becomes an error the model reads; an input
            fails the run), ``"flag"`` lets it through with a journaled reason, ``"fence"``
            lets it through wrapped as untrusted data (see :func:`keel.guardrails.fence`),
            ``"escalate"`` asks a person.
        points: Where to look; tool results are read as data (see
            :func:`keel.guardrails.detect_injection`'s ``in_data``).
        threshold: The score from which a text counts as an attack.
        name: The check's name in the journal.
    """
    if action not in _INJECTION_ACTIONS:
        raise ConfigurationError(
            f"InjectionGuard action {action!r}: use one of {', '.join(_INJECTION_ACTIONS)}"
        )
    if not 0 < threshold <= 1:
        raise ConfigurationError(f"InjectionGuard threshold must be in (0, 1], got {threshold!r}")
    where = _points(points, "InjectionGuard")
    if action == "fence" and "tool_call" in where:
        raise ConfigurationError(
            "InjectionGuard(action='fence') cannot fence tool arguments (they must stay JSON): "
            "use block, flag or escalate at tool_call"
        )

    def injection(request: CheckRequest) -> CheckResult:
        text = _subject(request)
        if not text:
            return CheckResult.allow()
        found = detect_injection(text, in_data=request.point == "tool_result", threshold=threshold)
        if not found.is_attack:
            return CheckResult.allow()
        reason = (
            f"possible prompt injection in {_source(request)} (score {found.score:.2f}: "
            f"{', '.join(found.signals)})"
        )
        if action == "block":
            return CheckResult.deny(reason)
        if action == "escalate":
            return CheckResult.escalate(reason)
        if action == "fence":
            return CheckResult.modify(fence(text, _source(request)), reason)
        return CheckResult(verdict="allow", reason=reason)

    return Check(injection, name=name, points=where)


def UntrustedToolOutput(  # noqa: N802 - a factory named like the check it makes
    tools: Iterable[str] | None = None,
    name: str = "untrusted",
) -> Check:
    """A check that marks every tool result as untrusted data, attack or not: the model reads
    it fenced (:func:`keel.guardrails.fence`), and the journal records the marking (a
    ``modify`` by this check, "untrusted tool output"). Combine it with an
    :func:`InjectionGuard` that blocks, flags or escalates the results that look like attacks
    (list the guard first: a blocked result is not fenced).

    Args:
        tools: Only the results of these tools (default: every tool's).
        name: The check's name in the journal.
    """
    chosen = None if tools is None else frozenset(tools)
    if chosen is not None and (not chosen or not all(isinstance(t, str) for t in chosen)):
        raise ConfigurationError("UntrustedToolOutput tools must be a non-empty list of names")

    def untrusted(request: CheckRequest) -> CheckResult:
        tool = request.call.name if request.call is not None else ""
        if request.text is None or (chosen is not None and tool not in chosen):
            return CheckResult.allow()
        return CheckResult.modify(fence(request.text, f"tool:{tool}"), "untrusted tool output")

    return Check(untrusted, name=name, points=("tool_result",))


class PIIRedactor:
    """Redacts personal data and secrets from text, as :func:`keel.guardrails.redact_pii`
    does, for ``Runtime(redact=PIIRedactor(...))``: what runs record (their input, the model's
    text, tool results, errors) is redacted before it is stored or sent on. ``"block"`` redacts
    too: what is already there cannot be refused, only kept out of the record.
    """

    def __init__(
        self,
        actions: Mapping[str, PIIAction] | None = None,
        default: PIIAction = "redact",
        *,
        entities: Iterable[str] | None = None,
        hash_key: bytes | str | None = None,
    ) -> None:
        self._actions = {
            entity: "redact" if action == "block" else action
            for entity, action in check_actions(actions, default).items()
        }
        self._default: PIIAction = "redact" if default == "block" else default
        self._entities = None if entities is None else _entities(entities)
        self._hash_key = hash_key

    def __repr__(self) -> str:
        return f"PIIRedactor(default={self._default!r})"

    def __call__(self, text: str) -> str:
        """``text`` redacted."""
        return redact_pii(
            text,
            self._actions,
            self._default,
            entities=self._entities,
            hash_key=self._hash_key,
        ).text
