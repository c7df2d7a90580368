"""Structured logs: JSON lines with the run's fields, readable lines, and no secret at any
level."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from keel import Agent, KeelSettings, Runtime, tool
from keel.errors import ConfigurationError
from keel.observability import Logging, configure_logging
from keel.testing import MemoryStore, ScriptedModel, call

NO_MODELS = KeelSettings.from_environ({})
SECRET = "sk-planted-7f3c9a1e5b2d4f60a8c1e9b7"


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(level="DEBUG", format="json", stream=stream)
    keel_logger = logging.getLogger("keel")
    try:
        yield stream
    finally:
        keel_logger.removeHandler(handler)
        keel_logger.setLevel(logging.NOTSET)
        keel_logger.propagate = True


@tool(side_effects="write")
async def send(to: str, token: str) -> str:
    """Send a token."""
    logging.getLogger("keel.runtime").info("sending")  # a Keel record inside the drive
    if to == "fail":
        raise ValueError(f"refused token {token}")
    return f"sent {token}"


async def test_json_lines_carry_the_run_fields_and_no_content(logs: io.StringIO) -> None:
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[Logging()])
    script: list[Any] = [call("send", to="fail", token="t-1"), "Could not."]
    agent = Agent(name="desk", model=ScriptedModel(script), tools=[send])

    result = await runtime.run(agent, "please send t-1", thread="th-1", tenant="acme")

    records = [json.loads(line) for line in logs.getvalue().splitlines()]
    by_message = {r["message"]: r for r in records}
    failed = by_message["tool call failed"]
    assert (failed["run_id"], failed["thread_id"], failed["agent"]) == (
        result.run_id,
        "th-1",
        "desk",
    )
    assert (failed["tenant"], failed["step"], failed["tool"]) == ("acme", 1, "send")
    assert failed["error_code"] == "tool_exception"
    assert by_message["run completed"]["status"] == "completed"
    inside = by_message["sending"]  # keel.runtime's own record, inside the drive
    assert (inside["logger"], inside["run_id"]) == ("keel.runtime", result.run_id)
    assert "t-1" not in logs.getvalue()  # neither the input, arguments, result nor error


async def test_nothing_secret_reaches_the_logs_at_debug(logs: io.StringIO) -> None:
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS, observers=[Logging()])
    script: list[Any] = [
        call("send", to="x", token=SECRET),
        call("send", to="fail", token=SECRET),
        SECRET,
    ]
    agent = Agent(name="desk", model=ScriptedModel(script), tools=[send])

    await runtime.run(agent, f"use {SECRET}")

    text = logs.getvalue()
    assert "tool call failed" in text  # the logs were written
    assert SECRET not in text
    assert SECRET[3:] not in text


def test_text_lines_are_readable(tmp_path: object) -> None:
    stream = io.StringIO()
    handler = configure_logging(level="INFO", format="text", stream=stream)
    try:
        logging.getLogger("keel.runs").info("run started", extra={"keel": {"agent": "desk"}})
    finally:
        logging.getLogger("keel").removeHandler(handler)
        logging.getLogger("keel").propagate = True
    line = stream.getvalue()
    assert "INFO    keel.runs: run started  agent=desk" in line
    assert not line.startswith("{")


def test_a_bad_level_or_format_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="level"):
        configure_logging(level="LOUD")
    with pytest.raises(ConfigurationError, match="format"):
        configure_logging(format="xml")  # type: ignore[arg-type]
