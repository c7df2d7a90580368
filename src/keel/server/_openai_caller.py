"""Who calls the OpenAI-compatible endpoint: the tenant, user and roles its runs are for.

Authentication is not this endpoint's business: the server hands :func:`openai_router` a
FastAPI dependency that returns a :class:`Caller`, and every run the endpoint starts carries
that caller's tenant, user and roles (``Runtime.run(tenant=, user=, roles=)``), so checks,
budgets, policies and the audit log see who asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["ANONYMOUS", "Anonymous", "Caller", "anonymous"]


@runtime_checkable
class Caller(Protocol):
    """Who a request is from, as the server's authentication established it."""

    @property
    def tenant(self) -> str | None:
        """The tenant the caller's runs are for (``None``: no tenant)."""
        ...

    @property
    def user(self) -> str | None:
        """The user the caller's runs are for (``None``: no user)."""
        ...

    @property
    def roles(self) -> Sequence[str]:
        """The user's roles, e.g. for :class:`keel.policies.ToolPermissions`."""
        ...


@dataclass(frozen=True, slots=True)
class Anonymous:
    """The caller of a server that authenticates nobody: no tenant, no user, no roles."""

    tenant: str | None = None
    user: str | None = None
    roles: tuple[str, ...] = ()


ANONYMOUS = Anonymous()


async def anonymous() -> Caller:
    """The dependency used when the server gives none: every request is :data:`ANONYMOUS`
    (``async``, so that FastAPI calls it on the event loop, not on a worker thread)."""
    return ANONYMOUS
