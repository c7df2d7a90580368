"""Structured output: the schema a model is asked to follow and the validation of its answer.

Model APIs want an object at the top of a response schema, so an output type that is not an
object (``int``, ``list[Order]``, a ``Literal``) is wrapped as ``{"result": <type>}`` on the wire
and unwrapped after validation; users only ever see their own type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from keel._core.toolspec import CompactJsonSchema

__all__ = ["OutputSpec", "OutputValidationError"]

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(?P<body>.*?)\n?```$", re.DOTALL)
_ERRORS_SHOWN = 8


class OutputValidationError(ValueError):
    """A final answer that does not satisfy the output type; ``message`` is for the model."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Validates final answers against ``output_type`` (any type pydantic can validate)."""

    output_type: Any
    adapter: TypeAdapter[Any] = field(init=False, repr=False, compare=False)
    schema: Mapping[str, Any] = field(init=False, repr=False, compare=False)
    name: str = field(init=False, compare=False)
    wrapped: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        adapter: TypeAdapter[Any] = TypeAdapter(self.output_type)
        inner = adapter.json_schema(schema_generator=CompactJsonSchema)
        wrapped = inner.get("type") != "object"
        if wrapped:
            defs = inner.pop("$defs", None)
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {"result": inner},
                "required": ["result"],
                "additionalProperties": False,
            }
            if defs:
                schema["$defs"] = defs
        else:
            schema = inner
        name = re.sub(r"[^A-Za-z0-9_-]", "_", getattr(self.output_type, "__name__", "output"))
        object.__setattr__(self, "adapter", adapter)
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "name", name[:64] or "output")
        object.__setattr__(self, "wrapped", wrapped)

    def parse(self, text: str) -> Any:
        """Validate a model's final answer; return the value as JSON-compatible data.

        Code fences around the JSON are tolerated. Raises :class:`OutputValidationError`.
        """
        body = text.strip()
        fenced = _FENCE.match(body)
        if fenced:
            body = fenced.group("body").strip()
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise OutputValidationError(
                f"the answer is not valid JSON ({exc.msg} at position {exc.pos})"
            ) from None
        # A wrapped type also accepts the bare value: some models drop the wrapper.
        if self.wrapped and isinstance(data, dict) and set(data) == {"result"}:
            data = data["result"]
        try:
            value = self.adapter.validate_python(data)
        except ValidationError as exc:
            raise OutputValidationError(_describe(exc)) from None
        return self.adapter.dump_python(value, mode="json")

    def load(self, data: Any) -> Any:
        """Turn journaled output data back into an instance of ``output_type``."""
        return self.adapter.validate_python(data)


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    problems = []
    for error in errors[:_ERRORS_SHOWN]:
        where = ".".join(str(part) for part in error["loc"]) or "(value)"
        problems.append(f"{where}: {error['msg']}")
    if len(errors) > _ERRORS_SHOWN:
        problems.append(f"... and {len(errors) - _ERRORS_SHOWN} more")
    return "; ".join(problems)
