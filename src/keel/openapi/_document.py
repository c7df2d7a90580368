"""Reading an OpenAPI 3 document (a dict, a JSON or YAML file, or a URL fetched once) and
resolving its local ``$ref`` s."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from keel._redact import redact_url
from keel.errors import ConfigurationError, MissingExtraError

__all__ = ["OpenAPIDocument", "inline_schema", "load_document", "pointer", "resolve"]

OpenAPIDocument = Mapping[str, Any] | str | os.PathLike[str]
"""An OpenAPI 3 document: parsed (a dict), a path to a ``.json``/``.yaml`` file, or an
``http(s)://`` URL."""

_SCHEMAS = "#/components/schemas/"


def load_document(document: OpenAPIDocument, *, timeout_s: float) -> dict[str, Any]:
    """The document as a dict, checked to be OpenAPI 3."""
    if isinstance(document, Mapping):
        loaded: object = dict(document)
        where = "the document"
    elif isinstance(document, str) and document.startswith(("http://", "https://")):
        where = redact_url(document)
        loaded = _fetch(document, where, timeout_s)
    elif isinstance(document, str | os.PathLike):
        path = Path(document)
        where = str(path)
        loaded = _read(path)
    else:
        raise ConfigurationError(
            "openapi_tools needs an OpenAPI document: a dict, a path to a JSON or YAML file, "
            f"or an http(s) URL; got {type(document).__name__}"
        )
    if not isinstance(loaded, dict):
        raise ConfigurationError(f"{where} is not an OpenAPI document (not a JSON/YAML object)")
    version = str(loaded.get("openapi", ""))
    if not version.startswith("3."):
        found = f"swagger {loaded['swagger']}" if "swagger" in loaded else repr(version or None)
        raise ConfigurationError(
            f"{where} is not an OpenAPI 3 document (its version is {found}); convert it to "
            "OpenAPI 3 (e.g. with swagger2openapi)"
        )
    if not isinstance(loaded.get("paths"), Mapping):
        raise ConfigurationError(f"{where} has no 'paths': there are no operations to call")
    return loaded


def _fetch(url: str, where: str, timeout_s: float) -> object:
    try:
        response = httpx.get(url, timeout=timeout_s, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ConfigurationError(
            f"could not fetch the OpenAPI document at {where}: {type(exc).__name__}"
            + (
                f" (HTTP {exc.response.status_code})"
                if isinstance(exc, httpx.HTTPStatusError)
                else ""
            )
        ) from None
    return _parse(response.text, where, yaml_first=not url.endswith(".json"))


def _read(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the OpenAPI document {path}: {exc.strerror or exc}; pass a dict, "
            "a file path or a URL"
        ) from None
    return _parse(text, str(path), yaml_first=path.suffix.lower() in (".yaml", ".yml"))


def _parse(text: str, where: str, *, yaml_first: bool) -> object:
    if not yaml_first or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            if not yaml_first:
                raise ConfigurationError(f"{where} is not valid JSON: {exc}") from None
    try:
        import yaml
    except ImportError:
        raise MissingExtraError(
            package="pyyaml", extra="openapi", feature="reading a YAML OpenAPI document"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{where} is not valid YAML or JSON: {exc}") from None


def resolve(document: Mapping[str, Any], item: object, *, depth: int = 0) -> Any:
    """``item`` with a local ``$ref`` (``#/components/...``) replaced by what it points to."""
    if not isinstance(item, Mapping) or "$ref" not in item:
        return item
    ref = item["$ref"]
    if depth > 20:
        raise ConfigurationError(f"the $ref {ref!r} goes round in circles")
    return resolve(document, pointer(document, ref), depth=depth + 1)


def pointer(document: Mapping[str, Any], ref: object) -> Any:
    """What a local JSON pointer (``#/a/b``) names in the document."""
    if not isinstance(ref, str) or not ref.startswith("#/"):
        raise ConfigurationError(
            f"the $ref {ref!r} points outside the document; only local references "
            "(#/components/...) are followed: bundle the document into one file first"
        )
    node: Any = document
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or key not in node:
            raise ConfigurationError(f"the $ref {ref!r} points to nothing in the document")
        node = node[key]
    return node


def inline_schema(document: Mapping[str, Any], schema: object) -> tuple[Any, dict[str, Any]]:
    """A schema with its references to ``components/schemas`` pointed at ``$defs``, and those
    definitions (every one it reaches), so that the schema stands alone."""
    defs: dict[str, Any] = {}
    seen: set[str] = set()
    pending: list[str] = []

    def rewrite(node: object) -> object:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        out = {key: rewrite(value) for key, value in node.items() if key != "$ref"}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMAS):
            name = ref[len(_SCHEMAS) :]
            if name not in seen:
                seen.add(name)
                pending.append(name)
            out["$ref"] = f"#/$defs/{name}"
        elif ref is not None:
            target = pointer(document, ref)  # another local pointer: copied in place
            return rewrite({**target, **out})
        return _openapi_30(out)

    result = rewrite(schema)
    while pending:
        name = pending.pop()
        defs[name] = rewrite(pointer(document, _SCHEMAS + name.replace("~", "~0")))
    return result, defs


def _openapi_30(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0's own keywords as JSON Schema: ``nullable: true`` adds the ``null`` type,
    and a boolean ``exclusiveMinimum``/``exclusiveMaximum`` qualifies the bound beside it."""
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        flag = schema.get(exclusive)
        if isinstance(flag, bool):
            del schema[exclusive]
            if flag and bound in schema:
                schema[exclusive] = schema.pop(bound)
    if schema.pop("nullable", False) is not True:
        return schema
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema
