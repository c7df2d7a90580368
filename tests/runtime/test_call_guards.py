"""The prompt estimate the guards reserve for: conservative, and counted once per message
over a run's growing conversation, yet right when a message is replaced."""

from __future__ import annotations

from keel._runtime.call_guards import PromptCounter, prompt_tokens
from keel.messages import AssistantMessage, Message, ModelRequest, ToolCall, UserMessage


def test_the_counter_matches_a_full_count_as_the_conversation_grows_and_changes() -> None:
    messages: list[Message] = [UserMessage(content="Where is order 7?")]
    request = ModelRequest(messages=messages)
    count = PromptCounter()
    assert count(request) == prompt_tokens(request)

    messages.append(
        AssistantMessage(tool_calls=(ToolCall(id="c", name="lookup", arguments='{"id": 7}'),))
    )
    messages.append(UserMessage(content="x" * 300))
    assert count(request) == prompt_tokens(request)

    messages[2] = UserMessage(content="short now")  # a check replaced a message
    assert count(request) == prompt_tokens(request)
    del messages[1:]
    assert count(request) == prompt_tokens(request)


def test_the_estimate_is_conservative_for_english_text() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 40
    estimate = prompt_tokens(ModelRequest(messages=[UserMessage(content=text)]))
    # Real tokenizers give about 4 characters a token for English prose.
    assert estimate >= len(text) / 4
