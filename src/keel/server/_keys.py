"""API keys: what a key grants, how it is made, and how a presented key is checked.

A key reads ``keel_<key id>_<secret>``. The key id (12 hex digits) is public: it names the
key in listings, logs and the audit log. The secret (32 random bytes, URL-safe base64) is
shown once, when the key is created, and never stored: the store keeps a random salt and
``SHA-256(salt + secret)``. Keys are high-entropy random strings, so one salted hash is
enough (no slow password hash is needed), and checking a key is one lookup by id and one
constant-time comparison.

A key is bound to a tenant, a user and scopes; revoking it is permanent. The backends
(memory, SQLite, PostgreSQL) only keep rows: everything else is here.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

from keel.errors import UsageError

__all__ = [
    "SCOPES",
    "ApiKey",
    "KeyRow",
    "KeyStore",
    "NewKey",
    "Scope",
    "check_name",
    "check_tenant",
    "check_user",
]

Scope = Literal["run", "read", "approve", "admin"]
"""What a key may do: ``run`` (start, cancel and talk to runs), ``read`` (see runs, threads,
events, feedback), ``approve`` (decide on pending calls), ``admin`` (all of these, plus
metrics, semantic health and deleting any user's data of its tenant)."""

SCOPES: tuple[Scope, ...] = get_args(Scope)

_PREFIX = "keel_"
_KEY_ID = re.compile(r"[0-9a-f]{12}")
_PRESENTED = re.compile(r"keel_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{20,100})")
# Tenants name a namespace of threads ("tenant/thread"), so they never contain a slash.
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Users are often e-mail addresses; they appear in URL paths (/v1/users/{user}/data).
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_MAX_NAME = 100


def check_tenant(tenant: object) -> str:
    """A tenant name, or a :class:`keel.errors.UsageError` saying what one looks like."""
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise UsageError(
            f"a tenant must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter "
            f"or digit, got {tenant!r}"
        )
    return tenant


def check_user(user: object) -> str:
    """A user name, or a :class:`keel.errors.UsageError` saying what one looks like."""
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise UsageError(
            f"a user must be 1 to 128 letters, digits, '.', '_', '@', '+' or '-', starting with "
            f"a letter or digit, got {user!r}"
        )
    return user


def check_name(name: object) -> str | None:
    """A key's optional label, or a :class:`keel.errors.UsageError`."""
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        raise UsageError(f"a key's name must be 1 to {_MAX_NAME} characters, got {name!r}")
    if not name.isprintable():
        raise UsageError(f"a key's name must be printable text, got {name!r}")
    return name


def _check_scopes(scopes: Iterable[object]) -> tuple[Scope, ...]:
    if isinstance(scopes, str):
        scopes = [scopes]
    chosen = sorted({str(s) for s in scopes})
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown or not chosen:
        raise UsageError(
            f"scopes must be one or more of {', '.join(SCOPES)}, got {', '.join(unknown) or 'none'}"
        )
    return tuple(s for s in SCOPES if s in chosen)


def _check_roles(roles: Iterable[object]) -> tuple[str, ...]:
    if isinstance(roles, str):
        roles = [roles]
    checked = sorted({str(r) for r in roles})
    for role in checked:
        if not role or len(role) > 200 or not role.isprintable():
            raise UsageError(f"a role must be 1 to 200 printable characters, got {role!r}")
    return tuple(checked)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """An API key as the store describes it: never its secret.

    ``scopes`` say what it may do (:data:`Scope`); ``roles`` are handed to the runs it
    starts (``Runtime.run(roles=...)``), for policies; ``revoked_at`` is when it was revoked
    (``None``: it works).
    """

    key_id: str
    tenant: str
    user: str
    scopes: tuple[Scope, ...]
    roles: tuple[str, ...] = ()
    name: str | None = None
    created_at: float = 0.0
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        """Whether the key was revoked."""
        return self.revoked_at is not None

    def allows(self, scope: Scope) -> bool:
        """Whether the key grants ``scope`` (``admin`` grants every scope)."""
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: its description, and the key itself (``secret``), which is
    shown this once and can never be read again."""

    key: ApiKey
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeyRow:
    """What a backend keeps for a key: its description, the salt and the digest."""

    key: ApiKey
    salt: str
    digest: str


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


class KeyStore(abc.ABC):
    """Where API keys are kept; a backend implements the five row operations.

    Args:
        clock: Gives ``created_at`` and ``revoked_at`` (``time.time`` by default).
    """

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.time
        self._seen_keys = False

    # -- what callers use --------------------------------------------------------------------

    async def create(
        self,
        *,
        tenant: str,
        user: str,
        scopes: Iterable[Scope],
        roles: Iterable[str] = (),
        name: str | None = None,
    ) -> NewKey:
        """Make a key for ``user`` of ``tenant`` with ``scopes``; the returned
        :class:`NewKey` holds the key, which is not kept anywhere."""
        key = ApiKey(
            key_id=secrets.token_hex(6),
            tenant=check_tenant(tenant),
            user=check_user(user),
            scopes=_check_scopes(scopes),
            roles=_check_roles(roles),
            name=check_name(name),
            created_at=self._clock(),
        )
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        await self._insert(KeyRow(key, salt, _digest(salt, secret)))
        self._seen_keys = True
        return NewKey(key, f"{_PREFIX}{key.key_id}_{secret}")

    async def verify(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is, if it is a key of this store that was not revoked;
        ``None`` for anything else (malformed, unknown, wrong secret, revoked)."""
        match = _PRESENTED.fullmatch(presented)
        if match is None:
            return None
        row = await self._find(match["key_id"])
        if row is None:
            return None
        expected = _digest(row.salt, match["secret"])
        if not hmac.compare_digest(expected, row.digest) or row.key.revoked:
            return None
        return row.key

    async def get(self, key_id: str) -> ApiKey | None:
        """The key with this id (revoked or not), or ``None``."""
        if not _KEY_ID.fullmatch(key_id):
            return None
        row = await self._find(key_id)
        return None if row is None else row.key

    async def list_keys(self, *, tenant: str | None = None) -> list[ApiKey]:
        """Every key (of ``tenant`` only, when given), oldest first, revoked ones too."""
        keys = sorted((row.key for row in await self._all()), key=lambda k: k.created_at)
        return [k for k in keys if tenant is None or k.tenant == tenant]

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key for good; ``False`` if there is no such key or it was revoked."""
        if not _KEY_ID.fullmatch(key_id):
            return False
        return await self._revoke(key_id, self._clock())

    async def any_keys(self) -> bool:
        """Whether a key was ever created here (revoked ones count: once keys exist, every
        request needs one, even after all were revoked)."""
        if not self._seen_keys:
            # Keys are never deleted: once true, it stays true without asking again.
            self._seen_keys = await self._count() > 0
        return self._seen_keys

    async def aclose(self) -> None:  # noqa: B027 - a no-op unless the backend holds connections
        """Release the backend's connections."""

    # -- what a backend implements -----------------------------------------------------------

    @abc.abstractmethod
    async def _insert(self, row: KeyRow) -> None:
        """Keep a new key's row."""

    @abc.abstractmethod
    async def _find(self, key_id: str) -> KeyRow | None:
        """The row of ``key_id``, or ``None``."""

    @abc.abstractmethod
    async def _all(self) -> list[KeyRow]:
        """Every row."""

    @abc.abstractmethod
    async def _revoke(self, key_id: str, at: float) -> bool:
        """Mark ``key_id`` revoked at ``at`` unless it is; whether it changed."""

    @abc.abstractmethod
    async def _count(self) -> int:
        """How many keys exist (revoked ones too)."""
