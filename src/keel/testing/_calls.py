"""The tool calls of a run, read from its journal or its messages, and compared with the
calls a test or an eval case expects: exactly, in order, or as a subset, with argument
matchers (:mod:`keel.testing._matchers`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from keel._core.events import Event, ModelResponded, ToolCallFinished
from keel._core.messages import AssistantMessage, Message, ToolCall
from keel.testing._matchers import ANY, describe, matcher_from_json, matcher_to_json, mismatch

__all__ = [
    "CallMode",
    "ExpectedCall",
    "ToolCallRecord",
    "as_expected",
    "calls_from_events",
    "calls_from_messages",
    "compare_calls",
]

CallMode = Literal["exact", "in_order", "subset"]
MODES: tuple[CallMode, ...] = ("exact", "in_order", "subset")


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """A tool call a run's model asked for: its name and its arguments (parsed JSON, or the
    raw text when they did not parse), in the order asked; ``result`` is what the model was
    told (``None``: the call has not ended), ``error`` the code of the failure when the call
    failed or was refused. Only name and arguments are compared with expected calls."""

    name: str
    arguments: Any
    id: str = ""
    error: str | None = None
    result: str | None = None

    def __str__(self) -> str:
        shown = self.arguments if isinstance(self.arguments, str) else _json(self.arguments)
        failed = f" [{self.error}]" if self.error else ""
        return f"{self.name}({shown}){failed}"


@dataclass(frozen=True, slots=True)
class ExpectedCall:
    """A tool call a test or a case expects: the tool's name and its arguments, where any
    value may be a matcher (``ANY``, a compiled regex, a callable, :class:`Partial`);
    ``arguments=ANY`` (the default) accepts any arguments."""

    name: str
    arguments: Any = ANY

    def __str__(self) -> str:
        if self.arguments is ANY:
            return f"{self.name}(...)"
        return f"{self.name}({_json(matcher_to_json(self.arguments))})"

    def mismatch(self, call: ToolCallRecord) -> str | None:
        """Why ``call`` is not this call, or ``None``."""
        if call.name != self.name:
            return f"expected a call to {self.name}, got {call.name}"
        found = mismatch(self.arguments, call.arguments, "arguments")
        return None if found is None else f"{self.name}: {found}"

    def to_json(self) -> dict[str, Any]:
        """The JSON form (as in a dataset file)."""
        if self.arguments is ANY:
            return {"name": self.name}
        return {"name": self.name, "arguments": matcher_to_json(self.arguments)}


def _json(value: Any) -> str:
    return json.dumps(value, default=describe, ensure_ascii=False, separators=(", ", ": "))


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def as_expected(item: Any, where: str = "expected call") -> ExpectedCall:
    """An :class:`ExpectedCall` from one, a :class:`ToolCallRecord`, a tool call, a name, or a
    mapping ``{"name": ..., "arguments": {...}}`` (JSON matchers allowed)."""
    if isinstance(item, ExpectedCall):
        return item
    if isinstance(item, ToolCallRecord):
        return ExpectedCall(item.name, item.arguments)
    if isinstance(item, ToolCall):
        return ExpectedCall(item.name, _arguments(item.arguments))
    if isinstance(item, str):
        return ExpectedCall(item)
    if isinstance(item, Mapping):
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where} needs a tool name: {{'name': 'refund', ...}}")
        unknown = set(item) - {"name", "arguments"}
        if unknown:
            raise ValueError(
                f"{where} has unknown field(s) {', '.join(sorted(unknown))}; "
                "it takes 'name' and 'arguments'"
            )
        if "arguments" not in item:
            return ExpectedCall(name)
        return ExpectedCall(name, matcher_from_json(item["arguments"]))
    raise ValueError(
        f"{where} must be a tool name, a mapping with 'name' and 'arguments', or a call, "
        f"got {type(item).__name__}"
    )


def calls_from_events(events: Sequence[Event]) -> list[ToolCallRecord]:
    """Every tool call the run's model asked for, in order, with how each failed if it did."""
    finished = {e.call.id: e for e in events if isinstance(e, ToolCallFinished)}
    records = []
    for e in events:
        if not isinstance(e, ModelResponded):
            continue
        for c in e.message.tool_calls:
            end = finished.get(c.id)
            error = None if end is None or end.error is None else end.error.code
            result = None if end is None else end.result
            records.append(ToolCallRecord(c.name, _arguments(c.arguments), c.id, error, result))
    return records


def calls_from_messages(messages: Iterable[Message]) -> list[ToolCallRecord]:
    """The tool calls of a run's own messages (a :class:`keel.RunResult`'s), in order."""
    return [
        ToolCallRecord(c.name, _arguments(c.arguments), c.id)
        for m in messages
        if isinstance(m, AssistantMessage)
        for c in m.tool_calls
    ]


def compare_calls(
    expected: Sequence[ExpectedCall], actual: Sequence[ToolCallRecord], mode: CallMode
) -> tuple[float, str | None]:
    """How well ``actual`` meets ``expected``: the share of expected calls found (1.0 for no
    expected calls), and why it does not match in full (``None`` when it does).

    ``exact``: the same calls in the same order, no more; ``in_order``: the expected calls
    appear in this order, other calls may come between; ``subset``: each expected call is
    made, in any order (each actual call counts once)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "exact":
        found = 0
        for want, got in zip(expected, actual, strict=False):
            if want.mismatch(got) is not None:
                break
            found += 1
        share = found / len(expected) if expected else float(not actual)
        if found == len(expected) == len(actual):
            return 1.0, None
        if found < min(len(expected), len(actual)):
            why = expected[found].mismatch(actual[found])
            return share, f"call #{found + 1}: {why}"
        if len(actual) > len(expected):
            return share, f"unexpected call #{len(expected) + 1}: {actual[len(expected)]}"
        return share, f"missing call #{found + 1}: {expected[found]}"
    if mode == "in_order":
        position = 0
        for index, want in enumerate(expected):
            while position < len(actual) and want.mismatch(actual[position]) is not None:
                position += 1
            if position == len(actual):
                return index / len(expected), f"missing call #{index + 1} (in order): {want}"
            position += 1
        return 1.0, None
    free = list(actual)
    missing = []
    for want in expected:
        hit = next((c for c in free if want.mismatch(c) is None), None)
        if hit is None:
            missing.append(want)
        else:
            free.remove(hit)
    if not missing:
        return 1.0, None
    share = (len(expected) - len(missing)) / len(expected)
    return share, "missing call(s): " + ", ".join(str(m) for m in missing)
