"""JSON-schema helpers for :mod:`keel.models._rules`: resolving schemas and building instances.

Only what a tool's parameters or an agent's output schema need in practice is understood:
local ``$ref`` (``#/$defs/...``, ``#/definitions/...``), ``anyOf``/``oneOf`` (the first branch
that is not ``null``), ``allOf`` (merged), ``const``, ``enum``, ``default``, ``type`` lists, and
the usual size and range keywords. Anything else is ignored rather than rejected, because the
rules model must never crash on a schema it was handed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["MISSING", "NULLABLE", "Lookup", "Schema", "build_instance", "resolve", "schema_type"]

Schema = Mapping[str, Any]
Lookup = Callable[[str, Schema], Any]

#: Set by :func:`resolve` on a schema that also allows ``null``.
NULLABLE: Final = "x-keel-nullable"

#: Returned by lookups that found nothing (``None`` is a legitimate JSON value).
MISSING: Final = object()

# Bounds every walk, so recursive or cyclic schemas end instead of looping.
_MAX_DEPTH = 24

# A placeholder for each common string format, so the instance validates.
_FORMAT_EXAMPLES: Final = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "example.com",
}


def resolve(schema: Any, root: Schema) -> Schema:
    """The schema a value must satisfy, with references followed and nullable unions unwrapped.

    Keys next to a ``$ref`` (``description``, ``default``) are kept and win over the target's.
    """
    current: Any = schema
    for _ in range(_MAX_DEPTH):
        if not isinstance(current, Mapping):
            return {}
        ref = current.get("$ref")
        if isinstance(ref, str):
            rest = {key: value for key, value in current.items() if key != "$ref"}
            target = _lookup_ref(ref, root)
            current = {**target, **rest} if target is not None else rest
            continue
        union_key = next((k for k in ("anyOf", "oneOf") if _branches(current, k)), None)
        if union_key is not None:
            branches = _branches(current, union_key)
            chosen = next((b for b in branches if not _is_null(b, root)), branches[0])
            rest = {key: value for key, value in current.items() if key != union_key}
            if len(branches) > 1 and any(_is_null(b, root) for b in branches):
                rest[NULLABLE] = True
            current = {**rest, **chosen} if isinstance(chosen, Mapping) else rest
            continue
        parts = _branches(current, "allOf")
        if parts:
            merged = {key: value for key, value in current.items() if key != "allOf"}
            for part in parts:
                merged.update(resolve(part, root))
            current = merged
            continue
        return current
    return {}


def schema_type(schema: Schema) -> str | None:
    """The JSON type a resolved schema asks for (the first non-null one), or ``None``."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null" if kind else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def build_instance(schema: Schema, *, text: str, lookup: Lookup) -> Any:
    """A value valid for ``schema``, with strings set to ``text``.

    ``lookup(name, schema)`` is asked first for every named property and may return a value
    (found in tool results or in the user's message) or :data:`MISSING`. Objects get their
    required properties, plus optional ones that ``lookup`` has a value for.
    """
    return _Builder(schema, text, lookup).build(schema, "", 0)


class _Builder:
    __slots__ = ("_lookup", "_root", "_text")

    def __init__(self, root: Schema, text: str, lookup: Lookup) -> None:
        self._root = root
        self._text = text
        self._lookup = lookup

    def build(self, schema: Any, name: str, depth: int) -> Any:
        node = resolve(schema, self._root)
        if "const" in node:
            return node["const"]
        kind = schema_type(node)
        if name:
            found = self._lookup(name, node)
            if found is not MISSING:
                return _fit(found, node, kind)
        if "default" in node:
            return node["default"]
        if name and node.get(NULLABLE):
            return None  # an honest "unknown" beats a made-up value
        enum = node.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        if depth >= _MAX_DEPTH:
            return None
        if kind == "object":
            return self._object(node, depth)
        if kind == "array":
            prefix = node.get("prefixItems")
            prefix = prefix if isinstance(prefix, list) else []
            items = node.get("items")
            count = max(_count(node.get("minItems")), len(prefix))
            return [
                self.build(prefix[i] if i < len(prefix) else items, "", depth + 1)
                for i in range(count)
            ]
        if kind in ("integer", "number"):
            return _clamp(0, node, integer=kind == "integer")
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return _fit(self._text, node, "string")

    def _object(self, node: Schema, depth: int) -> dict[str, Any]:
        properties = node.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = node.get("required")
        required = (
            [key for key in required if isinstance(key, str)] if isinstance(required, list) else []
        )
        instance: dict[str, Any] = {}
        for key, sub in properties.items():
            if key in required:
                instance[key] = self.build(sub, key, depth + 1)
                continue
            resolved = resolve(sub, self._root)
            found = self._lookup(key, resolved) if "const" not in resolved else MISSING
            if found is not MISSING:
                instance[key] = _fit(found, resolved, schema_type(resolved))
        for key in required:
            if key not in instance:  # required but not described: anything goes, text is kindest
                instance[key] = self._text
        return instance


def _fit(value: Any, node: Schema, kind: str | None) -> Any:
    """``value`` bent to the schema's size, range and format keywords."""
    if isinstance(value, bool):
        return value
    if kind in ("integer", "number") and isinstance(value, int | float):
        return _clamp(value, node, integer=kind == "integer")
    if not isinstance(value, str) or kind not in ("string", None):
        return value
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMAT_EXAMPLES and (not value or " " in value):
        value = _FORMAT_EXAMPLES[fmt]  # prose in a formatted field would fail validation
    max_length = node.get("maxLength")
    if isinstance(max_length, int) and len(value) > max_length:
        value = value[: max_length - 1] + "…" if max_length > 0 else ""
    min_length = _count(node.get("minLength"))
    if len(value) < min_length:
        value += "." * (min_length - len(value))
    return value


def _clamp(value: float, node: Schema, *, integer: bool) -> float:
    """``value`` moved into the schema's range (integers stay integers)."""
    low, high = _bound(node, "minimum"), _bound(node, "maximum")
    exclusive_low, exclusive_high = (
        _bound(node, "exclusiveMinimum"),
        _bound(node, "exclusiveMaximum"),
    )
    result = value
    if low is not None and result < low:
        result = low
    if exclusive_low is not None and result <= exclusive_low:
        result = exclusive_low + 1
    if high is not None and result > high:
        result = high
    if exclusive_high is not None and result >= exclusive_high:
        result = exclusive_high - 1
    if integer:
        rounded = math.floor(result)
        if (low is not None and rounded < low) or (
            exclusive_low is not None and rounded <= exclusive_low
        ):
            rounded = math.ceil(result)  # a fractional lower bound rounds up, not out of range
        return int(rounded)
    return result


def _bound(node: Schema, key: str) -> float | None:
    value = node.get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _lookup_ref(ref: str, root: Schema) -> Schema | None:
    if not ref.startswith("#"):
        return None  # remote references are never fetched: the model does no I/O
    node: Any = root
    for raw in ref[1:].split("/"):
        if not raw:
            continue
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) else None


def _is_null(branch: Any, root: Schema) -> bool:
    if not isinstance(branch, Mapping):
        return False
    resolved = resolve(branch, root) if "$ref" in branch else branch
    return resolved.get("type") == "null" or ("const" in resolved and resolved["const"] is None)


def _branches(node: Schema, key: str) -> list[Any]:
    value = node.get(key)
    return value if isinstance(value, list) else []


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
