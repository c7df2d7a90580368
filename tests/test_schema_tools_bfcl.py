"""Tool.from_schema on the Berkeley Function Calling Leaderboard (BFCL v4) corpus.

Every function definition in the corpus loads as a tool; each case's ground-truth call (its
first acceptable value for each argument) validates; calls made wrong from the ground truth
(a required argument left out, a wrong type, a value outside an enum, an unknown argument) are
refused before the function runs. Counts are printed per source file (``pytest -s``) and
never pooled across files. The corpus is read from ``KEEL_CORPORA`` or ``../shared/corpora``.
"""

from __future__ import annotations

import ast
import functools
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from keel import Tool
from keel._core.tool_names import TOOL_NAME
from keel._core.toolspec import ToolArgumentsError
from tests.test_tools import context

ROOT = Path(__file__).resolve().parents[1]

QUESTIONS = [
    "BFCL_v4_simple_python.json",
    "BFCL_v4_simple_java.json",
    "BFCL_v4_simple_javascript.json",
    "BFCL_v4_multiple.json",
    "BFCL_v4_parallel.json",
    "BFCL_v4_parallel_multiple.json",
    "BFCL_v4_live_simple.json",
    "BFCL_v4_live_multiple.json",
    "BFCL_v4_live_parallel.json",
    "BFCL_v4_live_parallel_multiple.json",
    "BFCL_v4_irrelevance.json",
    "BFCL_v4_live_irrelevance.json",
    "BFCL_v4_live_relevance.json",
]
WITH_ANSWERS = QUESTIONS[:10]
FUNC_DOCS = [
    "gorilla_file_system.json",
    "math_api.json",
    "memory_kv.json",
    "memory_rec_sum.json",
    "memory_vector.json",
    "message_api.json",
    "posting_api.json",
    "ticket_api.json",
    "trading_bot.json",
    "travel_booking.json",
    "vehicle_control.json",
    "web_search.json",
]
MULTI_TURN = [
    "BFCL_v4_multi_turn_base.json",
    "BFCL_v4_multi_turn_long_context.json",
    "BFCL_v4_multi_turn_miss_func.json",
    "BFCL_v4_multi_turn_miss_param.json",
]
CLASS_DOCS = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
}

# Ground-truth calls that contradict their own schema upstream, so validation must refuse
# them. Java and JavaScript cases pass source-code names ("userProfile") where the schema
# declares an object or an array (BFCL's harness turns every Java/JS type into a string).
_CODE_NAMES = "a source-code name where the schema wants a non-string"
KNOWN_CONTRADICTIONS: dict[str, dict[str, str]] = {
    "BFCL_v4_simple_python.json": {"simple_python_200": "a required argument left out"},
    "BFCL_v4_simple_java.json": {
        f"simple_java_{n}": _CODE_NAMES for n in (26, 35, 38, 45, 58, 69, 72, 82, 87, 88)
    },
    "BFCL_v4_simple_javascript.json": {
        f"simple_javascript_{n}": _CODE_NAMES for n in (5, 9, 11, 15, 19, 32, 37, 39)
    },
    "BFCL_v4_parallel_multiple.json": {
        "parallel_multiple_21": "Python expressions where the schema wants arrays",
        "parallel_multiple_26": "an argument the schema does not have",
        "parallel_multiple_94": "strings in a list of integers",
    },
    "BFCL_v4_live_simple.json": {"live_simple_71-35-0": "a list for a string enum"},
    "BFCL_v4_live_parallel_multiple.json": {
        "live_parallel_multiple_2-2-0": "a value outside the enum"
    },
    "BFCL_v4_live_multiple.json": dict.fromkeys(
        (
            "live_multiple_87-38-4",
            "live_multiple_144-56-0",
            "live_multiple_152-58-6",
            "live_multiple_507-149-4",
            "live_multiple_552-153-1",
            "live_multiple_595-158-1",
            "live_multiple_596-158-2",
            "live_multiple_731-167-2",
            "live_multiple_733-167-4",
            "live_multiple_735-167-6",
            "live_multiple_750-169-5",
            "live_multiple_756-169-11",
            "live_multiple_834-178-9",
            "live_multiple_835-178-10",
            "live_multiple_862-181-3",
            "live_multiple_871-182-8",
            "live_multiple_947-197-0",
            "live_multiple_964-207-0",
            "live_multiple_1038-265-0",
            "live_multiple_1041-268-0",
        ),
        "the value, type or required arguments disagree with the schema",
    ),
}


# The same upstream contradiction in every multi-turn file: case 173 closes ticket
# "ticket_001", and the suite's schema declares ticket_id an integer.
KNOWN_MULTI_TURN = {"173": "a string where the schema wants an integer"}


def corpus() -> Path:
    """The BFCL corpus (``KEEL_CORPORA``, else ``../shared/corpora`` beside the repository):
    skip without it, or fail where data are required (CI, ``KEEL_REQUIRE_SERVICES=1``)."""
    where = Path(os.environ.get("KEEL_CORPORA", ROOT.parent / "shared" / "corpora")) / "bfcl"
    if (where / "possible_answer").is_dir():
        return where
    message = (
        f"the BFCL corpus is not at {where} (it needs the question files and possible_answer/): "
        "set KEEL_CORPORA to the folder holding bfcl/"
    )
    if os.environ.get("KEEL_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


@dataclass
class Loaded:
    """A file's definitions as tools, and the calls that reached their function."""

    definitions: int = 0
    tools: dict[str, Tool] = field(default_factory=dict)  # by the definition's JSON
    ran: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def tool(self, definition: dict[str, Any]) -> Tool:
        key = json.dumps(definition, sort_keys=True)
        if key not in self.tools:
            self.tools[key] = Tool.from_schema(
                definition["name"],
                definition.get("description", ""),
                definition.get("parameters"),
                self._recorder(definition["name"]),
            )
        return self.tools[key]

    def _recorder(self, name: str) -> Callable[..., Any]:
        def record(**arguments: Any) -> str:
            self.ran.append((name, arguments))
            return "ok"

        return record


@functools.cache
def load(where: Path, name: str) -> tuple[Loaded, dict[str, dict[str, Tool]]]:
    """The file's tools, and each case's tools by their original name."""
    loaded = Loaded()
    cases: dict[str, dict[str, Tool]] = {}
    for record in lines(where / name):
        definitions = record.get("function", [record] if "parameters" in record else [])
        loaded.definitions += len(definitions)
        # A suite's file is one definition a line, without ids: its tools make one "case".
        case = cases.setdefault(record.get("id", name), {})
        case.update({d["name"]: loaded.tool(d) for d in definitions})
    return loaded, cases


def first(alternatives: Any) -> Any:
    """A ground-truth argument's first acceptable value; dicts nest alternatives too."""
    value = alternatives[0] if isinstance(alternatives, list) and alternatives else alternatives
    return unwrap(value)


def unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: first(v) for k, v in value.items() if not _omitted(v)}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def _omitted(alternatives: Any) -> bool:
    # "" first in the list means the argument may be left out.
    return isinstance(alternatives, list) and bool(alternatives) and alternatives[0] == ""


def attempt(loaded: Loaded, tool: Tool, arguments: dict[str, Any]) -> str | None:
    """What the runtime does with a call: validate, then run. The refusal, or None."""
    try:
        valid = tool.spec.validate(json.dumps(arguments))
    except ToolArgumentsError as exc:
        return exc.message
    tool.bind(context(), valid)()
    return None


def ground_truth(where: Path, name: str) -> list[tuple[str, str, dict[str, Any]]]:
    calls = []
    for record in lines(where / "possible_answer" / name):
        for entry in record["ground_truth"]:
            [(function, arguments)] = entry.items()
            chosen = {k: first(v) for k, v in arguments.items() if not _omitted(v)}
            calls.append((record["id"], function, chosen))
    return calls


def report(name: str, counts: Counter[str]) -> None:
    # The per-file numbers, shown with `pytest -s`.
    print(f"\nBFCL {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))  # noqa: T201


@pytest.mark.parametrize("name", QUESTIONS)
def test_every_definition_in_a_question_file_loads_as_a_tool(name: str) -> None:
    loaded, cases = load(corpus(), name)

    assert loaded.definitions > 0
    for tools in cases.values():
        for original, tool in tools.items():
            assert (tool.original_name, bool(TOOL_NAME.match(tool.name))) == (original, True)
            assert tool.spec.definition.name == tool.name
    renamed = sum(1 for tool in loaded.tools.values() if tool.name != tool.original_name)
    report(
        name, Counter(definitions=loaded.definitions, distinct=len(loaded.tools), renamed=renamed)
    )


@pytest.mark.parametrize("name", FUNC_DOCS)
def test_every_definition_of_a_multi_turn_suite_loads_as_a_tool(name: str) -> None:
    loaded, cases = load(corpus() / "multi_turn_func_doc", name)

    assert loaded.definitions == len(cases[name]) > 0
    assert all(tool.original_name == original for original, tool in cases[name].items())
    report(name, Counter(definitions=loaded.definitions))


@pytest.mark.parametrize("name", WITH_ANSWERS)
def test_ground_truth_calls_validate_and_run(name: str) -> None:
    where = corpus()
    loaded, cases = load(where, name)
    refused: dict[str, str] = {}
    ran_before = len(loaded.ran)
    calls = ground_truth(where, name)
    for case, function, arguments in calls:
        problem = attempt(loaded, cases[case][function], arguments)
        if problem is not None:
            refused[case] = problem

    known = KNOWN_CONTRADICTIONS.get(name, {})
    report(name, Counter(calls=len(calls), valid=len(calls) - len(refused), refused=len(refused)))
    assert set(refused) == set(known), {
        case: refused.get(case) for case in set(refused) ^ set(known)
    }
    assert len(loaded.ran) - ran_before == len(calls) - len(refused)


def wrong_calls(tool: Tool, arguments: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Calls made wrong from a valid one, each with the field its refusal must name."""
    schema = tool.spec.parameters
    properties: dict[str, Any] = schema["properties"]
    wrong: dict[str, tuple[dict[str, Any], str]] = {}
    present = [p for p in schema.get("required", ()) if p in arguments]
    if present:
        wrong["missing"] = ({k: v for k, v in arguments.items() if k != present[0]}, present[0])
    for prop, value in arguments.items():
        kind = properties.get(prop, {}).get("type")
        if isinstance(kind, str) and kind in _WRONG:
            wrong["type"] = ({**arguments, prop: _WRONG[kind](value)}, prop)
            break
    for prop, sub in properties.items():
        if isinstance(sub.get("enum"), list) and sub.get("type") in ("string", None):
            wrong["enum"] = ({**arguments, prop: "not-an-allowed-value"}, prop)
            break
    if schema.get("additionalProperties") is False:
        wrong["extra"] = ({**arguments, "unexpected_argument": 1}, "unexpected_argument")
    return wrong


_WRONG: dict[str, Callable[[Any], Any]] = {
    "integer": str,  # "3" is not an integer: no silent coercion
    "number": str,
    "string": lambda value: 12345,
    "boolean": lambda value: "true",
    "array": lambda value: "[]",
    "object": lambda value: "{}",
}


@pytest.mark.parametrize("name", WITH_ANSWERS)
def test_wrong_calls_are_refused_before_the_function_runs(name: str) -> None:
    where = corpus()
    loaded, cases = load(where, name)
    known = KNOWN_CONTRADICTIONS.get(name, {})
    counts: Counter[str] = Counter()
    ran_before = len(loaded.ran)
    for case, function, arguments in ground_truth(where, name):
        if case in known:
            continue
        tool = cases[case][function]
        for kind, (arguments_wrong, field_name) in wrong_calls(tool, arguments).items():
            problem = attempt(loaded, tool, arguments_wrong)
            assert problem is not None, (case, kind, arguments_wrong)
            assert f"'{field_name}'" in problem or f"{field_name}:" in problem, problem
            counts[f"{kind} refused"] += 1

    report(name, counts)
    assert len(loaded.ran) == ran_before  # none of them reached the function
    assert counts["missing refused"] > 0
    assert counts["extra refused"] > 0
    assert counts["type refused"] > 0


def multi_turn_calls(where: Path, name: str) -> list[tuple[str, Tool, dict[str, Any]]]:
    """Each ground-truth call of the file (Python syntax) with its tool and its arguments;
    positional arguments take the schema's properties in order."""
    questions = {q["id"]: q for q in lines(where / name)}
    calls = []
    for record in lines(where / "possible_answer" / name):
        offered: dict[str, Tool] = {}
        for suite in questions[record["id"]]["involved_classes"]:
            doc = CLASS_DOCS[suite]
            offered.update(load(where / "multi_turn_func_doc", doc)[1][doc])
        for turn in record["ground_truth"]:
            for text in turn:
                call = ast.parse(text, mode="eval").body
                assert isinstance(call, ast.Call)
                assert isinstance(call.func, ast.Name)
                tool = offered[call.func.id]
                names = list(tool.spec.parameters["properties"])
                arguments = {names[i]: ast.literal_eval(a) for i, a in enumerate(call.args)}
                arguments |= {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
                calls.append((record["id"], tool, arguments))
    return calls


@pytest.mark.parametrize("name", MULTI_TURN)
def test_multi_turn_ground_truth_calls_validate(name: str) -> None:
    where = corpus()
    calls = multi_turn_calls(where, name)
    refused = [
        (case, tool.original_name, message)
        for case, tool, arguments in calls
        if (message := _validate(tool, arguments)) is not None
    ]

    report(name, Counter(calls=len(calls), valid=len(calls) - len(refused)))
    assert {case.rsplit("_", 1)[1] for case, _, _ in refused} == set(KNOWN_MULTI_TURN), refused
    assert len(refused) == 1


def _validate(tool: Tool, arguments: dict[str, Any]) -> str | None:
    try:
        tool.spec.validate(json.dumps(arguments))
    except ToolArgumentsError as exc:
        return exc.message
    return None
