"""What Keel knows about a tool: its JSON schema, an argument validator and its metadata.

A :class:`ToolSpec` is built from a Python function's signature and docstring
(:func:`spec_from_function`). Its ``validate`` method is the only way model-proposed arguments
reach a tool: malformed JSON, unknown or missing fields and wrong types come back as a
:class:`ToolArgumentsError` whose message is written for the model, so it can correct itself.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.errors import PydanticUserError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema, PydanticSerializationError

from keel._core.messages import ToolDefinition
from keel.errors import ToolDefinitionError

__all__ = [
    "ApprovalRule",
    "CompactJsonSchema",
    "SideEffects",
    "ToolArgumentsError",
    "ToolSpec",
    "spec_from_function",
]

SideEffects = Literal["none", "read", "write"]
"""How far a tool reaches: ``none`` computes only, ``read`` reads outside state, ``write``
changes something outside the run (sends, pays, deletes). Policies in later layers use it."""

ApprovalRule = bool | Callable[[Mapping[str, Any]], bool]
"""``True`` to ask a person before every call, or a predicate on the validated arguments."""

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ERRORS_SHOWN = 8


class ToolArgumentsError(ValueError):
    """Model-proposed arguments that fail a tool's schema; ``message`` is for the model."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CompactJsonSchema(GenerateJsonSchema):
    """Pydantic's JSON schema without titles: they cost tokens and tell a model nothing new."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        result = super().generate(schema, mode)
        result.pop("title", None)
        for definition in result.get("$defs", {}).values():
            if isinstance(definition, dict):
                definition.pop("title", None)
        return result


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    """A tool's name, description, argument schema and metadata.

    ``idempotent`` declares that calling the tool twice with the same idempotency key has the
    effect of calling it once; only such tools are re-run after a crash or retried.
    ``timeout_s`` overrides the run's default tool timeout. ``requires_approval`` pauses the run
    for a person before the call. ``retries`` is how many more times a failed call (an
    exception or a timeout, not a ``ToolError``) is tried before its error goes to the model;
    only tools that are safe to repeat may have retries.

    Arguments are validated strictly against the JSON schema the model is shown: ``"3"`` is
    not an integer and ``"true"`` is not a boolean. ``coerce=True`` lets pydantic convert such
    values instead (lax mode). ``max_result_chars`` caps the tool's results (default: the
    run's ``Limits.max_tool_result_chars``).

    ``name`` is what the model calls the tool by. ``original_name`` is the name the tool was
    defined with when model APIs would refuse it (``math.factorial`` is shown as
    ``math_factorial``, see :mod:`keel._core.tool_names`); ``None`` when they are the same.
    ``args_model`` validates the arguments; a subclass that validates them another way
    (:class:`~keel._core.json_schema_args.SchemaToolSpec`) leaves it ``None``.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    args_model: type[BaseModel] | None = None
    original_name: str | None = None
    idempotent: bool = False
    side_effects: SideEffects = "write"
    requires_approval: ApprovalRule = False
    timeout_s: float | None = None
    retries: int = 0
    coerce: bool = False
    max_result_chars: int | None = None
    definition: ToolDefinition = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ToolDefinitionError(
                f"tool name {self.name!r} is not allowed: model APIs accept 1 to 64 letters, "
                "digits, '_' or '-'; pass name='...' to @tool"
            )
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ToolDefinitionError(
                f"tool '{self.name}': timeout_s must be positive, got {self.timeout_s}"
            )
        if self.retries < 0:
            raise ToolDefinitionError(f"tool '{self.name}': retries must be 0 or more")
        if self.max_result_chars is not None and self.max_result_chars < 1:
            raise ToolDefinitionError(
                f"tool '{self.name}': max_result_chars must be at least 1, got "
                f"{self.max_result_chars}"
            )
        if self.retries and not self.safe_to_repeat:
            raise ToolDefinitionError(
                f"tool '{self.name}' has retries={self.retries} but is not safe to repeat: a "
                "retry could act twice. Declare idempotent=True (and pass ctx.idempotency_key "
                "on to what it calls), or side_effects='read' if it changes nothing"
            )
        definition = ToolDefinition(
            name=self.name, description=self.description, parameters=self.parameters
        )
        object.__setattr__(self, "definition", definition)

    def validate(self, arguments: str) -> dict[str, Any]:
        """Parse and validate raw JSON arguments; return them as keyword arguments.

        Raises :class:`ToolArgumentsError` with a message that tells the model what to fix.
        """
        if self.args_model is None:
            raise NotImplementedError(f"{type(self).__name__} has no args_model to validate with")
        try:
            parsed = self.args_model.model_validate_json(arguments or "{}", strict=not self.coerce)
        except ValidationError as exc:
            raise ToolArgumentsError(self._describe(exc, arguments)) from None
        # Field values, not model_dump(): nested models and dates reach the tool as typed
        # Python values, exactly as the function's annotations promise.
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    @property
    def safe_to_repeat(self) -> bool:
        """Whether running a call again is harmless: the tool is idempotent, or changes
        nothing outside the run (``side_effects`` is ``"none"`` or ``"read"``)."""
        return self.idempotent or self.side_effects != "write"

    def needs_approval(self, arguments: Mapping[str, Any]) -> bool:
        """Whether a call with these (validated) arguments must wait for a person."""
        rule = self.requires_approval
        return rule(arguments) if callable(rule) else bool(rule)

    def _describe(self, exc: ValidationError, arguments: str) -> str:
        errors = exc.errors(include_url=False)
        if any(error["type"] == "json_invalid" for error in errors):
            return (
                f"the arguments for tool '{self.name}' are not valid JSON "
                f"({errors[0]['msg']}); send one JSON object matching the tool's schema"
            )
        if any(error["type"] == "model_type" for error in errors):
            return (
                f"the arguments for tool '{self.name}' must be a JSON object, "
                f"got {_snippet(arguments)}"
            )
        problems = []
        for error in errors[:_ERRORS_SHOWN]:
            where = ".".join(str(part) for part in error["loc"]) or "(arguments)"
            if error["type"] == "extra_forbidden":
                problems.append(f"{where}: unexpected argument")
            else:
                problems.append(f"{where}: {error['msg']}")
        if len(errors) > _ERRORS_SHOWN:
            problems.append(f"... and {len(errors) - _ERRORS_SHOWN} more")
        expected = ", ".join(self._signature()) or "no arguments"
        return (
            f"invalid arguments for tool '{self.name}': {'; '.join(problems)}. Expected: {expected}"
        )

    def _signature(self) -> list[str]:
        properties = self.parameters.get("properties", {})
        required = set(self.parameters.get("required", ()))
        shown = []
        for name, schema in properties.items():
            kind = schema.get("type", "value") if isinstance(schema, dict) else "value"
            shown.append(f"{name} ({kind}{'' if name in required else ', optional'})")
        return shown


def _snippet(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def spec_from_function(
    function: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    skip: Sequence[str] = (),
    idempotent: bool = False,
    side_effects: SideEffects = "write",
    requires_approval: ApprovalRule = False,
    timeout_s: float | None = None,
    retries: int = 0,
    coerce: bool = False,
    max_result_chars: int | None = None,
) -> ToolSpec:
    """Build a :class:`ToolSpec` from ``function``'s signature, type hints and docstring.

    Parameters named in ``skip`` (the injected run context) are left out of the schema. Every
    other parameter needs a type annotation that pydantic can describe as JSON schema; a
    ``*args``/``**kwargs`` parameter is refused, since a model cannot fill one.
    """
    tool_name = name if name is not None else getattr(function, "__name__", "")
    try:
        signature = inspect.signature(function)
        hints = get_type_hints(function, include_extras=True)
    except NameError as exc:
        raise ToolDefinitionError(
            f"cannot resolve the annotations of tool {tool_name!r}: {exc}; define the types "
            "it uses at module level (annotations are strings under 'from __future__ import "
            "annotations', and local classes cannot be found from them)"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ToolDefinitionError(
            f"cannot read the signature of tool {tool_name!r}: {exc}; "
            "define it with a plain def or async def"
        ) from exc
    docs = docstring_parser.parse(inspect.getdoc(function) or "")
    param_docs = {p.arg_name: p.description for p in docs.params if p.description}
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.name in skip:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"tool '{tool_name}' has *{param.name}: a model can only fill named "
                "parameters; list each argument explicitly"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolDefinitionError(
                f"tool '{tool_name}': parameter '{param.name}' is positional-only; "
                "Keel passes arguments by name, so remove the '/' from the signature"
            )
        if param.name not in hints:
            raise ToolDefinitionError(
                f"parameter '{param.name}' of tool '{tool_name}' has no type annotation; "
                f"annotate it (e.g. {param.name}: str) so Keel can describe it to the model"
            )
        default = ... if param.default is param.empty else param.default
        # Only pass a description the docstring gives: description=None would erase one set
        # with Annotated[..., Field(description=...)].
        documented = {"description": param_docs[param.name]} if param.name in param_docs else {}
        fields[param.name] = (hints[param.name], Field(default, **documented))  # type: ignore[call-overload]
    text = description
    if text is None:
        text = "\n\n".join(part for part in (docs.short_description, docs.long_description) if part)
    try:
        model = create_model(
            f"{tool_name}_arguments",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
        schema = model.model_json_schema(schema_generator=CompactJsonSchema)
    except (TypeError, ValueError, PydanticUserError, PydanticSerializationError) as exc:
        raise ToolDefinitionError(
            f"tool '{tool_name}' has a parameter type Keel cannot describe as JSON schema: "
            f"{exc}; use JSON-friendly types (str, int, float, bool, lists, dicts, enums, "
            "pydantic models, dataclasses)"
        ) from exc
    schema.setdefault("properties", {})
    return ToolSpec(
        name=tool_name,
        description=text or "",
        parameters=schema,
        args_model=model,
        idempotent=idempotent,
        side_effects=side_effects,
        requires_approval=requires_approval,
        timeout_s=timeout_s,
        retries=retries,
        coerce=coerce,
        max_result_chars=max_result_chars,
    )
