"""Matching expected values against what a run produced: exact values, ``ANY``, a regex, a
callable, a partial mapping, nested in dicts and lists.

::

    matches({"order_id": re.compile(r"^o-\\d+$"), "note": ANY}, {"order_id": "o-1", "note": "x"})

Data files cannot hold Python objects, so they spell matchers as one-key objects:
``{"$any": true}``, ``{"$regex": "^o-"}``, ``{"$contains": "refund"}`` and
``{"$partial": {...}}`` (a mapping with at least these keys); :func:`matcher_from_json`
turns them into the objects below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ANY",
    "Containing",
    "Partial",
    "describe",
    "matcher_from_json",
    "matcher_to_json",
    "matches",
    "mismatch",
]


class _Any:
    """Matches any value (``None`` included)."""

    def __repr__(self) -> str:
        return "ANY"

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


ANY: Final = _Any()
"""Matches any value: ``call("refund", order_id=ANY)``."""


@dataclass(frozen=True, slots=True)
class Containing:
    """Matches a string holding ``text`` (case-sensitive), or a list holding the value."""

    text: Any

    def __call__(self, value: Any) -> bool:
        if isinstance(value, str):
            return isinstance(self.text, str) and self.text in value
        if isinstance(value, list | tuple):
            return any(matches(self.text, item) for item in value)
        return False


@dataclass(frozen=True, slots=True)
class Partial:
    """Matches a mapping that has at least these keys, each matching (others are ignored)."""

    fields: Mapping[str, Any]

    def __call__(self, value: Any) -> bool:
        return mismatch(self, value) is None


def describe(expected: Any) -> str:
    """How an expected value reads in a failure message."""
    if isinstance(expected, re.Pattern):
        return f"a string matching /{expected.pattern}/"
    if isinstance(expected, Partial):
        return f"a mapping with at least {dict(expected.fields)!r}"
    if callable(expected) and not isinstance(expected, type | Containing):
        return f"a value accepted by {getattr(expected, '__name__', repr(expected))}"
    return repr(expected)


def mismatch(expected: Any, actual: Any, path: str = "") -> str | None:
    """Why ``actual`` does not match ``expected`` (naming where), or ``None`` if it does."""
    where = path or "the value"
    if expected is ANY:
        return None
    if isinstance(expected, re.Pattern):
        if isinstance(actual, str) and expected.search(actual):
            return None
        return f"{where}: expected {describe(expected)}, got {actual!r}"
    if isinstance(expected, Partial):
        if not isinstance(actual, Mapping):
            return f"{where}: expected a mapping, got {actual!r}"
        for key, value in expected.fields.items():
            if key not in actual:
                return f"{where}: missing key {key!r}"
            found = mismatch(value, actual[key], f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{where}: expected a mapping, got {actual!r}"
        missing = [k for k in expected if k not in actual]
        extra = [k for k in actual if k not in expected]
        if missing:
            return f"{where}: missing key {missing[0]!r}"
        if extra:
            return f"{where}: unexpected key {extra[0]!r}"
        for key, value in expected.items():
            found = mismatch(value, actual[key], f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(expected, list | tuple):
        if not isinstance(actual, list | tuple):
            return f"{where}: expected a list, got {actual!r}"
        if len(expected) != len(actual):
            return f"{where}: expected {len(expected)} items, got {len(actual)}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            found = mismatch(want, got, f"{path}[{index}]")
            if found:
                return found
        return None
    if callable(expected) and not isinstance(expected, type):
        try:
            accepted = bool(expected(actual))
        except Exception as exc:  # noqa: BLE001 - a matcher that raises does not match
            return f"{where}: {describe(expected)} raised {type(exc).__name__}: {exc}"
        return None if accepted else f"{where}: expected {describe(expected)}, got {actual!r}"
    # True is not 1 here: a flag and a count are different answers.
    same_kind = isinstance(expected, bool) == isinstance(actual, bool)
    if same_kind and expected == actual:
        return None
    return f"{where}: expected {expected!r}, got {actual!r}"


def matches(expected: Any, actual: Any) -> bool:
    """Whether ``actual`` matches ``expected`` (see the module's docstring)."""
    return mismatch(expected, actual) is None


_SPECS: dict[str, Callable[[Any], Any]] = {
    "$any": lambda _: ANY,
    "$regex": lambda pattern: re.compile(str(pattern)),
    "$contains": lambda text: Containing(matcher_from_json(text)),
    "$partial": lambda fields: Partial(_partial_fields(fields)),
}


def _partial_fields(fields: Any) -> dict[str, Any]:
    if not isinstance(fields, Mapping):
        raise ValueError(f'"$partial" takes an object of fields, got {fields!r}')
    return {str(k): matcher_from_json(v) for k, v in fields.items()}


def matcher_from_json(data: Any) -> Any:
    """JSON data with its ``{"$any": true}``-style objects turned into matchers; raises
    ``ValueError`` naming an unknown ``$`` key or a bad ``$regex``."""
    if isinstance(data, Mapping):
        if len(data) == 1:
            (key, value), *_ = data.items()
            if isinstance(key, str) and key.startswith("$"):
                make = _SPECS.get(key)
                if make is None:
                    known = ", ".join(sorted(_SPECS))
                    raise ValueError(f"unknown matcher {key!r}; use one of {known}")
                try:
                    return make(value)
                except re.error as exc:
                    raise ValueError(f'"$regex" {value!r} is not a valid pattern: {exc}') from exc
        return {k: matcher_from_json(v) for k, v in data.items()}
    if isinstance(data, list):
        return [matcher_from_json(item) for item in data]
    return data


def matcher_to_json(value: Any) -> Any:
    """The JSON form of an expected value (the inverse of :func:`matcher_from_json`);
    a callable that is not one of these matchers is written as its name."""
    if value is ANY:
        return {"$any": True}
    if isinstance(value, re.Pattern):
        return {"$regex": value.pattern}
    if isinstance(value, Containing):
        return {"$contains": matcher_to_json(value.text)}
    if isinstance(value, Partial):
        return {"$partial": {k: matcher_to_json(v) for k, v in value.fields.items()}}
    if isinstance(value, Mapping):
        return {str(k): matcher_to_json(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [matcher_to_json(v) for v in value]
    if callable(value) and not isinstance(value, type):
        return {"$callable": getattr(value, "__qualname__", repr(value))}
    return value
