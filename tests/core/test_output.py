"""Structured output: schemas (wrapped when not an object) and validation of final answers."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

from keel._core.output import OutputSpec, OutputValidationError


class Refund(BaseModel):
    order_id: str
    amount_usd: float
    approved: bool


def test_object_types_are_sent_as_they_are() -> None:
    spec = OutputSpec(Refund)

    assert not spec.wrapped
    assert spec.name == "Refund"
    assert spec.schema["required"] == ["order_id", "amount_usd", "approved"]
    assert "title" not in spec.schema


def test_valid_answer_is_returned_as_json_data_and_loads_back() -> None:
    spec = OutputSpec(Refund)

    data = spec.parse('{"order_id": "123", "amount_usd": 30, "approved": true}')

    assert data == {"order_id": "123", "amount_usd": 30.0, "approved": True}
    assert spec.load(data) == Refund(order_id="123", amount_usd=30.0, approved=True)


def test_code_fences_around_the_json_are_tolerated() -> None:
    text = '```json\n{"order_id": "1", "amount_usd": 1.5, "approved": false}\n```'
    assert OutputSpec(Refund).parse(text)["amount_usd"] == 1.5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sure! The refund is approved.", "not valid JSON"),
        ('{"order_id": "1", "approved": true}', "amount_usd: Field required"),
        ('{"order_id": "1", "amount_usd": "lots", "approved": true}', "amount_usd: Input should"),
    ],
)
def test_invalid_answers_say_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(OutputValidationError) as caught:
        OutputSpec(Refund).parse(text)
    assert expected in caught.value.message


def test_non_object_types_are_wrapped_in_a_result_field() -> None:
    spec = OutputSpec(list[Refund])

    assert spec.wrapped
    assert spec.schema["required"] == ["result"]
    assert spec.schema["properties"]["result"]["type"] == "array"
    assert "Refund" in spec.schema["$defs"]
    answer = '{"result": [{"order_id": "1", "amount_usd": 2, "approved": true}]}'
    assert spec.parse(answer) == [{"order_id": "1", "amount_usd": 2.0, "approved": True}]


def test_wrapped_types_also_accept_the_bare_value() -> None:
    spec = OutputSpec(Literal["yes", "no"])

    assert spec.parse('{"result": "yes"}') == "yes"
    assert spec.parse('"no"') == "no"
    with pytest.raises(OutputValidationError):
        spec.parse('"maybe"')


def test_scalar_output_types() -> None:
    spec = OutputSpec(int)
    assert spec.schema["properties"]["result"] == {"type": "integer"}
    assert spec.parse('{"result": 42}') == 42
