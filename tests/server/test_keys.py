"""The API key store on every backend: a key works once created, only with its secret, and
never after it is revoked; the secret is not stored; keys are shared through the database."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from keel.errors import UsageError
from keel.server import KeyStore, MemoryKeyStore, SQLiteKeyStore, open_key_store
from tests.postgres import drop_schema, new_schema_name


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def keys(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    kind: str = request.param
    if kind == "memory":
        store: KeyStore = MemoryKeyStore()
        yield store
        return
    if kind == "sqlite":
        store = SQLiteKeyStore(tmp_path / "keel.db")
        yield store
        await store.aclose()
        return
    url: str = request.getfixturevalue("postgres_url")
    schema = new_schema_name()
    store = open_key_store(url, schema=schema)
    try:
        yield store
    finally:
        await store.aclose()
        await drop_schema(url, schema)


async def test_a_key_works_only_with_its_own_secret(keys: KeyStore) -> None:
    made = await keys.create(tenant="acme", user="ann@acme.test", scopes=["read", "run"])
    key_id = made.key.key_id

    found = await keys.verify(made.secret)
    wrong = made.secret[:-4] + ("AAAA" if not made.secret.endswith("AAAA") else "BBBB")

    assert found == made.key
    assert (found.tenant, found.user, found.scopes) == ("acme", "ann@acme.test", ("run", "read"))
    assert made.secret.startswith(f"keel_{key_id}_")
    assert await keys.verify(wrong) is None
    assert await keys.verify(f"keel_{'0' * 12}_{made.secret.split('_', 2)[2]}") is None
    assert await keys.verify("Bearer nonsense") is None
    assert made.secret not in repr(made)


async def test_a_revoked_key_stops_working_and_stays_listed(keys: KeyStore) -> None:
    assert not await keys.any_keys()
    made = await keys.create(tenant="acme", user="ann", scopes=["admin"], name="ops")

    assert await keys.revoke(made.key.key_id)

    assert await keys.verify(made.secret) is None
    assert not await keys.revoke(made.key.key_id)  # once
    [listed] = await keys.list_keys()
    assert (listed.key_id, listed.name, listed.revoked) == (made.key.key_id, "ops", True)
    assert await keys.any_keys()  # revoked keys count: requests still need a key


async def test_keys_are_listed_per_tenant(keys: KeyStore) -> None:
    first = await keys.create(tenant="acme", user="ann", scopes=["read"], roles=["support"])
    await keys.create(tenant="globex", user="bob", scopes=["read"])

    [mine] = await keys.list_keys(tenant="acme")

    assert (mine.key_id, mine.roles) == (first.key.key_id, ("support",))
    assert len(await keys.list_keys()) == 2


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"tenant": "a/b", "user": "ann", "scopes": ["run"]}, "a tenant must be"),
        ({"tenant": "acme", "user": "ann smith", "scopes": ["run"]}, "a user must be"),
        ({"tenant": "acme", "user": "ann", "scopes": ["root"]}, "scopes must be one or more"),
        ({"tenant": "acme", "user": "ann", "scopes": []}, "scopes must be one or more"),
        ({"tenant": "acme", "user": "ann", "scopes": ["run"], "name": ""}, "name must be"),
    ],
)
async def test_a_bad_key_is_refused_saying_why(
    keys: KeyStore, options: dict[str, object], problem: str
) -> None:
    with pytest.raises(UsageError, match=problem):
        await keys.create(**options)  # type: ignore[arg-type]
    assert await keys.list_keys() == []


async def test_sqlite_keeps_no_secret_and_shares_keys_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keel.db"
    one, two = SQLiteKeyStore(path), SQLiteKeyStore(path)
    try:
        made = await one.create(tenant="acme", user="ann", scopes=["run"])
        assert await two.verify(made.secret) == made.key
        await one.revoke(made.key.key_id)
        assert await two.verify(made.secret) is None
    finally:
        await one.aclose()
        await two.aclose()
    with sqlite3.connect(path) as conn:
        dumped = "\n".join(conn.iterdump())
    conn.close()
    secret = made.secret.split("_", 2)[2]
    assert made.key.key_id in dumped
    assert secret not in dumped


async def test_postgresql_keeps_no_secret_and_shares_keys(postgres_url: str) -> None:
    schema = new_schema_name()
    one, two = (open_key_store(postgres_url, schema=schema) for _ in range(2))
    try:
        made = await one.create(tenant="acme", user="ann", scopes=["run"])
        assert await two.verify(made.secret) == made.key
        await two.revoke(made.key.key_id)
        assert await one.verify(made.secret) is None
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            rows = await (await conn.execute(f'SELECT * FROM "{schema}".api_keys')).fetchall()
        stored = repr(rows)
        assert made.key.key_id in stored
        assert made.secret.split("_", 2)[2] not in stored
    finally:
        await one.aclose()
        await two.aclose()
        await drop_schema(postgres_url, schema)


def test_an_unknown_location_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown scheme"):
        open_key_store("mysql://db/keel")
