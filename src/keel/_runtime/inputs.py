"""Checking what callers hand the runtime: an agent, a run's input, a thread id."""

from __future__ import annotations

from keel._agent import Agent
from keel.errors import UsageError

__all__ = ["check_agent", "check_input", "check_thread"]

_MAX_THREAD_ID = 200


def check_agent(agent: object) -> None:
    """Refuse anything but an :class:`Agent`."""
    if not isinstance(agent, Agent):
        raise UsageError(f"run() needs a keel.Agent, got {type(agent).__name__}")


def check_input(text: object) -> str:
    """A run's input, or a clear error."""
    if not isinstance(text, str):
        raise UsageError(f"a run's input must be a str, got {type(text).__name__}")
    if not text.strip():
        raise UsageError("a run's input is empty; pass the user's message as a non-empty str")
    return text


def check_thread(thread: object) -> str:
    """A thread id, or a clear error."""
    if not isinstance(thread, str) or not thread or len(thread) > _MAX_THREAD_ID:
        raise UsageError(
            f"thread must be a non-empty str of at most {_MAX_THREAD_ID} characters, got {thread!r}"
        )
    if not thread.isprintable():
        raise UsageError(f"thread {thread!r} contains control characters; use printable text")
    return thread
