"""What :class:`keel.models._rules.RulesModel` says: questions, capability lists, result summaries.

Pure functions of their inputs, so every reply is deterministic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final

from keel._core.messages import ToolDefinition, ToolResultMessage
from keel.models._rules_schema import MISSING
from keel.models._rules_text import Analysis, is_id_name, name_words

__all__ = ["acknowledge", "capabilities", "first_sentence", "loads", "question", "render_result"]

_SENTENCE_END: Final = re.compile(r"(?<=[.!?])\s|\n")
_GREETINGS: Final = frozenset({"hi", "hello", "hey"})
_PREPOSITIONS: Final = frozenset({"to", "by", "for", "from", "with", "into", "on", "in", "of"})
_UNITS: Final = {"id": "ID", "ids": "IDs", "usd": "(USD)", "eur": "(EUR)", "gbp": "(GBP)"}
#: Objects and lists are summarised beyond these sizes, so a huge result stays readable.
_MAX_KEYS = 20
_MAX_ITEMS = 5
_MAX_VALUE_CHARS = 200
# The keys that name an object in a list, in order of preference.
_LABEL_KEYS: Final = ("name", "title", "label", "id")


def question(tool: ToolDefinition, missing: list[str]) -> str:
    """Ask for exactly the missing arguments: "To look up the order, I need the order ID..."."""
    things = _join([_describe_param(name) for name in missing])
    ask = f"{_ask_prefix(tool.name)}, I need {things}."
    if len(missing) == 1 and is_id_name(name_words(missing[0])):
        owner = [w for w in name_words(missing[0]) if not is_id_name([w])]
        owner = owner or [w for w in name_words(tool.name)[1:] if w not in _PREPOSITIONS][:1]
        if owner:
            return f"{ask} Which {' '.join(owner)} do you mean?"
    return f"{ask} Could you tell me {things}?"


def _ask_prefix(tool_name: str) -> str:
    words = name_words(tool_name) or [tool_name]
    verb = "look up" if words[0] == "lookup" else words[0]
    rest = words[1:]
    if not rest:
        return f"To {verb}"
    article = "" if rest[0] in _PREPOSITIONS else "the "
    return f"To {verb} {article}{' '.join(rest)}"


def _describe_param(name: str) -> str:
    words = name_words(name) or [name]
    shown = [_UNITS.get(word, word) for word in words]
    if shown == ["email"]:
        shown = ["email", "address"]
    return "the " + " ".join(shown)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def capabilities(analysis: Analysis, tools: Sequence[ToolDefinition]) -> str:
    """What the agent can do: each tool with the first sentence of its description."""
    if not tools:
        return acknowledge(analysis.text)
    greeting = "Hello! " if _GREETINGS & {t.value for t in analysis.tokens[:3]} else ""
    lines = [f"{greeting}I can help with:"]
    for tool in tools:
        summary = first_sentence(tool.description or "")
        lines.append(f"- {tool.name}: {summary}" if summary else f"- {tool.name}")
    lines.append("Tell me what you need, with any order numbers, email addresses or amounts.")
    return "\n".join(lines)


def acknowledge(text: str) -> str:
    """The reply when there are no tools: the message is acknowledged, nothing more."""
    if not text:
        return "Hello! How can I help?"
    excerpt = text if len(text) <= 80 else text[:79] + "…"
    return f'I received your message: "{excerpt}". I have no tools here, so I cannot act on it.'


def first_sentence(text: str) -> str:
    """The first sentence (or line) of a description, cut at 120 characters."""
    first = _SENTENCE_END.split(text.strip(), maxsplit=1)[0].strip()
    return first if len(first) <= 120 else first[:119] + "…"


def render_result(result: ToolResultMessage) -> str:
    """One tool result as a paragraph a person can read."""
    title = " ".join(name_words(result.name)).capitalize() or result.name
    content = result.content.strip()
    if result.is_error:
        return f"{title} failed: {content or 'no details were given'}"
    value = loads(content)
    if value is MISSING:
        return f"{title}:\n{content}" if "\n" in content else f"{title}: {content or '(empty)'}"
    if isinstance(value, dict):
        if not value:
            return f"{title}: no details."
        lines = [f"- {key}: {_inline(item)}" for key, item in list(value.items())[:_MAX_KEYS]]
        if len(value) > _MAX_KEYS:
            lines.append(f"- ... and {len(value) - _MAX_KEYS} more")
        return f"{title}:\n" + "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return f"{title}: no results."
        lines = [f"- {_inline(item)}" for item in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            lines.append(f"- ... and {len(value) - _MAX_ITEMS} more")
        noun = "result" if len(value) == 1 else "results"
        return f"{title}: {len(value)} {noun}.\n" + "\n".join(lines)
    return f"{title}: {_inline(value)}"


def _inline(value: Any, *, nested: bool = False) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        text = ", ".join(f"{k}: {_inline(v, nested=True)}" for k, v in value.items())
        text = f"({text})" if nested else text
    elif isinstance(value, list):
        text = _inline_list(value)
    else:
        text = json.dumps(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


def _inline_list(values: list[Any]) -> str:
    """Scalars joined by commas; objects counted and named by their name, title or id."""
    if not values:
        return "none"
    shown = [_label(v) if isinstance(v, dict) else _inline(v, nested=True) for v in values]
    more = f" and {len(values) - _MAX_ITEMS} more" if len(values) > _MAX_ITEMS else ""
    if any(isinstance(v, dict) for v in values):
        noun = "item" if len(values) == 1 else "items"
        return f"{len(values)} {noun}: {'; '.join(shown[:_MAX_ITEMS])}{more}"
    return ", ".join(shown[:_MAX_ITEMS]) + more


def _label(item: dict[str, Any]) -> str:
    for key in (*_LABEL_KEYS, *(k for k in item if k.endswith("_id"))):
        if isinstance(item.get(key), str | int | float) and not isinstance(item[key], bool):
            return str(item[key])
    return _inline(item, nested=True)


def loads(text: str) -> Any:
    """``text`` parsed as JSON, or :data:`MISSING` if it is plain text."""
    if not text or text[0] not in '{["-0123456789tfn':
        return MISSING
    try:
        return json.loads(text)
    except ValueError:
        return MISSING
