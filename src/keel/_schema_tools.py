"""Tools made from a JSON schema and a function: :meth:`keel.Tool.from_schema`.

For definitions that exist as data (a function-calling dataset, an OpenAPI operation, another
framework's export) rather than as a typed Python signature. The schema is normalized to JSON
Schema (see :mod:`keel._core.json_schema_args`), the name to one model APIs accept (see
:mod:`keel._core.tool_names`), and the function is checked against the schema up front, so a
mismatch is found when the tool is made rather than on the model's first call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from keel._core.json_schema_args import SchemaToolSpec, compile_validator, normalize_schema
from keel._core.tool_names import safe_tool_name
from keel._core.toolspec import ApprovalRule, SideEffects
from keel._tools import Tool, _context_param
from keel.errors import ToolDefinitionError

__all__ = ["tool_from_schema"]

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def tool_from_schema(
    name: str,
    description: str,
    parameters_schema: Mapping[str, Any] | None,
    fn: Callable[..., Any],
    *,
    idempotent: bool = False,
    side_effects: SideEffects = "write",
    requires_approval: ApprovalRule = False,
    timeout_s: float | None = None,
    retries: int = 0,
    max_result_chars: int | None = None,
) -> Tool:
    """See :meth:`keel.Tool.from_schema`."""
    if not isinstance(name, str) or not name.strip():
        raise ToolDefinitionError(f"a tool needs a non-empty name, got {name!r}")
    if not isinstance(description, str):
        raise ToolDefinitionError(
            f"tool {name!r}: description must be text, got {type(description).__name__}"
        )
    if not callable(fn):
        raise ToolDefinitionError(
            f"tool {name!r}: fn must be a function (sync or async), got {type(fn).__name__}"
        )
    schema = normalize_schema(parameters_schema, tool=name)
    validator = compile_validator(schema, tool=name)
    context_param = _context_param(fn)
    _check_signature(name, fn, schema, context_param)
    safe = safe_tool_name(name)
    spec = SchemaToolSpec(
        name=safe,
        original_name=None if safe == name else name,
        description=description,
        parameters=schema,
        validator=validator,
        idempotent=idempotent,
        side_effects=side_effects,
        requires_approval=requires_approval,
        timeout_s=timeout_s,
        retries=retries,
        max_result_chars=max_result_chars,
    )
    return Tool(fn, spec, context_param)


def _check_signature(
    name: str, fn: Callable[..., Any], schema: Mapping[str, Any], context_param: str | None
) -> None:
    """Refuse a function that cannot take every call the schema allows."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: its own error will reach the model
    params = [p for p in signature.parameters.values() if p.name != context_param]
    for param in params:
        if param.kind is param.POSITIONAL_ONLY and param.default is param.empty:
            raise ToolDefinitionError(
                f"tool {name!r}: parameter '{param.name}' of its function is positional-only; "
                "Keel passes arguments by name, so remove the '/' from the signature"
            )
    accepted = {p.name for p in params if p.kind in _NAMED}
    properties = schema.get("properties", {})
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        unknown = [prop for prop in properties if prop not in accepted]
        if unknown or schema.get("additionalProperties") is not False:
            what = ", ".join(repr(p) for p in unknown) or "arguments the schema does not name"
            raise ToolDefinitionError(
                f"tool {name!r}: its function does not accept {what}, which the schema "
                "allows; add them as parameters or take **kwargs"
            )
    required = set(schema.get("required", ()))
    needed = [p.name for p in params if p.kind in _NAMED and p.default is p.empty]
    optional = [p for p in needed if p not in required]
    if optional:
        listed = ", ".join(repr(p) for p in optional)
        raise ToolDefinitionError(
            f"tool {name!r}: its function requires {listed}, which the schema lets the model "
            "leave out; give the parameter a default or list it in the schema's 'required'"
        )
