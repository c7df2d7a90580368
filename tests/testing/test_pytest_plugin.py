"""Keel's pytest plugin, run by pytester on generated test files: its fixtures, its
assertions (passing, and failing with the run's timeline), and the live-provider guard."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# ``no:keel`` keeps an installed copy's entry point out, so the plugin loads once, by module.
PLUGIN = ("-p", "no:keel", "-p", "keel.pytest_plugin")

HEADER = '''
import re

import pytest

from keel import Agent, tool
from keel.testing import ANY, ExpectedCall, Partial, ScriptedModel, call


@tool(idempotent=True, side_effects="read")
def lookup_order(order_id: str) -> dict[str, str]:
    """Find an order by id."""
    return {"order_id": order_id, "status": "shipped"}


def support(*script):
    model = ScriptedModel(script or [call("lookup_order", order_id="123"), "It shipped."])
    return Agent(name="support", model=model, tools=[lookup_order])
'''


def run(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    # Only the plugins a test names: the installed ones would cost seconds per run.
    pytester._monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    if "pytest_asyncio.plugin" in args:
        pytester.makeini(
            "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        )
    pytester.makepyfile(test_inner=HEADER + body)
    return pytester.runpytest_inprocess(*PLUGIN, "--strict-markers", *args)


def test_the_fixtures_give_a_runtime_on_a_memory_store_and_a_fake_clock(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
from keel.testing import FakeClock, MemoryStore

def test_runs(keel_runtime, keel_store, keel_clock, keel_journal):
    assert isinstance(keel_store, MemoryStore) and isinstance(keel_clock, FakeClock)
    assert keel_runtime.store is keel_store and keel_runtime.clock is keel_clock
    result = keel_runtime.run_sync(support(), "Where is order 123?")
    assert result.output == "It shipped."
    kinds = [e.type for e in keel_journal(result)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert keel_clock.now() > 1_700_000_000.0

async def test_async_too(keel_runtime, keel_expect):
    result = await keel_runtime.run(support(), "Where is order 123?")
    keel_expect(result).completed()
""",
        "-p",
        "pytest_asyncio.plugin",
    )
    result.assert_outcomes(passed=2)


def test_every_assertion_passes_on_a_run_that_meets_it(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from keel.testing import assert_run, expect

def test_all(keel_runtime, keel_expect):
    result = keel_runtime.run_sync(support(), "Where is order 123?")
    (
        keel_expect(result)
        .completed()
        .output("It shipped.")
        .output(re.compile("shipped"))
        .output(lambda text: text.endswith("."))
        .output_contains("ship")
        .calls(call("lookup_order", order_id="123"))
        .calls(ExpectedCall("lookup_order", {"order_id": ANY}))
        .calls(ExpectedCall("lookup_order", {"order_id": re.compile(r"^\\d+$")}))
        .calls(ExpectedCall("lookup_order", {"order_id": lambda v: v == "123"}))
        .calls({"name": "lookup_order", "arguments": {"order_id": {"$regex": "12"}}})
        .calls("lookup_order")
        .calls_in_order("lookup_order")
        .calls_include(ExpectedCall("lookup_order", Partial({})))
        .cost_at_most(0.0)
        .steps_at_most(2)
        .tokens_at_most(0)
        .tool_calls_at_most(1)
    )
    assert_run(result, output="It shipped.", calls=["lookup_order"], max_steps=2, max_cost=0)
    expect(result).calls("lookup_order")  # without a journal: from the run's messages
""",
    )
    result.assert_outcomes(passed=1)


FAILING = {
    "status": 'keel_expect(result).status("failed")',
    "output": 'keel_expect(result).output("It was lost.")',
    "output_regex": 'keel_expect(result).output(re.compile("lost"))',
    "output_contains": 'keel_expect(result).output_contains("lost")',
    "calls_exact": 'keel_expect(result).calls(call("lookup_order", order_id="999"))',
    "calls_extra": "keel_expect(result).no_calls()",
    "calls_missing": 'keel_expect(result).calls("lookup_order", "refund")',
    "calls_in_order": 'keel_expect(result).calls_in_order("refund", "lookup_order")',
    "calls_subset": 'keel_expect(result).calls_include("refund")',
    "cost": "keel_expect(result).cost_at_most(-1)",
    "steps": "keel_expect(result).steps_at_most(1)",
    "tokens": "keel_expect(result).tokens_at_most(-1)",
    "tool_calls": "keel_expect(result).tool_calls_at_most(0)",
    "assert_run": "__import__('keel.testing').testing.assert_run(result, max_steps=1, events=[])",
}


def test_each_failing_assertion_prints_the_runs_timeline(pytester: pytest.Pytester) -> None:
    body = "".join(
        f"""
def test_{name}(keel_runtime, keel_expect):
    result = keel_runtime.run_sync(support(), "Where is order 123?")
    {check}
"""
        for name, check in FAILING.items()
    )
    pytester._monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_inner=HEADER + body)
    recorded = pytester.inline_run(*PLUGIN)
    recorded.assertoutcome(failed=len(FAILING))
    reports = {
        r.head_line: r.longreprtext
        for r in recorded.getreports("pytest_runtest_logreport")
        if r.when == "call"
    }
    for name in FAILING:
        text = reports[f"test_{name}"]
        assert "AssertionError" in text, name
        assert "timeline:" in text, name
        if name == "assert_run":  # no journal given: the run's messages
            assert "assistant  It shipped." in text
        else:  # the journal's timeline: the model's step, the tool call, the outcome
            assert "model  step 1  scripted" in text, name
            assert "tool   lookup_order done" in text, name
            assert "run completed" in text, name


def test_a_call_mismatch_names_the_argument_that_differs(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_fails(keel_runtime, keel_expect):
    result = keel_runtime.run_sync(support(), "Where is order 123?")
    keel_expect(result).calls(call("lookup_order", order_id="999"))
""",
    )
    result.stdout.fnmatch_lines(
        [
            "*tool calls do not match (exact): call #1: lookup_order: arguments.order_id: "
            "expected '999', got '123'*"
        ]
    )


LIVE = """
import httpx

from keel import Runtime
from keel.models import OpenAIModel
from keel.testing import MemoryStore

ANSWER = {
    "id": "c1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hello from the provider."}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def live_agent():
    # A real provider's URL; the transport answers in memory, so nothing leaves the process.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=ANSWER))
    model = OpenAIModel(
        "gpt-4o-mini",
        base_url="https://api.openai.com/v1",
        api_key="sk-test",
        http_client=httpx.AsyncClient(transport=transport),
    )
    return Agent(name="live", model=model)

{marker}
def test_live():
    result = Runtime(store=MemoryStore(), retry=None, breaker=None).run_sync(live_agent(), "Hi")
    # No assertion on the result: a refused request fails the test all the same.
    print("STATUS", result.status, result.output_or_none)
"""


def test_a_test_that_would_reach_a_real_provider_fails(pytester: pytest.Pytester) -> None:
    result = run(pytester, LIVE.replace("{marker}", ""))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*sent a model request to https://api.openai.com, a real provider*keel_live*"]
    )


def test_a_test_marked_keel_live_may_reach_a_provider(pytester: pytest.Pytester) -> None:
    # In a process of its own: where this session has the plugin too, its guard would refuse
    # the request of this (unmarked) test.
    pytester._monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_inner=HEADER + LIVE.replace("{marker}", "@pytest.mark.keel_live"))
    result = pytester.runpytest_subprocess(*PLUGIN, "--strict-markers", "-s")
    result.assert_outcomes(passed=1)
    assert "STATUS completed Hello from the provider." in result.stdout.str()


def test_a_loopback_provider_needs_no_marker(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import asyncio
from keel.models import OpenAIModel
from keel.testing import OpenAICompatibleServer

def test_loopback(keel_runtime):
    async def main():
        async with OpenAICompatibleServer(api_key="sk-test") as server:
            server.add_reply("Hello.")
            model = OpenAIModel("gpt-4o-mini", base_url=server.base_url, api_key="sk-test")
            result = await keel_runtime.run(Agent(name="a", model=model), "Hi")
            await model.aclose()
            return result
    assert asyncio.run(main()).output == "Hello."
""",
    )
    result.assert_outcomes(passed=1)


def test_the_keel_live_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = run(pytester, "", "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.keel_live*"])


def test_installing_keel_registers_the_plugin_with_pytest() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry = project["project"]["entry-points"]["pytest11"]["keel"]
    assert entry == "keel.pytest_plugin"
    module = importlib.import_module(entry)
    assert {"keel_runtime", "keel_expect", "keel_journal"} <= set(module.__all__)
