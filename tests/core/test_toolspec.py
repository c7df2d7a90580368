"""Tool specs: JSON schema from type hints and docstrings, and validation of model arguments."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from keel._core.toolspec import ToolArgumentsError, spec_from_function
from keel.errors import ToolDefinitionError


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Address(BaseModel):
    street: str
    city: str


@dataclass
class Item:
    sku: str
    quantity: int = 1


class Opaque:
    """A type pydantic cannot describe as JSON schema."""


def lookup_order(order_id: str, include_items: bool = False) -> dict[str, str]:
    """Find an order by id.

    Looks in the orders database.

    Args:
        order_id: The order number, e.g. 123.
        include_items: Also list the items.
    """
    return {}


def test_schema_comes_from_hints_and_docstring() -> None:
    spec = spec_from_function(lookup_order)

    assert spec.name == "lookup_order"
    assert spec.description == "Find an order by id.\n\nLooks in the orders database."
    assert spec.parameters == {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "description": "The order number, e.g. 123."},
            "include_items": {
                "type": "boolean",
                "default": False,
                "description": "Also list the items.",
            },
        },
        "required": ["order_id"],
        "additionalProperties": False,
    }
    assert spec.definition.parameters is spec.parameters


def test_rich_types_become_json_schema_with_definitions() -> None:
    def ship(
        address: Address,
        priority: Priority,
        when: dt.date,
        tags: list[str],
        mode: Literal["air", "sea"] = "air",
        note: Annotated[str | None, Field(description="Free text.")] = None,
    ) -> None:
        """Ship something."""

    spec = spec_from_function(ship)
    props = spec.parameters["properties"]

    assert props["address"] == {"$ref": "#/$defs/Address"}
    assert spec.parameters["$defs"]["Address"]["required"] == ["street", "city"]
    assert "title" not in spec.parameters["$defs"]["Address"]
    assert props["when"] == {"type": "string", "format": "date"}
    assert props["mode"]["enum"] == ["air", "sea"]
    assert props["note"]["description"] == "Free text."
    assert spec.parameters["required"] == ["address", "priority", "when", "tags"]


def test_validate_returns_typed_python_values() -> None:
    def ship(address: Address, priority: Priority, when: dt.date) -> None:
        """Ship."""

    spec = spec_from_function(ship)
    args = spec.validate(
        '{"address": {"street": "1 Main St", "city": "Oslo"}, "priority": "high", '
        '"when": "2026-11-24"}'
    )

    assert args == {
        "address": Address(street="1 Main St", city="Oslo"),
        "priority": Priority.HIGH,
        "when": dt.date(2026, 11, 24),
    }


def test_defaults_fill_missing_optional_arguments() -> None:
    assert spec_from_function(lookup_order).validate('{"order_id": "7"}') == {
        "order_id": "7",
        "include_items": False,
    }


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"order_id": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("{}", "order_id: Field required"),
        ('{"order_id": 123}', "order_id: Input should be a valid string"),
        ('{"order_id": "1", "force": true}', "force: unexpected argument"),
    ],
)
def test_invalid_arguments_get_a_message_the_model_can_act_on(
    arguments: str, expected: str
) -> None:
    spec = spec_from_function(lookup_order)

    with pytest.raises(ToolArgumentsError) as caught:
        spec.validate(arguments)

    assert expected in caught.value.message
    assert "lookup_order" in caught.value.message


def test_error_message_lists_the_expected_arguments() -> None:
    with pytest.raises(ToolArgumentsError) as caught:
        spec_from_function(lookup_order).validate("{}")
    assert "Expected: order_id (string), include_items (boolean, optional)" in caught.value.message


def test_empty_arguments_mean_an_empty_object() -> None:
    def ping() -> str:
        """Ping."""
        return "pong"

    assert spec_from_function(ping).validate("") == {}


def test_skipped_parameters_are_left_out_of_the_schema() -> None:
    def with_context(ctx: Any, order_id: str) -> None:
        """x"""

    spec = spec_from_function(with_context, skip=("ctx",))
    assert list(spec.parameters["properties"]) == ["order_id"]


def test_dataclass_parameters_are_supported() -> None:
    def add(item: Item) -> None:
        """Add."""

    assert spec_from_function(add).validate('{"item": {"sku": "A1"}}') == {
        "item": Item(sku="A1", quantity=1)
    }


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (lambda *items: None, "list each argument explicitly"),
        (lambda **options: None, "list each argument explicitly"),
    ],
)
def test_variadic_parameters_are_refused(function: Any, expected: str) -> None:
    with pytest.raises(ToolDefinitionError, match=expected):
        spec_from_function(function, name="f")


def test_missing_annotation_is_refused_with_the_fix() -> None:
    def f(order_id) -> None:  # type: ignore[no-untyped-def]
        """x"""

    with pytest.raises(ToolDefinitionError, match=r"annotate it \(e.g. order_id: str\)"):
        spec_from_function(f)


def test_local_types_under_postponed_annotations_get_an_explanation() -> None:
    class Local(BaseModel):
        x: int

    def f(thing: Local) -> None:
        """x"""

    with pytest.raises(ToolDefinitionError, match="define the types it uses at module level"):
        spec_from_function(f)


def test_positional_only_parameters_are_refused() -> None:
    def f(order_id: str, /) -> None:
        """x"""

    with pytest.raises(ToolDefinitionError, match="positional-only"):
        spec_from_function(f)


def test_types_without_a_json_schema_are_refused() -> None:
    def f(thing: Opaque) -> None:
        """x"""

    with pytest.raises(ToolDefinitionError, match="cannot describe as JSON schema"):
        spec_from_function(f)


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "ünï"])
def test_names_model_apis_reject_are_refused(name: str) -> None:
    with pytest.raises(ToolDefinitionError, match="is not allowed"):
        spec_from_function(lookup_order, name=name)


def test_non_positive_timeout_is_refused() -> None:
    with pytest.raises(ToolDefinitionError, match="timeout_s must be positive"):
        spec_from_function(lookup_order, timeout_s=0)


def test_approval_rule_can_be_a_flag_or_a_predicate() -> None:
    always = spec_from_function(lookup_order, requires_approval=True)
    big = spec_from_function(
        lookup_order, requires_approval=lambda args: args["order_id"].startswith("9")
    )

    assert always.needs_approval({"order_id": "1"})
    assert not spec_from_function(lookup_order).needs_approval({"order_id": "1"})
    assert big.needs_approval({"order_id": "9"})
    assert not big.needs_approval({"order_id": "1"})


def _typed(count: int, urgent: bool, ratio: float, when: dt.date) -> None:
    """A tool with typed arguments."""


def test_arguments_are_validated_strictly_against_the_schema_the_model_saw() -> None:
    spec = spec_from_function(_typed)
    valid = '{"count": 3, "urgent": true, "ratio": 1, "when": "2026-01-02"}'
    assert spec.validate(valid) == {
        "count": 3,
        "urgent": True,
        "ratio": 1.0,
        "when": dt.date(2026, 1, 2),
    }
    for wrong, field in (
        ('"count": "3"', "count"),
        ('"urgent": "true"', "urgent"),
        ('"ratio": "1.5"', "ratio"),
    ):
        key = wrong.split(":")[0]
        arguments = valid.replace(
            next(p for p in valid[1:-1].split(", ") if p.startswith(key)), wrong
        )
        with pytest.raises(ToolArgumentsError, match=field):
            spec.validate(arguments)


def test_a_tool_may_opt_into_coercion() -> None:
    spec = spec_from_function(_typed, coerce=True)
    arguments = '{"count": "3", "urgent": "true", "ratio": "1.5", "when": "2026-01-02"}'
    assert spec.validate(arguments)["count"] == 3
    assert spec.validate(arguments)["urgent"] is True
