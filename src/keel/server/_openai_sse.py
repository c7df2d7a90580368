"""A streamed completion as server-sent events: the role, the text as it comes, the end.

``data: {chunk}`` events of ``chat.completion.chunk`` objects: the first names the role, the
next ones carry the text, the last one ``finish_reason: "stop"``, then a usage chunk when the
client asked (``stream_options.include_usage``), then ``data: [DONE]``. A run that stops
without an answer once text was sent ends the stream with an error event
(``data: {"error": {...}}``), which OpenAI clients raise as ``APIError``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from keel._agent import Agent
from keel.server._openai_errors import OpenAIError, error_event, run_not_answered
from keel.server._openai_models import Delta
from keel.server._openai_replies import Reply, answer_text, is_text_agent
from keel.server._openai_stream import Stopped, Text

__all__ = ["DONE", "sse_events"]

DONE = "data: [DONE]\n\n"


async def sse_events(
    first: Text | Stopped,
    rest: AsyncGenerator[Text | Stopped, None],
    *,
    agent: Agent[Any],
    reply: Reply,
    include_usage: bool,
    thread: str | None,
) -> AsyncIterator[str]:
    """The events of a streamed completion, from its first piece (already read, to decide
    the status line) and the pieces after it."""
    try:
        yield reply.chunk(Delta(role="assistant", content=""))
        item = first
        try:
            while isinstance(item, Text):
                yield reply.chunk(Delta(content=item.text))
                item = await anext(rest)
        except OpenAIError as error:
            yield error_event(error)
            yield DONE
            return
        result = item.result
        if not result.ok:
            yield error_event(run_not_answered(result, thread=thread))
        else:
            if not is_text_agent(agent):  # sent whole, once validated
                yield reply.chunk(Delta(content=answer_text(agent, result)))
            yield reply.chunk(Delta(), finished=True)
            if include_usage:
                yield reply.usage_chunk(result.usage)
        yield DONE
    finally:
        await rest.aclose()
