"""From the messages a client sends to the input of one run.

The last message must be the user's: it is what the agent answers. What comes before it is
read according to where the conversation is kept:

- **With a thread**, the thread's journal is the conversation: Keel gives the agent the
  thread's earlier turns itself, so the client's copies are not used (clients that resend the
  whole conversation every time work unchanged).
- **Without a thread**, the run starts a conversation of its own, and the earlier user and
  assistant turns the client sent are put before its message as a transcript, so a stateless
  client still gets an answer in context.

System (and ``developer``) messages are read, so malformed ones are refused, and then set
aside: the agent's own instructions are its system prompt, and a client cannot replace or
extend them. Tool calls and tool results are refused: the agent's tools run on the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from keel.server._openai_errors import invalid_request
from keel.server._openai_models import ChatMessage, valid_unicode

__all__ = ["Conversation", "Turn", "read_conversation"]

_TEXT_ROLES = frozenset({"system", "developer", "user", "assistant"})
_TOOL_ROLES = frozenset({"tool", "function"})


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier message of the conversation, as the client sent it."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """The user's new message and the turns the client sent before it."""

    message: str
    earlier: tuple[Turn, ...] = ()

    def run_input(self, *, threaded: bool) -> str:
        """The run's input: the message alone with a thread (the thread remembers), else the
        message after a transcript of the earlier turns."""
        if threaded or not self.earlier:
            return self.message
        lines = ["Earlier in this conversation:", ""]
        for turn in self.earlier:
            lines.append(f"{turn.role.capitalize()}: {turn.text}")
            lines.append("")
        lines += ["The user's new message:", "", self.message]
        return "\n".join(lines)


def _text(content: Any, *, where: str, role: str) -> str:
    """The text of a message's content: a string, or a list of text parts."""
    text = _parts(content, where=where, role=role)
    try:
        return valid_unicode(text)
    except ValueError as error:
        raise invalid_request(f"'{where}': {error}.", param=where) from None


def _parts(content: Any, *, where: str, role: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        if role == "assistant":
            return ""
        raise invalid_request(f"'{where}' is required for a {role} message.", param=where)
    if not isinstance(content, list):
        raise invalid_request(f"'{where}' must be a string or a list of text parts.", param=where)
    pieces: list[str] = []
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            pieces.append(part["text"])
        elif kind == "refusal" and role == "assistant" and isinstance(part.get("refusal"), str):
            pieces.append(part["refusal"])
        elif isinstance(kind, str) and kind != "text":
            raise invalid_request(
                f"'{at}' is a {kind!r} part; only text is supported: the agent reads text.",
                param=at,
                code="unsupported_content",
            )
        else:
            raise invalid_request(
                f'\'{at}\' must be an object {{"type": "text", "text": "..."}}.', param=at
            )
    return "\n".join(pieces)


def _refuse_tools(message: ChatMessage, where: str) -> None:
    for field in ("tool_calls", "function_call"):
        if getattr(message, field):
            raise invalid_request(
                f"'{where}.{field}' is not supported: the agent's tools run on the server, "
                "so a conversation sent to it holds no tool calls.",
                param=f"{where}.{field}",
                code="unsupported_message",
            )


def read_conversation(messages: Sequence[ChatMessage]) -> Conversation:
    """Check the messages and return the conversation they hold; a 400 naming the message
    (``messages[2].role``) at fault otherwise."""
    if not messages:
        raise invalid_request(
            "'messages' must hold at least one message: the user's.", param="messages"
        )
    turns: list[Turn] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.role
        if role in _TOOL_ROLES:
            raise invalid_request(
                f"'{where}.role' is {role!r}: tool results are not accepted, since the "
                "agent's tools run on the server.",
                param=f"{where}.role",
                code="unsupported_message",
            )
        if role not in _TEXT_ROLES:
            raise invalid_request(
                f"'{where}.role' must be 'system', 'developer', 'user' or 'assistant', "
                f"got {role!r}.",
                param=f"{where}.role",
            )
        _refuse_tools(message, where)
        text = _text(message.content, where=f"{where}.content", role=role)
        if role == "user" or (role == "assistant" and text):
            turns.append(Turn(role="user" if role == "user" else "assistant", text=text))
    last = len(messages) - 1
    if messages[last].role != "user":
        raise invalid_request(
            f"The last message ('messages[{last}]') must be the user's: it is what the agent "
            f"answers, and it is {messages[last].role!r}.",
            param=f"messages[{last}].role",
        )
    if not turns[-1].text.strip():
        raise invalid_request(
            f"'messages[{last}].content' is empty: the agent needs a message to answer.",
            param=f"messages[{last}].content",
        )
    return Conversation(message=turns[-1].text, earlier=tuple(turns[:-1]))
