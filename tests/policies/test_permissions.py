"""ToolPermissions: the intersection of every grant that applies, least privilege; refusals
that name the tool and the grant, for the model to change course."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from keel import Check, CheckResult
from keel.errors import ConfigurationError
from keel.policies import Grant, ToolPermissions
from tests.policies.requests import tool_call

PERMISSIONS = ToolPermissions(
    default=Grant.none(),
    agents={"desk": Grant(tools={"lookup_order", "refund", "delete_user"})},
    tenants={"trial": Grant(read_only=True)},
    users={"ana@example.com": Grant(tools={"lookup_order", "delete_user"})},
    roles={"viewer": Grant(read_only=True), "support": Grant(tools={"lookup_order", "refund"})},
)


async def test_it_is_a_check_at_tool_call_under_its_name() -> None:
    assert isinstance(PERMISSIONS, Check)
    assert (PERMISSIONS.name, PERMISSIONS.points) == ("tool_permissions", frozenset({"tool_call"}))
    assert ToolPermissions(name="desk_tools").name == "desk_tools"


async def test_by_default_every_tool_may_be_called() -> None:
    anything = ToolPermissions()
    assert await anything(tool_call("delete_user", side_effects=None)) == CheckResult.allow()


async def test_a_run_no_grant_applies_to_gets_the_default() -> None:
    answer = await PERMISSIONS(tool_call("lookup_order", side_effects="read", agent="other"))
    assert answer.verdict == "deny"
    assert answer.reason == "you may not call lookup_order: the default grant does not include it"


async def test_a_grant_that_applies_replaces_the_default() -> None:
    answer = await PERMISSIONS(tool_call("refund", agent="desk"))
    assert answer == CheckResult.allow()


async def test_a_read_only_role_refuses_a_tool_that_writes() -> None:
    answer = await PERMISSIONS(tool_call("delete_user", roles={"viewer"}))
    assert answer.verdict == "deny"
    assert answer.reason == "you may not call delete_user: role 'viewer' is read-only"


@pytest.mark.parametrize("side_effects", ["none", "read"])
async def test_a_read_only_role_lets_reading_and_computing_through(side_effects: str) -> None:
    answer = await PERMISSIONS(
        tool_call("lookup_order", side_effects=side_effects, roles={"viewer"})  # type: ignore[arg-type]
    )
    assert answer == CheckResult.allow()


async def test_a_tool_with_unknown_side_effects_counts_as_one_that_writes() -> None:
    answer = await PERMISSIONS(tool_call("lookup_order", side_effects=None, roles={"viewer"}))
    assert answer.verdict == "deny"
    assert answer.reason == (
        "you may not call lookup_order: role 'viewer' is read-only, and lookup_order does not "
        "declare its side effects"
    )


async def test_every_role_narrows_and_none_widens() -> None:
    # The agent grants refund, so does role support; the user's grant does not.
    answer = await PERMISSIONS(
        tool_call("refund", user="ana@example.com", roles={"support", "admin"})
    )
    assert answer.verdict == "deny"
    assert answer.reason == "you may not call refund: this user's grant does not include it"
    # delete_user: granted to the agent and the user, but not to role support.
    answer = await PERMISSIONS(tool_call("delete_user", user="ana@example.com", roles={"support"}))
    assert answer.reason == "you may not call delete_user: role 'support' does not include it"
    # lookup_order is in every grant that applies.
    allowed = tool_call("lookup_order", side_effects="read", user="ana@example.com")
    assert await PERMISSIONS(allowed) == CheckResult.allow()


async def test_a_refusal_names_each_grant_that_refused_and_never_the_user() -> None:
    answer = await PERMISSIONS(
        tool_call(
            "delete_user",
            tenant="trial",
            user="ana@example.com",
            roles={"viewer", "support"},
            password="hunter2",
        )
    )
    assert answer.reason == (
        "you may not call delete_user: tenant 'trial' is read-only; role 'support' does not "
        "include it; role 'viewer' is read-only"
    )
    assert "ana@example.com" not in (answer.reason or "")
    assert "hunter2" not in (answer.reason or "")


async def test_unlisted_tenants_users_and_roles_add_no_grant() -> None:
    answer = await PERMISSIONS(
        tool_call("refund", tenant="acme", user="bo@example.com", roles={"auditor"})
    )
    assert answer == CheckResult.allow()  # only the agent's grant applies


def test_grants_hold_sets_of_names_or_everything() -> None:
    assert Grant(tools=["a", "b"]).tools == frozenset({"a", "b"})
    assert Grant.all() == Grant(tools="*")
    assert not Grant.none().includes("a")
    assert Grant(tools={"a"}, read_only=True).permits("a", "read")
    assert not Grant(tools={"a"}, read_only=True).permits("a", None)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Grant(tools="lookup"), "pass a set of tool names, such as {'lookup'}"),
        (lambda: Grant(tools={""}), "tool names must be non-empty strings"),
        (lambda: Grant(read_only="yes"), "must be True or False"),  # type: ignore[arg-type]
        (lambda: ToolPermissions(default="all"), "default=...) must be a Grant"),  # type: ignore[arg-type]
        (
            lambda: ToolPermissions(roles={"viewer": {"lookup"}}),  # type: ignore[dict-item]
            "roles['viewer'] must be a Grant, got set",
        ),
        (lambda: ToolPermissions(users=[Grant.all()]), "must map names to Grant"),  # type: ignore[arg-type]
        (lambda: ToolPermissions(tenants={"": Grant.all()}), "keys must be non-empty names"),
        (lambda: ToolPermissions(name="no spaces"), "check name 'no spaces' is not allowed"),
    ],
)
def test_bad_configuration_says_what_to_fix(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        build()
