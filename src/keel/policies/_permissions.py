"""Least privilege for tool calls: :class:`Grant` and the :class:`ToolPermissions` check.

A grant says which tools a run may call. The grants that apply to a run (its agent's, its
tenant's, its user's, and one per role it has) are intersected: a call goes through only if
every one of them allows it. When none applies, the ``default`` grant does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from keel._checks import Check
from keel._core.checks import CheckRequest, CheckResult
from keel._core.toolspec import SideEffects
from keel.errors import ConfigurationError

__all__ = ["Grant", "ToolPermissions"]

_READING: tuple[SideEffects, ...] = ("none", "read")


@dataclass(frozen=True, slots=True, init=False)
class Grant:
    """Which tools may be called: every tool (``"*"``) or the named ones.

    With ``read_only=True`` only the granted tools that change nothing may be called: those
    declared with ``side_effects="none"`` or ``"read"``. A tool whose side effects are not
    known counts as one that writes.

    Args:
        tools: ``"*"`` for every tool, or a set of tool names.
        read_only: Allow only tools that read or compute.
    """

    tools: Literal["*"] | frozenset[str]
    read_only: bool

    def __init__(
        self, *, tools: Literal["*"] | Iterable[str] = "*", read_only: bool = False
    ) -> None:
        if isinstance(tools, str):
            if tools != "*":
                raise ConfigurationError(
                    f"Grant(tools={tools!r}): pass a set of tool names, such as "
                    f"{{{tools!r}}}, or '*' for every tool"
                )
            names: Literal["*"] | frozenset[str] = "*"
        else:
            names = frozenset(tools)
            wrong = sorted(repr(n) for n in names if not isinstance(n, str) or not n)
            if wrong:
                raise ConfigurationError(
                    "Grant(tools=...): tool names must be non-empty strings, got "
                    + ", ".join(wrong)
                )
        if not isinstance(read_only, bool):
            raise ConfigurationError(
                f"Grant(read_only=...) must be True or False, not {read_only!r}"
            )
        object.__setattr__(self, "tools", names)
        object.__setattr__(self, "read_only", read_only)

    @classmethod
    def all(cls) -> Grant:
        """Every tool, whatever it does."""
        return cls()

    @classmethod
    def none(cls) -> Grant:
        """No tool at all."""
        return cls(tools=())

    def includes(self, tool: str) -> bool:
        """Whether ``tool`` is one of the granted tools (read-only or not)."""
        return self.tools == "*" or tool in self.tools

    def permits(self, tool: str, side_effects: SideEffects | None) -> bool:
        """Whether a call to ``tool``, with these side effects, is granted."""
        return self.includes(tool) and (not self.read_only or side_effects in _READING)


class ToolPermissions(Check):
    """A check at ``"tool_call"`` that lets through only the tools the run is granted.

    The grants that apply to a run are ``agents[request.agent]``, ``tenants[request.tenant]``,
    ``users[request.user]`` and ``roles[role]`` for each of ``request.roles``, those that are
    listed. A call goes through only if **every** one of them permits it (least privilege: a
    role narrows what a run may do, it never widens it). A run to which none applies gets
    ``default``: :meth:`Grant.all` unless told otherwise, :meth:`Grant.none` to refuse every
    tool to runs nobody granted anything.

    A refusal is a ``deny`` whose reason names the tool and each grant that refused it, for
    the model to change course: ``you may not call delete_user: role 'viewer' is read-only``.
    It never names a user, nor shows the call's arguments.

    Args:
        default: The grant of runs that no other grant applies to.
        agents: Grants by agent name.
        tenants: Grants by tenant.
        users: Grants by user.
        roles: Grants by role.
        name: How the journal names this check.
        timeout_s: See :class:`keel.Check`.
    """

    def __init__(
        self,
        *,
        default: Grant = Grant.all(),  # noqa: B008 - a frozen value, safe to share
        agents: Mapping[str, Grant] | None = None,
        tenants: Mapping[str, Grant] | None = None,
        users: Mapping[str, Grant] | None = None,
        roles: Mapping[str, Grant] | None = None,
        name: str = "tool_permissions",
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(self.decide, name=name, points=("tool_call",), timeout_s=timeout_s)
        if not isinstance(default, Grant):
            raise ConfigurationError(
                f"ToolPermissions(default=...) must be a Grant, got {type(default).__name__}"
            )
        self.default = default
        self.agents = _grants("agents", agents)
        self.tenants = _grants("tenants", tenants)
        self.users = _grants("users", users)
        self.roles = _grants("roles", roles)

    def __repr__(self) -> str:
        return f"ToolPermissions(name={self.name!r})"

    def grants_for(self, request: CheckRequest) -> list[tuple[str, Grant]]:
        """The grants that apply to the request's run, each with how a refusal names it."""
        found: list[tuple[str, Grant]] = []
        if request.agent in self.agents:
            found.append((f"agent '{request.agent}'", self.agents[request.agent]))
        if request.tenant is not None and request.tenant in self.tenants:
            found.append((f"tenant '{request.tenant}'", self.tenants[request.tenant]))
        if request.user is not None and request.user in self.users:
            # Not named: a user id may be an email address, and the model reads this.
            found.append(("this user's grant", self.users[request.user]))
        found += [(f"role '{r}'", self.roles[r]) for r in sorted(request.roles) if r in self.roles]
        return found or [("the default grant", self.default)]

    def decide(self, request: CheckRequest) -> CheckResult:
        """Allow the call if every grant that applies permits it, else deny saying which
        did not."""
        if request.call is None:
            return CheckResult.deny("there is no tool call to check")
        tool = request.call.name
        refusals = [
            _refusal(label, grant, tool, request.side_effects)
            for label, grant in self.grants_for(request)
            if not grant.permits(tool, request.side_effects)
        ]
        if not refusals:
            return CheckResult.allow()
        return CheckResult.deny(f"you may not call {tool}: {'; '.join(refusals)}")


def _refusal(label: str, grant: Grant, tool: str, side_effects: SideEffects | None) -> str:
    if not grant.includes(tool):
        return f"{label} does not include it"
    if side_effects is None:
        return f"{label} is read-only, and {tool} does not declare its side effects"
    return f"{label} is read-only"


def _grants(what: str, grants: Mapping[str, Grant] | None) -> dict[str, Grant]:
    if grants is None:
        return {}
    if not isinstance(grants, Mapping):
        raise ConfigurationError(
            f"ToolPermissions({what}=...) must map names to Grant objects, "
            f"got {type(grants).__name__}"
        )
    checked: dict[str, Grant] = {}
    for key, grant in grants.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(
                f"ToolPermissions({what}=...): keys must be non-empty names, got {key!r}"
            )
        if not isinstance(grant, Grant):
            raise ConfigurationError(
                f"ToolPermissions({what}=...): {what}[{key!r}] must be a Grant, "
                f"got {type(grant).__name__}"
            )
        checked[key] = grant
    return checked
