"""Built-in policies: least-privilege tool permissions, limits on actions, custom policies.

::

    from keel import Agent
    from keel.policies import Grant, MaxCalls, RequireApproval, ToolPermissions

    agent = Agent(
        name="desk",
        model="rules",
        tools=[lookup_order, refund, delete_user],
        checks=[
            ToolPermissions(roles={"viewer": Grant(read_only=True)}),
            RequireApproval("refund", when=lambda args: args["amount_usd"] > 100),
            MaxCalls("delete_user", 1),
        ],
    )

Each policy is a :class:`keel.Check` at ``"tool_call"``: it goes wherever checks go
(``Agent(checks=...)``, ``Runtime(checks=...)``), its answers are journaled as
``ChecksDecided`` under its name, and a replay reads them back. Reasons name the tool, the
argument field and the grant or limit, never an argument's value. :func:`policy` makes a plain
function a check that may answer ``True``, ``False``, ``None`` or a reason.
"""

from keel.policies._common import PolicyVerdict
from keel.policies._custom import PolicyAnswer, PolicyFunction, policy
from keel.policies._limits import ArgumentLimit, ArgumentPredicate, MaxCalls, RequireApproval
from keel.policies._permissions import Grant, ToolPermissions

__all__ = [
    "ArgumentLimit",
    "ArgumentPredicate",
    "Grant",
    "MaxCalls",
    "PolicyAnswer",
    "PolicyFunction",
    "PolicyVerdict",
    "RequireApproval",
    "ToolPermissions",
    "policy",
]
