"""Eval cases and datasets: loaded from JSON lines or YAML, with errors that name the line and
the field that is wrong.

A case in a file::

    {"id": "refund-1", "input": "Refund order o-1", "reference": "Refunded.",
     "expected_tools": [{"name": "refund", "arguments": {"order_id": "o-1"}}],
     "history": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
     "tags": ["refunds"], "metadata": {"source": "prod"}}

``expected_tool_calls`` (what ``keel feedback export`` writes) is read as ``expected_tools``;
argument values may be matchers (``{"$any": true}``, ``{"$regex": "^o-"}``...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel._core.codec import decode_message, encode_message
from keel._core.messages import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolResultMessage,
    UserMessage,
)
from keel.errors import UsageError
from keel.testing._calls import ExpectedCall, as_expected

__all__ = ["Case", "Dataset", "DatasetError"]

_FIELDS = ("id", "input", "history", "reference", "expected_tools", "tags", "metadata")


class DatasetError(UsageError):
    """A dataset file or case is malformed; the message names the file, line and field."""

    code = "dataset_invalid"


def _history(items: Iterable[Any], where: str) -> tuple[Message, ...]:
    messages = []
    for index, item in enumerate(items):
        if isinstance(item, SystemMessage | UserMessage | AssistantMessage | ToolResultMessage):
            messages.append(item)
            continue
        if not isinstance(item, Mapping):
            raise DatasetError(f"{where}: history[{index}] must be a message object")
        try:
            messages.append(decode_message(json.dumps(item)))
        except ValueError as exc:
            raise DatasetError(
                f"{where}: history[{index}] is not a message ({_first_line(exc)}); write "
                '{"role": "user", "content": "..."} or {"role": "assistant", "content": "..."}'
            ) from None
    return tuple(messages)


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One eval case: the user's ``input`` (after the thread's earlier ``history``), what a
    good answer is (``reference``), the tool calls expected (``expected_tools``: names and
    argument matchers), ``tags`` to group results by, and free ``metadata``.

    ``expected_tools`` takes :class:`keel.testing.ExpectedCall` objects, tool names, or
    mappings ``{"name": ..., "arguments": {...}}``; ``history`` takes messages or their JSON
    form. Both are normalized when the case is made."""

    id: str
    input: str
    history: Sequence[Message] = ()
    reference: Any = None
    expected_tools: Sequence[ExpectedCall] = ()
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"case {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise DatasetError(f"a case needs an 'id' (a non-empty string), got {self.id!r}")
        if not isinstance(self.input, str):
            raise DatasetError(f"{where}: 'input' must be a string, got {self.input!r}")
        if isinstance(self.tags, str) or not all(isinstance(t, str) for t in self.tags):
            raise DatasetError(f"{where}: 'tags' must be a list of strings, got {self.tags!r}")
        if not isinstance(self.metadata, Mapping):
            raise DatasetError(f"{where}: 'metadata' must be an object, got {self.metadata!r}")
        expected = []
        for index, item in enumerate(self.expected_tools):
            try:
                expected.append(as_expected(item, f"expected_tools[{index}]"))
            except ValueError as exc:
                raise DatasetError(f"{where}: {exc}") from None
        object.__setattr__(self, "expected_tools", tuple(expected))
        object.__setattr__(self, "history", _history(self.history, where))
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "metadata", dict(self.metadata))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "case") -> Case:
        """A case from its JSON form; ``where`` (file and line) prefixes every error."""
        if not isinstance(data, Mapping):
            raise DatasetError(f"{where}: a case must be an object, got {type(data).__name__}")
        fields = dict(data)
        if "expected_tool_calls" in fields and "expected_tools" not in fields:
            fields["expected_tools"] = fields.pop("expected_tool_calls")
        unknown = sorted(set(fields) - set(_FIELDS))
        if unknown:
            raise DatasetError(
                f"{where}: unknown field {unknown[0]!r}; a case has {', '.join(_FIELDS)}"
            )
        for name in ("id", "input"):
            if name not in fields:
                raise DatasetError(f"{where}: missing field {name!r}")
        if isinstance(fields["id"], int) and not isinstance(fields["id"], bool):
            fields["id"] = str(fields["id"])
        for name, kind in (("history", list), ("expected_tools", list), ("tags", list)):
            if name in fields and not isinstance(fields[name], kind):
                raise DatasetError(f"{where}: field {name!r} must be a list")
        if fields.get("metadata") is None:
            fields.pop("metadata", None)
        try:
            return cls(**fields)
        except DatasetError as exc:
            raise DatasetError(f"{where}: {exc.message}") from None

    def to_dict(self) -> dict[str, Any]:
        """The case's JSON form (what :meth:`from_dict` reads)."""
        return {
            "id": self.id,
            "input": self.input,
            "history": [json.loads(encode_message(m)) for m in self.history],
            "reference": self.reference,
            "expected_tools": [call.to_json() for call in self.expected_tools],
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
        }


def _parse_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml comes with the dev extra
        raise DatasetError(
            f"{path}: reading YAML needs PyYAML (pip install pyyaml), or use JSON lines"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise DatasetError(f"{path}{at}: not valid YAML: {_first_line(exc)}") from None


@dataclass(frozen=True, slots=True)
class Dataset:
    """Eval cases, in order, with unique ids: ``Dataset(cases=[...])`` or
    :meth:`Dataset.load` of a ``.jsonl`` or ``.yaml``/``.yml`` file."""

    cases: Sequence[Case]
    name: str = "dataset"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cases", tuple(self.cases))
        seen: set[str] = set()
        for case in self.cases:
            if not isinstance(case, Case):
                raise DatasetError(f"a dataset holds Case objects, got {type(case).__name__}")
            if case.id in seen:
                raise DatasetError(f"{self.name}: two cases have the id {case.id!r}")
            seen.add(case.id)

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dataset:
        """Read cases from JSON lines (one object a line; blank lines and lines starting
        with ``#`` are skipped) or YAML (a list of cases, or ``{"cases": [...]}``)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DatasetError(f"cannot read dataset {path}: {exc.strerror or exc}") from None
        if path.suffix in (".yaml", ".yml"):
            data = _parse_yaml(text, path)
            items = data.get("cases") if isinstance(data, dict) else data
            if not isinstance(items, list):
                raise DatasetError(f"{path}: a YAML dataset is a list of cases (or 'cases:')")
            cases = [Case.from_dict(c, f"{path}: case #{i + 1}") for i, c in enumerate(items)]
        else:
            cases = []
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    data = json.loads(line)
                except ValueError as exc:
                    raise DatasetError(
                        f"{path}:{number}: not valid JSON ({exc}); each line holds one case"
                    ) from None
                cases.append(Case.from_dict(data, f"{path}:{number}"))
        return cls(cases, name=path.name)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the cases as JSON lines."""
        lines = (json.dumps(c.to_dict(), ensure_ascii=False, default=str) for c in self.cases)
        Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def filter(self, *, tags: Iterable[str] = (), ids: Iterable[str] = ()) -> Dataset:
        """The cases with any of ``tags`` and/or one of ``ids`` (all when both are empty)."""
        wanted_tags, wanted_ids = set(tags), set(ids)
        kept = [
            c
            for c in self.cases
            if (not wanted_tags or wanted_tags & set(c.tags))
            and (not wanted_ids or c.id in wanted_ids)
        ]
        return Dataset(kept, name=self.name)
