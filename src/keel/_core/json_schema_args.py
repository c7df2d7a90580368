"""Tool arguments checked against a JSON schema given as data, not derived from a function.

Schemas found in the wild (function-calling datasets, OpenAPI documents, other frameworks'
exports) are JSON-Schema-like rather than valid JSON Schema. :func:`normalize_schema` maps them
to JSON Schema (draft 2020-12), the one schema shown to the model and used to validate:

==========================================  =========================================
written                                     becomes
==========================================  =========================================
``dict``, ``map``, ``hashmap``              ``object``
``float``, ``double``                       ``number``
``int``, ``long``, ``short``, ``byte``      ``integer``
``tuple``, ``list``, ``arraylist``          ``array``
``str``, ``char``, ``character``            ``string``
``bool``                                    ``boolean``
``any``, ``""``                             no type constraint (the key is dropped)
``"items": [a, b]`` (a tuple's items)       ``"prefixItems": [a, b]``
``"required": true`` inside a property      the name listed in the parent's ``required``
==========================================  =========================================

Type names match case-insensitively (``String``, ``Boolean``, ``HashMap``). The top level
must describe an object; unless it says otherwise it gets ``"additionalProperties": false``,
so an argument the schema does not name is refused, as ``@tool`` refuses one (not when it
describes its arguments through ``$ref``, ``allOf``, ``anyOf`` or ``oneOf``, which that
keyword does not see into). ``default``, ``format`` and other annotations are kept and shown,
not enforced. An unknown type name is a :class:`~keel.errors.ToolDefinitionError`, and so is
a schema that is still not valid JSON Schema after the mapping.

Validation is strict, like ``@tool``'s: no value is converted. ``"3"`` is not an integer and
neither is ``3.0`` (JSON Schema would accept ``3.0``; a Python function expecting an ``int``
would not), and ``true`` is not a number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, TypeChecker, ValidationError, validators
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator

from keel._core.toolspec import ToolArgumentsError, ToolSpec
from keel.errors import ToolDefinitionError

__all__ = ["SchemaToolSpec", "compile_validator", "normalize_schema"]

_TYPES: dict[str, str | None] = {
    "object": "object",
    "dict": "object",
    "map": "object",
    "hashmap": "object",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "arraylist": "array",
    "string": "string",
    "str": "string",
    "char": "string",
    "character": "string",
    "integer": "integer",
    "int": "integer",
    "long": "integer",
    "short": "integer",
    "byte": "integer",
    "number": "number",
    "float": "number",
    "double": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "null": "null",
    "any": None,
    "": None,
}
# Keywords whose value is one schema, a list of schemas, or a map of names to schemas.
_ONE = (
    *("additionalProperties", "not", "contains", "propertyNames", "unevaluatedProperties"),
    *("unevaluatedItems", "if", "then", "else"),
)
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_NAMED = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_COMBINED = ("$ref", "allOf", "anyOf", "oneOf", "if", "dependentSchemas")
_ERRORS_SHOWN = 8
_SNIPPET = 60


def _is_int(_checker: TypeChecker, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_Strict = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_int),
)


def normalize_schema(schema: object, *, tool: str) -> dict[str, Any]:
    """A tool's parameters schema as valid JSON Schema (see the module's table).

    Raises :class:`ToolDefinitionError` naming the tool and where the schema is wrong.
    """
    if schema is None:
        schema = {}
    if not isinstance(schema, Mapping):
        raise ToolDefinitionError(
            f"tool {tool!r}: the parameters schema must be a JSON object (a dict), "
            f"got {type(schema).__name__}"
        )
    result = _normalize(schema, tool, "parameters")
    if not isinstance(result, dict):  # pragma: no cover - a mapping stays a mapping
        raise ToolDefinitionError(f"tool {tool!r}: the parameters schema must be an object")
    result.pop("$schema", None)  # shown to the model, which needs no dialect
    kind = result.setdefault("type", "object")
    if kind != "object":
        raise ToolDefinitionError(
            f"tool {tool!r}: the parameters schema must describe an object (the named "
            f"arguments), got type {kind!r}; wrap the value in a property"
        )
    result.setdefault("properties", {})
    # Closed, like @tool's arguments; not when the arguments are described through
    # references or combinations, which additionalProperties would not look into.
    if not any(key in result for key in _COMBINED):
        result.setdefault("additionalProperties", False)
    return result


def _normalize(schema: object, tool: str, where: str) -> object:
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, Mapping):
        raise ToolDefinitionError(
            f"tool {tool!r}: {where} must be a schema (a JSON object), got {_snippet(schema)}"
        )
    out: dict[str, Any] = {}
    for key, value in schema.items():
        here = f"{where}.{key}"
        if key == "type":
            mapped = _type(value, tool, here)
            if mapped is not None:
                out["type"] = mapped
        elif key in _NAMED and isinstance(value, Mapping):
            out[key] = {
                name: _normalize(sub, tool, f"{here}.{name}") for name, sub in value.items()
            }
        elif key in _MANY and isinstance(value, list):
            out[key] = [_normalize(sub, tool, f"{here}[{i}]") for i, sub in enumerate(value)]
        elif key in _ONE or (key == "items" and not isinstance(value, list)):
            out[key] = _normalize(value, tool, here)
        elif key == "items":  # the older tuple form: one schema per position
            out["prefixItems"] = [_normalize(s, tool, f"{here}[{i}]") for i, s in enumerate(value)]
        elif key == "additionalItems":
            out.setdefault("items", _normalize(value, tool, here))
        elif key == "required" and isinstance(value, bool):
            continue  # the older form, gathered into the parent's list below
        else:
            out[key] = value
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        flagged = [
            name
            for name, sub in properties.items()
            if isinstance(sub, Mapping) and sub.get("required") is True
        ]
        if flagged:
            listed = list(out.get("required", ()))
            out["required"] = listed + [name for name in flagged if name not in listed]
    return out


def _type(value: object, tool: str, where: str) -> str | list[str] | None:
    names = value if isinstance(value, list) else [value]
    mapped: list[str] = []
    for name in names:
        if not isinstance(name, str) or name.lower() not in _TYPES:
            known = ", ".join(sorted(n for n in _TYPES if n))
            raise ToolDefinitionError(
                f"tool {tool!r}: {where} is {_snippet(name)}, not a type Keel knows; use a JSON "
                f"Schema type or one of: {known}"
            )
        target = _TYPES[name.lower()]
        if target is None:
            return None  # "any" among the choices: anything goes
        if target not in mapped:
            mapped.append(target)
    if not isinstance(value, list):
        return mapped[0]
    return mapped or None


def compile_validator(schema: Mapping[str, Any], *, tool: str) -> Validator:
    """A strict validator for a normalized schema; refuses a schema that is not JSON Schema."""
    try:
        _Strict.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "(top)"
        raise ToolDefinitionError(
            f"tool {tool!r}: the parameters schema is not valid JSON Schema at {where}: "
            f"{_cut(exc.message)}"
        ) from None
    validator: Validator = _Strict(schema)
    return validator


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaToolSpec(ToolSpec):
    """A :class:`ToolSpec` whose arguments are checked against its JSON schema by
    ``jsonschema`` (for tools made from a schema rather than a function's signature)."""

    validator: Validator

    def validate(self, arguments: str) -> dict[str, Any]:
        """Parse and validate raw JSON arguments; return them as keyword arguments.

        Raises :class:`ToolArgumentsError` with a message that tells the model what to fix.
        """
        try:
            parsed = json.loads(arguments or "{}", parse_constant=_refuse_constant)
        except ValueError as exc:
            raise ToolArgumentsError(
                f"the arguments for {self._called()} are not valid JSON ({exc}); send one JSON "
                "object matching the tool's schema"
            ) from None
        if not isinstance(parsed, dict):
            raise ToolArgumentsError(
                f"the arguments for {self._called()} must be a JSON object, "
                f"got {_snippet(arguments)}"
            )
        errors = sorted(self.validator.iter_errors(parsed), key=_order)
        if not errors:
            return parsed
        problems = list(dict.fromkeys(problem for e in errors for problem in _problems(e)))
        shown = problems[:_ERRORS_SHOWN]
        if len(problems) > _ERRORS_SHOWN:
            shown.append(f"... and {len(problems) - _ERRORS_SHOWN} more")
        expected = ", ".join(self._signature()) or "no arguments"
        raise ToolArgumentsError(
            f"invalid arguments for {self._called()}: {'; '.join(shown)}. Expected: {expected}"
        )

    def _called(self) -> str:
        if self.original_name is None or self.original_name == self.name:
            return f"tool '{self.name}'"
        return f"tool '{self.name}' ({self.original_name})"


def _order(error: ValidationError) -> tuple[int, list[str]]:
    return len(error.absolute_path), [str(part) for part in error.absolute_path]


def _problems(error: ValidationError) -> list[str]:
    """What is wrong, for the model: the argument's path and the problem, one per entry."""
    path = ".".join(str(part) for part in error.absolute_path)
    instance, keyword, schema = error.instance, error.validator, error.schema
    inside = f"{path}: " if path else ""
    if keyword == "required" and isinstance(instance, dict) and isinstance(schema, dict):
        missing = [name for name in schema.get("required", ()) if name not in instance]
        what = "field" if path else "argument"
        return [f"{inside}missing required {what} '{name}'" for name in missing]
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = schema.get("properties", {}) if isinstance(schema, dict) else {}
        patterns = schema.get("patternProperties", {}) if isinstance(schema, dict) else {}
        extra = [name for name in instance if name not in known and not patterns]
        what = "field" if path else "argument"
        if extra:
            return [f"{inside}unexpected {what} '{name}'" for name in extra]
    if keyword == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        got = "null" if instance is None else f"{_kind(instance)} {_snippet(instance)}"
        return [f"{path or '(arguments)'}: expected {wanted}, got {got}"]
    if keyword == "enum" and isinstance(error.validator_value, list):
        allowed = ", ".join(_snippet(value) for value in error.validator_value[:20])
        return [f"{path or '(arguments)'}: {_snippet(instance)} is not one of {allowed}"]
    if keyword in ("anyOf", "oneOf"):
        return [f"{path or '(arguments)'}: {_snippet(instance)} matches none of the allowed forms"]
    return [f"{path or '(arguments)'}: {_cut(error.message)}"]


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _snippet(value: object) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return _cut(text)


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."
