"""Running one tool call: results as text, errors as results, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest

from keel import RunContext, ToolError, tool
from keel._core.usage import Usage
from keel._runtime.tool_calls import execute_tool, render_result


def context() -> RunContext[None]:
    return RunContext(
        deps=None,
        run_id="r",
        thread_id="t",
        agent="a",
        step=1,
        tool_name="x",
        tool_call_id="c",
        idempotency_key="r:1:0",
        usage=Usage(),
    )


@dataclasses.dataclass
class Parcel:
    weight_kg: float


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain text", "plain text"),
        ({"a": 1, "b": [True, None]}, '{"a":1,"b":[true,null]}'),
        (Parcel(2.5), '{"weight_kg":2.5}'),
        (None, "null"),
    ],
)
def test_results_become_text_the_model_reads(value: Any, text: str) -> None:
    assert render_result(value) == text


async def test_a_sync_tool_runs_off_the_event_loop_thread() -> None:
    @tool
    def where() -> str:
        """Say which thread runs this."""
        return threading.current_thread().name

    outcome = await execute_tool(where, context(), {}, timeout_s=5)

    assert outcome.error is None
    assert outcome.result == "keel-tool"


async def test_an_unserializable_result_is_an_error_naming_the_fix() -> None:
    @tool
    def opaque() -> object:
        """Return something odd."""
        return object()

    outcome = await execute_tool(opaque, context(), {}, timeout_s=5)

    assert outcome.error is not None
    assert outcome.error.code == "tool_result_invalid"
    assert "return a str, dict, list, dataclass or pydantic model" in outcome.result


async def test_a_tools_own_timeout_error_is_not_mistaken_for_the_deadline() -> None:
    @tool
    async def upstream() -> str:
        """Call a slow upstream."""
        raise TimeoutError("upstream took too long")

    outcome = await execute_tool(upstream, context(), {}, timeout_s=5)

    assert outcome.error is not None
    assert outcome.error.code == "tool_exception"
    assert "upstream took too long" in outcome.result


async def test_long_error_messages_are_cut() -> None:
    @tool
    def noisy() -> str:
        """Fail loudly."""
        raise ToolError("x" * 10_000)

    outcome = await execute_tool(noisy, context(), {}, timeout_s=5)

    assert len(outcome.result) < 2100
    assert outcome.result.endswith("...")


async def test_cancelling_the_run_cancels_an_async_tool() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    @tool
    async def wait_forever() -> str:
        """Wait."""
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    task = asyncio.create_task(execute_tool(wait_forever, context(), {}, timeout_s=60))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_a_repeatable_tool_is_retried_until_it_succeeds() -> None:
    tries: list[int] = []

    @tool(idempotent=True, retries=2)
    async def flaky() -> str:
        """Fail twice, then work."""
        tries.append(len(tries))
        if len(tries) < 3:
            raise ConnectionError("upstream reset")
        return "ok"

    outcome = await execute_tool(flaky, context(), {}, timeout_s=5)

    assert (outcome.result, outcome.error, outcome.attempts) == ("ok", None, 3)


async def test_retries_stop_at_the_limit_and_report_the_last_error() -> None:
    @tool(side_effects="read", retries=1, timeout_s=0.05)
    async def hangs() -> str:
        """Hang."""
        await asyncio.sleep(10)
        return "never"

    outcome = await execute_tool(hangs, context(), {}, timeout_s=0.05)

    assert outcome.attempts == 2
    assert outcome.error is not None
    assert outcome.error.code == "tool_timeout"


async def test_a_tool_error_is_not_retried() -> None:
    tries: list[int] = []

    @tool(idempotent=True, retries=3)
    def refuses() -> str:
        """Refuse."""
        tries.append(1)
        raise ToolError("no such order; ask the customer")

    outcome = await execute_tool(refuses, context(), {}, timeout_s=5)

    assert (len(tries), outcome.attempts) == (1, 1)


async def test_a_call_interrupted_mid_flight_is_in_doubt_unless_safe_to_repeat() -> None:
    from keel._runtime.tool_calls import ToolEffectInDoubt

    tries: list[str] = []

    @tool
    async def pay() -> str:
        """Pay."""
        tries.append("pay")
        raise ToolEffectInDoubt("the connection closed")

    @tool(side_effects="read", retries=1)
    async def read() -> str:
        """Read."""
        tries.append("read")
        if len(tries) < 3:
            raise ToolEffectInDoubt("the connection closed")
        return "fresh"

    paid = await execute_tool(pay, context(), {}, timeout_s=5)
    assert paid.timed_out
    assert paid.error is not None
    assert paid.error.code == "tool_interrupted"
    assert "in doubt" in paid.error.message

    read_outcome = await execute_tool(read, context(), {}, timeout_s=5)
    assert not read_outcome.timed_out
    assert read_outcome.result == "fresh"
    assert read_outcome.attempts == 2
    assert tries == ["pay", "read", "read"]
