"""How much of a thread's conversation a run is given."""

from __future__ import annotations

import pytest

from keel import ConfigurationError, History
from keel._core.history import history_start
from keel.messages import AssistantMessage, Message, ToolCall, ToolResultMessage, UserMessage


def exchange(i: int) -> list[Message]:
    call = ToolCall(id=f"c{i}", name="lookup", arguments="{}")
    return [
        UserMessage(content=f"question {i}"),
        AssistantMessage(tool_calls=(call,)),
        ToolResultMessage(tool_call_id=f"c{i}", name="lookup", content="x" * 40),
        AssistantMessage(content=f"answer {i}"),
    ]


def thread(exchanges: int) -> list[Message]:
    return [m for i in range(exchanges) for m in exchange(i)]


def test_a_short_thread_is_kept_whole() -> None:
    assert history_start(thread(3), History(max_messages=100)) == 0


def test_the_budget_keeps_the_latest_messages_from_a_user_message_on() -> None:
    messages = thread(50)  # 200 messages
    start = history_start(messages, History(max_messages=10))
    kept = messages[start:]
    assert len(kept) <= 10
    assert isinstance(kept[0], UserMessage)  # a tool call is never cut from its result
    assert kept[-1] == messages[-1]


def test_a_token_budget_cuts_too() -> None:
    messages = thread(50)
    start = history_start(messages, History(max_messages=None, max_tokens=60))
    kept = messages[start:]
    assert 0 < len(kept) < 20
    assert isinstance(kept[0], UserMessage)


def test_a_budget_smaller_than_one_exchange_keeps_the_last_exchange_whole() -> None:
    messages = thread(5)
    start = history_start(messages, History(max_messages=1))
    assert messages[start:] == exchange(4)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_nonsense_budgets_are_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"History\.max_messages"):
        History(max_messages=bad)  # type: ignore[arg-type]
