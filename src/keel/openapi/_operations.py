"""An OpenAPI 3 document's operations, each with the one parameters schema a model fills.

Path, query and header parameters become properties named as in the API; a JSON request body
becomes the property ``body``. Headers that settings supply (authentication) are never shown
to the model, and neither are ``Authorization``, ``Proxy-Authorization`` and cookies.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from keel.errors import ConfigurationError
from keel.openapi._document import inline_schema, resolve

__all__ = ["Argument", "Operation", "operations"]

Location = Literal["path", "query", "header", "body"]

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_READS = ("get", "head")
_NEVER_FROM_THE_MODEL = frozenset({"authorization", "proxy-authorization", "cookie"})


@dataclass(frozen=True, slots=True)
class Argument:
    """Where one of the model's arguments goes in the request."""

    name: str
    location: Location
    wire_name: str


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation: how to call it and the schema of its arguments."""

    operation_id: str
    method: str
    path: str
    description: str
    schema: dict[str, Any]
    arguments: tuple[Argument, ...]

    @property
    def reads_only(self) -> bool:
        """GET and HEAD change nothing (HTTP says so), so they are safe to repeat."""
        return self.method in _READS


def operations(
    document: Mapping[str, Any], *, settings_headers: Collection[str]
) -> list[Operation]:
    """Every operation of the document that a model can call, in document order."""
    hidden = _NEVER_FROM_THE_MODEL | {h.lower() for h in settings_headers}
    found = []
    for path, raw in document["paths"].items():
        item = resolve(document, raw)
        if not isinstance(item, Mapping):
            continue
        shared = item.get("parameters", [])
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, Mapping):
                built = _operation(document, path, method, operation, shared=shared, hidden=hidden)
                if built is not None:
                    found.append(built)
    return found


def _operation(
    document: Mapping[str, Any],
    path: str,
    method: str,
    operation: Mapping[str, Any],
    *,
    shared: list[Any],
    hidden: Collection[str],
) -> Operation | None:
    operation_id = operation.get("operationId") or f"{method}_{path}"
    parameters: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in [*shared, *operation.get("parameters", [])]:
        param = resolve(document, raw)
        if isinstance(param, Mapping) and "name" in param and "in" in param:
            parameters[(str(param["in"]), str(param["name"]))] = param  # the operation's wins
    properties: dict[str, Any] = {}
    required: list[str] = []
    arguments: list[Argument] = []
    defs: dict[str, Any] = {}
    for (location, wire), param in parameters.items():
        if location == "cookie" or (location == "header" and wire.lower() in hidden):
            continue
        if location not in ("path", "query", "header"):
            continue
        name = wire if wire not in properties else f"{location}_{wire}"
        schema, found = inline_schema(document, _parameter_schema(param))
        defs.update(found)
        if "description" in param and isinstance(schema, dict):
            schema = {"description": param["description"], **schema}
        properties[name] = schema
        if location == "path" or param.get("required") is True:
            required.append(name)
        arguments.append(Argument(name, location, wire))  # type: ignore[arg-type]
    body = resolve(document, operation.get("requestBody"))
    if isinstance(body, Mapping):
        schema = _json_schema(body)
        if schema is None and body.get("required") is True:
            return None  # a form or file upload: not something a model can send as JSON
        if schema is not None:
            name = "body" if "body" not in properties else "request_body"
            inlined, found = inline_schema(document, schema)
            defs.update(found)
            if "description" in body and isinstance(inlined, dict):
                inlined = {"description": body["description"], **inlined}
            properties[name] = inlined
            if body.get("required") is True:
                required.append(name)
            arguments.append(Argument(name, "body", name))
    parameters_schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        parameters_schema["required"] = required
    if defs:
        parameters_schema["$defs"] = defs
    return Operation(
        operation_id=str(operation_id),
        method=method,
        path=path,
        description=_description(method, path, operation),
        schema=parameters_schema,
        arguments=tuple(arguments),
    )


def _parameter_schema(param: Mapping[str, Any]) -> Any:
    if "schema" in param:
        return param["schema"]
    content = param.get("content")
    if isinstance(content, Mapping) and content:
        media = next(iter(content.values()))
        if isinstance(media, Mapping):
            return media.get("schema", {})
    return {}


def _json_schema(body: Mapping[str, Any]) -> Any:
    content = body.get("content")
    if not isinstance(content, Mapping):
        return None
    for media_type, media in content.items():
        kind = str(media_type).split(";")[0].strip().lower()
        if (kind == "application/json" or kind.endswith("+json")) and isinstance(media, Mapping):
            return media.get("schema", {})
    return None


def _description(method: str, path: str, operation: Mapping[str, Any]) -> str:
    parts = [str(operation[key]) for key in ("summary", "description") if operation.get(key)]
    parts.append(f"(HTTP {method.upper()} {path})")
    return "\n\n".join(parts)


def select(found: list[Operation], wanted: Collection[str] | None) -> list[Operation]:
    """The operations named in ``wanted`` (all when ``None``); an unknown name is an error."""
    if wanted is None:
        return found
    if isinstance(wanted, str):
        raise ConfigurationError("operations= takes a list of operationIds, not one string")
    known = {op.operation_id: op for op in found}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigurationError(
            f"the OpenAPI document has no operation {', '.join(map(repr, unknown))}; it has: "
            + ", ".join(sorted(known))
        )
    return [op for op in found if op.operation_id in set(wanted)]
