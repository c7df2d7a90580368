"""Checking what callers hand the runtime: an agent, a run's input, a thread id, who a run
is for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from keel._agent import Agent
from keel.errors import UsageError

__all__ = [
    "MAX_IDEMPOTENCY_KEY",
    "NOBODY",
    "Principal",
    "check_agent",
    "check_idempotency_key",
    "check_input",
    "check_principal",
    "check_thread",
]

_MAX_THREAD_ID = 200
#: The longest idempotency key (Stripe's bound: room for a UUID with any prefix).
MAX_IDEMPOTENCY_KEY = 255
_MAX_NAME = 200
_MAX_ROLES = 50


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a run is for: its tenant, its user and the user's roles (all optional)."""

    tenant: str | None = None
    user: str | None = None
    roles: tuple[str, ...] = ()


#: A run for no tenant or user in particular.
NOBODY = Principal()


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


def check_idempotency_key(key: object) -> str | None:
    """An idempotency key (or ``None``), or a clear error."""
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY:
        shown = repr(key) if not isinstance(key, str) else f"{len(key)} characters"
        raise UsageError(
            f"idempotency_key must be a non-empty str of at most {MAX_IDEMPOTENCY_KEY} "
            f"characters, got {shown}; use a UUID or another id the caller chose for the request"
        )
    if not key.isprintable():
        raise UsageError(
            f"idempotency_key {key!r} contains control characters; use printable text, such as "
            "a UUID"
        )
    return key


def _name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise UsageError(
            f"{what} must be a non-empty str of at most {_MAX_NAME} characters, got {value!r}"
        )
    if not value.isprintable():
        raise UsageError(f"{what} {value!r} contains control characters; use printable text")
    return value


def check_principal(
    tenant: object = None, user: object = None, roles: Iterable[object] | None = None
) -> Principal:
    """Who a run is for, or a clear error (roles are kept sorted and without repeats)."""
    if roles is None:
        roles = ()
    if isinstance(roles, str | bytes):
        raise UsageError(f"roles must be a list of role names, got the single string {roles!r}")
    checked = sorted({_name("a role", role) for role in roles})
    if len(checked) > _MAX_ROLES:
        raise UsageError(f"a run may carry at most {_MAX_ROLES} roles, got {len(checked)}")
    return Principal(
        tenant=None if tenant is None else _name("tenant", tenant),
        user=None if user is None else _name("user", user),
        roles=tuple(checked),
    )
