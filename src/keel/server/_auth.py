"""Who is calling: an API key (``Authorization: Bearer`` or ``X-API-Key``), or, while no key
exists at all, the local operator on loopback.

- No key was ever created: requests from loopback are the local operator (no tenant, every
  scope, every run visible); any other client is refused (403), and ``keel serve`` refuses to
  listen beyond loopback.
- Once a key exists (even revoked), every request needs a valid one: 401 without one, with an
  unknown or malformed one, or a revoked one; 403 when it lacks the route's scope.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from keel.server._errors import ApiError
from keel.server._keys import SCOPES, Scope
from keel.server._state import ServerState, request_state

__all__ = [
    "LOCAL",
    "Principal",
    "authenticate",
    "check_scope",
    "is_loopback",
    "presented_key",
    "require",
]

_bearer = HTTPBearer(auto_error=False, description="An API key: keel keys create ...")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is for: the key's tenant, user, scopes and roles, and the key's id
    (``None`` for the local operator, who has every scope and sees every tenant)."""

    tenant: str | None
    user: str | None
    scopes: frozenset[Scope]
    roles: tuple[str, ...] = ()
    key_id: str | None = None

    @property
    def local(self) -> bool:
        """Whether this is the local operator (no keys exist)."""
        return self.key_id is None

    def allows(self, scope: Scope) -> bool:
        """Whether the caller may do what ``scope`` covers (``admin`` covers everything)."""
        return scope in self.scopes or "admin" in self.scopes


LOCAL = Principal(tenant=None, user=None, scopes=frozenset(SCOPES))


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a client's address) is this machine."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def presented_key(connection: HTTPConnection) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    authorization = connection.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    header = connection.headers.get("x-api-key", "").strip()
    return header or None


async def authenticate(state: ServerState, connection: HTTPConnection) -> Principal:
    """The caller of ``connection``, or :class:`ApiError` 401/403 (see the module)."""
    presented = presented_key(connection)
    if not await state.keys.any_keys():
        client = connection.client.host if connection.client is not None else None
        if not is_loopback(client):
            raise ApiError(
                403,
                "loopback_only",
                "no API key exists yet, so this server answers loopback clients only; create "
                "one with: keel keys create --tenant T --user U --scope run --scope read",
            )
        if presented is not None:
            raise ApiError(
                401,
                "invalid_key",
                "this server has no API keys yet, so the key sent is not one of them; send no "
                "key from loopback, or create one with keel keys create",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return LOCAL
    if presented is None:
        raise ApiError(
            401,
            "missing_key",
            "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = await state.keys.verify(presented)
    if key is None:
        raise ApiError(
            401,
            "invalid_key",
            "the API key is unknown, malformed or revoked",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Principal(
        tenant=key.tenant,
        user=key.user,
        scopes=frozenset(key.scopes),
        roles=key.roles,
        key_id=key.key_id,
    )


def check_scope(principal: Principal, scope: Scope) -> None:
    """403 unless ``principal`` has ``scope``."""
    if not principal.allows(scope):
        raise ApiError(
            403,
            "missing_scope",
            f"this API key lacks the '{scope}' scope; create a key with --scope {scope}",
        )


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must have ``scope`` (401/403 otherwise)."""

    async def dependency(
        request: Request,
        state: Annotated[ServerState, Depends(request_state)],
        # Declared so that the OpenAPI document shows both ways of sending a key; the
        # values are read from the request itself.
        _bearer_key: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        _header_key: Annotated[str | None, Security(_header)],
    ) -> Principal:
        principal = await authenticate(state, request)
        check_scope(principal, scope)
        return principal

    return dependency
