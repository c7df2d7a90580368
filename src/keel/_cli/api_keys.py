"""``keel keys create|list|revoke``: the API keys of ``keel serve``.

Keys live beside the runs (``--db`` or ``KEEL_DB``; on PostgreSQL in ``KEEL_DB_SCHEMA``), so
a key created here works at once in every server on that store, and a revoked one stops
working on its next request. ``create`` prints the key on stdout, alone, once: it is kept
hashed and can never be shown again. When the audit log is on (``KEEL_AUDIT=1``), creating and
revoking keys are recorded in it, by key id (never the key).
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from keel._cli._common import DbOption, JsonOption, dumps, fail, guarded, stderr, stdout
from keel._cli.timeline import format_time
from keel._settings import KeelSettings
from keel.audit import AuditEntry, open_audit_log
from keel.server._keys import SCOPES, ApiKey, KeyStore, Scope
from keel.server._keys_open import open_key_store

__all__ = ["register_api_key_commands"]

T = TypeVar("T")


def _with_keys(db: str | None, work: Callable[[KeyStore, KeelSettings], Awaitable[T]]) -> T:
    """``work`` on the key store beside the store ``db`` names (default: settings)."""
    settings = KeelSettings.from_environ()
    if db is not None:
        settings = settings.model_copy(update={"db": db})
    if settings.db in ("memory", "memory://", ":memory:"):
        fail(
            "keys kept in memory vanish when this command exits; give the store keel serve "
            "uses: --db path/to/keel.db or postgresql://..."
        )

    async def main() -> T:
        keys = open_key_store(settings.db, schema=settings.db_schema)
        try:
            return await work(keys, settings)
        finally:
            await keys.aclose()

    return guarded(lambda: asyncio.run(main()))


async def _audit(settings: KeelSettings, key: ApiKey, action: str) -> None:
    """Record a key's creation or revocation when the audit log is on."""
    if not settings.audit:
        return
    log = open_audit_log(settings.db, schema=settings.db_schema)
    try:
        await log.append(
            AuditEntry(
                actor="cli",
                action=action,
                subject=key.key_id,
                tenant=key.tenant,
                user=getpass.getuser(),
                key_id=key.key_id,
                details={"user": key.user, "scopes": list(key.scopes)},
            )
        )
    finally:
        await log.aclose()


def _described(key: ApiKey) -> dict[str, object]:
    return {
        "key_id": key.key_id,
        "tenant": key.tenant,
        "user": key.user,
        "scopes": list(key.scopes),
        "roles": list(key.roles),
        "name": key.name,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


def create(
    *,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key acts for.")],
    user: Annotated[str, typer.Option("--user", help="The user the key acts as.")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", help=f"What it may do (repeat): {', '.join(SCOPES)}."),
    ],
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="A role its runs carry, for policies (repeat)."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A label, e.g. 'web app'.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key for keel serve and print it, once (it is kept hashed)."""
    for chosen in scope:
        if chosen not in SCOPES:
            fail(f"unknown scope '{chosen}'; use one or more of {', '.join(SCOPES)}")
    scopes: list[Scope] = [s for s in SCOPES if s in scope]

    async def work(keys: KeyStore, settings: KeelSettings) -> tuple[ApiKey, str]:
        made = await keys.create(
            tenant=tenant, user=user, scopes=scopes, roles=role or (), name=name
        )
        await _audit(settings, made.key, "key.created")
        return made.key, made.secret

    key, secret = _with_keys(db, work)
    if as_json:
        stdout().print(dumps({**_described(key), "key": secret}), markup=False)
    else:
        stdout().print(secret, markup=False)
    stderr().print(
        f"created key {key.key_id} for user {key.user} of tenant {key.tenant} "
        f"({', '.join(key.scopes)}); it is shown this once: keep it now",
        markup=False,
        style="dim",
    )


def list_keys(
    *,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the API keys (never the keys themselves), revoked ones too."""

    async def work(keys: KeyStore, settings: KeelSettings) -> list[ApiKey]:
        return await keys.list_keys(tenant=tenant)

    found = _with_keys(db, work)
    out = stdout()
    if as_json:
        out.print(dumps([_described(k) for k in found]), markup=False)
        return
    if not found:
        out.print("no API keys; create one with: keel keys create --tenant T --user U --scope run")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("KEY", "TENANT", "USER", "SCOPES", "ROLES", "NAME", "CREATED", "REVOKED"):
        table.add_column(column, no_wrap=True)
    for key in found:
        table.add_row(
            key.key_id,
            key.tenant,
            key.user,
            ",".join(key.scopes),
            ",".join(key.roles) or "-",
            key.name or "-",
            format_time(key.created_at),
            "-" if key.revoked_at is None else format_time(key.revoked_at),
        )
    out.print(table)


def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (keel keys list shows them).")],
    *,
    db: DbOption = None,
) -> None:
    """Revoke an API key for good: requests with it are refused from now on."""

    async def work(keys: KeyStore, settings: KeelSettings) -> ApiKey | None:
        if not await keys.revoke(key_id):
            return None
        key = await keys.get(key_id)
        assert key is not None
        await _audit(settings, key, "key.revoked")
        return key

    key = _with_keys(db, work)
    if key is None:
        fail(f"there is no active key {key_id}; keel keys list shows the keys")
    stdout().print(f"revoked key {key.key_id} of user {key.user} ({key.tenant})", markup=False)


def register_api_key_commands(group: typer.Typer) -> None:
    """Add ``create``, ``list`` and ``revoke`` to the ``keel keys`` group."""
    group.command("create")(create)
    group.command("list")(list_keys)
    group.command("revoke")(revoke)
