"""What a run's outcome looks like on the wire: a completion, or the chunks of one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic_core

from keel._agent import Agent
from keel._core.usage import Usage
from keel._runtime.result import RunResult
from keel.server._openai_models import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    OutputMessage,
)

__all__ = ["Reply", "answer_text", "completion_usage", "is_text_agent"]


def is_text_agent(agent: Agent[Any]) -> bool:
    """Whether the agent answers in text (``str``), as opposed to a structured output."""
    return agent.output_type is str


def answer_text(agent: Agent[Any], result: RunResult[Any]) -> str:
    """A completed run's answer as the completion's content: text as it is, a structured
    output as JSON."""
    output = result.output
    if is_text_agent(agent) and isinstance(output, str):
        return output
    return pydantic_core.to_json(output).decode()


def completion_usage(usage: Usage) -> CompletionUsage:
    """A run's usage, summed over its model calls, in OpenAI's terms."""
    return CompletionUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details={"cached_tokens": usage.cached_input_tokens},
        completion_tokens_details={"reasoning_tokens": usage.reasoning_tokens},
    )


@dataclass(frozen=True, slots=True)
class Reply:
    """What every object about one run shares: its id, when it was asked, which agent."""

    run_id: str
    created: int
    model: str

    @property
    def id(self) -> str:
        """The completion's id: ``chatcmpl-`` and the run's id."""
        return f"chatcmpl-{self.run_id}"

    def completion(self, content: str, usage: Usage) -> ChatCompletion:
        """The completion of a run that answered ``content``."""
        return ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[Choice(message=OutputMessage(content=content))],
            usage=completion_usage(usage),
        )

    def chunk(self, delta: Delta, *, finished: bool = False) -> str:
        """A server-sent event adding ``delta`` to the answer (the last one with
        ``finish_reason`` ``stop``)."""
        chunk = ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(delta=delta, finish_reason="stop" if finished else None)],
        )
        return _event(chunk)

    def usage_chunk(self, usage: Usage) -> str:
        """The last event when the client asked for usage: no choices, the run's tokens."""
        chunk = ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[],
            usage=completion_usage(usage),
        )
        return _event(chunk)


def _event(chunk: ChatCompletionChunk) -> str:
    return f"data: {chunk.model_dump_json()}\n\n"
