"""Eval cases and datasets: made in code, loaded from JSON lines and YAML, and bad files
refused with the line and the field named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from keel.evals import ANY, Case, Dataset, DatasetError, ExpectedCall, Partial
from keel.messages import AssistantMessage, UserMessage
from keel.testing import Containing


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_case_normalizes_its_history_and_expected_calls() -> None:
    case = Case.from_dict(
        {
            "id": "c1",
            "input": "Refund o-1",
            "history": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
            ],
            "expected_tools": ["lookup", {"name": "refund", "arguments": {"order_id": "o-1"}}],
            "tags": ["refunds"],
        }
    )
    typed = Case(
        id="c1",
        input="Refund o-1",
        history=[UserMessage(content="Hi"), AssistantMessage(content="Hello")],
        expected_tools=[ExpectedCall("lookup"), ExpectedCall("refund", {"order_id": "o-1"})],
        tags=["refunds"],
    )
    assert typed == case
    assert case.history == (UserMessage(content="Hi"), AssistantMessage(content="Hello"))
    assert case.expected_tools == (
        ExpectedCall("lookup"),
        ExpectedCall("refund", {"order_id": "o-1"}),
    )
    assert case.tags == ("refunds",)
    assert Case.from_dict(case.to_dict()) == case


def test_jsonl_cases_load_with_matchers_and_the_feedback_export_field(tmp_path: Path) -> None:
    lines = [
        {
            "id": "a",
            "input": "Refund o-1",
            "reference": "Refunded.",
            "expected_tools": [
                {
                    "name": "refund",
                    "arguments": {
                        "order_id": {"$regex": "^o-"},
                        "reason": {"$any": True},
                        "note": {"$contains": "late"},
                        "meta": {"$partial": {"k": 1}},
                    },
                }
            ],
            "tags": ["refunds"],
            "metadata": {"source": "prod"},
        },
        {"id": 7, "input": "Hi", "expected_tool_calls": [{"name": "greet"}]},
    ]
    text = "# a comment\n\n" + "\n".join(json.dumps(line) for line in lines) + "\n"
    dataset = Dataset.load(write(tmp_path, "cases.jsonl", text))
    assert [c.id for c in dataset] == ["a", "7"]
    assert len(dataset) == 2
    assert dataset.name == "cases.jsonl"
    arguments = dataset.cases[0].expected_tools[0].arguments
    assert arguments["order_id"] == re.compile("^o-")
    assert arguments["reason"] is ANY
    assert arguments["note"] == Containing("late")
    assert arguments["meta"] == Partial({"k": 1})
    assert dataset.cases[1].expected_tools == (ExpectedCall("greet"),)
    assert dataset.filter(tags=["refunds"]).cases == (dataset.cases[0],)
    assert dataset.filter(ids=["7"]).cases == (dataset.cases[1],)


def test_yaml_cases_load_as_a_list_or_under_cases(tmp_path: Path) -> None:
    text = """
cases:
  - id: a
    input: Where is order 1?
    reference: shipped
    expected_tools:
      - name: lookup_order
        arguments: {order_id: "1"}
    history:
      - {role: user, content: Hi}
      - {role: assistant, content: Hello}
  - id: b
    input: Hello
"""
    dataset = Dataset.load(write(tmp_path, "cases.yaml", text))
    assert [c.id for c in dataset] == ["a", "b"]
    assert dataset.cases[0].history[1] == AssistantMessage(content="Hello")
    listed = Dataset.load(write(tmp_path, "l.yml", "- {id: x, input: y}\n"))
    assert listed.cases[0].input == "y"


def test_a_dataset_saves_and_loads_back(tmp_path: Path) -> None:
    dataset = Dataset(
        [
            Case(
                id="a",
                input="x",
                reference={"k": 1},
                expected_tools=[ExpectedCall("t", {"a": ANY, "b": re.compile("z")})],
            )
        ]
    )
    path = tmp_path / "out.jsonl"
    dataset.save(path)
    assert Dataset.load(path).cases == dataset.cases


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "bad.jsonl",
            '{"id": "a", "input": "x"}\n{"id": "b", "input": \n',
            "bad.jsonl:2: not valid JSON",
        ),
        ("bad.jsonl", '{"id": "a"}\n', "bad.jsonl:1: missing field 'input'"),
        ("bad.jsonl", '{"input": "x"}\n', "bad.jsonl:1: missing field 'id'"),
        (
            "bad.jsonl",
            '{"id": "a", "input": "x", "refrence": 1}\n',
            "bad.jsonl:1: unknown field 'refrence'",
        ),
        (
            "bad.jsonl",
            '{"id": "a", "input": 3}\n',
            "bad.jsonl:1: case 'a': 'input' must be a string",
        ),
        (
            "bad.jsonl",
            '{"id": "a", "input": "x", "tags": "t"}\n',
            "bad.jsonl:1: field 'tags' must be a list",
        ),
        (
            "bad.jsonl",
            '{"id": "a", "input": "x", "history": [{"role": "robot"}]}\n',
            "bad.jsonl:1: case 'a': history[0] is not a message",
        ),
        (
            "bad.jsonl",
            '{"id": "a", "input": "x", "expected_tools": [{"arguments": {}}]}\n',
            "bad.jsonl:1: case 'a': expected_tools[0] needs a tool name",
        ),
        (
            "bad.jsonl",
            '{"id": "a", "input": "x", "expected_tools": '
            '[{"name": "t", "arguments": {"a": {"$regx": 1}}}]}\n',
            "unknown matcher '$regx'",
        ),
        (
            "bad.jsonl",
            '{"id": "a", "input": "x", "expected_tools": '
            '[{"name": "t", "arguments": {"a": {"$regex": "("}}}]}\n',
            "is not a valid pattern",
        ),
        (
            "bad.jsonl",
            '{"id": "a", "input": "x"}\n{"id": "a", "input": "y"}\n',
            "two cases have the id 'a'",
        ),
        ("bad.jsonl", "[1, 2]\n", "bad.jsonl:1: a case must be an object"),
        ("bad.yaml", "cases:\n  - id: a\n    input: [unclosed\n", "bad.yaml:"),
        ("bad.yaml", "just: text\n", "a YAML dataset is a list of cases"),
        ("bad.yaml", "- id: a\n  input: x\n- id: b\n", "bad.yaml: case #2: missing field 'input'"),
    ],
)
def test_a_bad_file_is_refused_naming_the_line_and_field(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(DatasetError) as raised:
        Dataset.load(write(tmp_path, name, text))
    assert message in raised.value.message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cannot read dataset .*nothing\.jsonl"):
        Dataset.load(tmp_path / "nothing.jsonl")
