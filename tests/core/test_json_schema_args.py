"""JSON-Schema-like schemas normalized to JSON Schema, and strict validation of arguments."""

from __future__ import annotations

from typing import Any

import pytest

from keel._core.json_schema_args import compile_validator, normalize_schema
from keel.errors import ToolDefinitionError


def normalized_property(schema: dict[str, Any]) -> Any:
    return normalize_schema({"properties": {"p": schema}}, tool="t")["properties"]["p"]


@pytest.mark.parametrize(
    ("written", "becomes"),
    [
        ({"type": "dict"}, {"type": "object"}),
        ({"type": "HashMap"}, {"type": "object"}),
        ({"type": "float"}, {"type": "number"}),
        ({"type": "double"}, {"type": "number"}),
        ({"type": "long"}, {"type": "integer"}),
        (
            {"type": "tuple", "items": {"type": "float"}},
            {"type": "array", "items": {"type": "number"}},
        ),
        ({"type": "ArrayList"}, {"type": "array"}),
        ({"type": "String"}, {"type": "string"}),
        ({"type": "char"}, {"type": "string"}),
        ({"type": "Boolean"}, {"type": "boolean"}),
        ({"type": "any", "description": "x"}, {"description": "x"}),
        ({"type": ""}, {}),
        ({"type": ["string", "null"]}, {"type": ["string", "null"]}),
        ({"type": ["float", "any"]}, {}),
        (
            {"type": "tuple", "items": [{"type": "int"}, {"type": "str"}]},
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
        ),
        (
            {"type": "dict", "properties": {"type": {"type": "str"}}},
            {"type": "object", "properties": {"type": {"type": "string"}}},
        ),
        (
            {"anyOf": [{"type": "float"}, {"type": "dict"}]},
            {"anyOf": [{"type": "number"}, {"type": "object"}]},
        ),
        (
            {"type": "array", "items": {"type": "dict", "additionalProperties": {"type": "float"}}},
            {
                "type": "array",
                "items": {"type": "object", "additionalProperties": {"type": "number"}},
            },
        ),
        (
            {"type": "string", "default": "x", "format": "date"},
            {"type": "string", "default": "x", "format": "date"},
        ),
    ],
)
def test_schemas_in_the_wild_become_json_schema(written: dict[str, Any], becomes: Any) -> None:
    assert normalized_property(written) == becomes


def test_the_top_level_is_a_closed_object_unless_it_says_otherwise() -> None:
    assert normalize_schema(None, tool="t") == {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }
    open_schema = normalize_schema({"type": "dict", "additionalProperties": True}, tool="t")
    assert open_schema["additionalProperties"] is True
    assert "$schema" not in normalize_schema(
        {"$schema": "https://json-schema.org/draft/2020-12/schema"}, tool="t"
    )


def test_required_flags_on_properties_join_the_parent_list() -> None:
    schema = normalize_schema(
        {
            "properties": {"a": {"type": "str", "required": True}, "b": {"type": "str"}},
            "required": ["b"],
        },
        tool="t",
    )
    assert schema["required"] == ["b", "a"]
    assert "required" not in schema["properties"]["a"]


def test_an_unknown_type_name_is_refused_with_where_it_is() -> None:
    with pytest.raises(ToolDefinitionError, match=r"parameters\.properties\.p\.items\.type is "):
        normalize_schema(
            {"properties": {"p": {"type": "array", "items": {"type": "decimal"}}}}, tool="t"
        )


def test_local_refs_resolve() -> None:
    schema = normalize_schema(
        {
            "$defs": {"Point": {"type": "dict", "properties": {"x": {"type": "float"}}}},
            "properties": {"at": {"$ref": "#/$defs/Point"}},
        },
        tool="t",
    )
    validator = compile_validator(schema, tool="t")
    assert validator.is_valid({"at": {"x": 1.5}})
    assert not validator.is_valid({"at": {"x": "1.5"}})


def test_integers_are_python_ints_and_numbers_are_not_booleans() -> None:
    validator = compile_validator(
        normalize_schema(
            {"properties": {"i": {"type": "integer"}, "n": {"type": "number"}}}, tool="t"
        ),
        tool="t",
    )
    assert validator.is_valid({"i": 3, "n": 3})
    assert validator.is_valid({"n": 2.5})
    assert not validator.is_valid({"i": 3.0})
    assert not validator.is_valid({"i": True})
    assert not validator.is_valid({"n": False})


def test_arguments_described_through_a_reference_are_not_closed_off() -> None:
    schema = normalize_schema(
        {
            "$defs": {"Args": {"type": "object", "properties": {"q": {"type": "string"}}}},
            "$ref": "#/$defs/Args",
        },
        tool="t",
    )
    assert "additionalProperties" not in schema
    assert compile_validator(schema, tool="t").is_valid({"q": "x"})
