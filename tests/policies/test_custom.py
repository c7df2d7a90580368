"""@policy: a plain function, sync or async, made a named check that may answer briefly."""

from __future__ import annotations

import asyncio

import pytest

from keel import Check, CheckRequest, CheckResult
from keel.errors import ConfigurationError
from keel.policies import PolicyAnswer, policy
from tests.policies.requests import tool_call


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (True, CheckResult.allow()),
        (None, CheckResult.allow()),
        (False, CheckResult.deny("refunds are closed today")),
        ("", CheckResult.deny("refunds are closed today")),
        ("only in office hours", CheckResult.deny("only in office hours")),
        (CheckResult.escalate("ask Ana"), CheckResult.escalate("ask Ana")),
    ],
)
async def test_brief_answers_mean_what_they_say(
    answer: PolicyAnswer, expected: CheckResult
) -> None:
    @policy(points=["tool_call"], reason="refunds are closed today")
    def office_hours(request: CheckRequest) -> PolicyAnswer:
        return answer

    assert isinstance(office_hours, Check)
    assert (office_hours.name, office_hours.points) == ("office_hours", frozenset({"tool_call"}))
    assert await office_hours(tool_call("refund")) == expected


async def test_an_async_policy_is_awaited_and_a_bare_one_watches_every_point() -> None:
    @policy
    async def no_deletes(request: CheckRequest) -> bool:
        await asyncio.sleep(0)  # a policy may do I/O
        return request.call is None or request.call.name != "delete_user"

    assert no_deletes.points == frozenset(
        {"input", "model_call", "tool_call", "tool_result", "output"}
    )
    assert await no_deletes(tool_call("lookup_order")) == CheckResult.allow()
    assert await no_deletes(tool_call("delete_user")) == CheckResult.deny(
        "this policy does not allow it"
    )


async def test_a_wrong_answer_or_an_exception_denies() -> None:
    def counts(request: CheckRequest) -> int:
        return 3

    def broken(request: CheckRequest) -> bool:
        raise RuntimeError("budget service down")

    wrong = await policy(counts, name="counts")(tool_call("refund"))  # type: ignore[arg-type]
    failed = await policy(broken)(tool_call("refund"))

    assert wrong.verdict == "deny"
    assert wrong.reason is not None
    assert "policy 'counts' returned int" in wrong.reason
    assert failed.verdict == "deny"
    assert "budget service down" in (failed.reason or "")


def test_a_policy_needs_a_usable_name() -> None:
    with pytest.raises(ConfigurationError, match=r"pass name=\.\.\. to policy\(\)"):
        policy(lambda request: True)
    assert policy(lambda request: True, name="always").name == "always"
    with pytest.raises(ConfigurationError, match="a policy must be a function"):
        policy(42)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="reason must be some text"):
        policy(lambda request: True, name="x", reason="")
