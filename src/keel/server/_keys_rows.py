"""One API key as a row of the SQL backends, and back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from keel.server._keys import ApiKey, KeyRow, Scope

__all__ = ["COLUMNS", "row_of", "values_of"]

COLUMNS = (
    "key_id",
    "tenant",
    "user_name",
    "scopes",
    "roles",
    "name",
    "created_at",
    "revoked_at",
    "salt",
    "digest",
)


def values_of(row: KeyRow) -> tuple[Any, ...]:
    """The column values of ``row``, in :data:`COLUMNS` order (lists as JSON text)."""
    key = row.key
    return (
        key.key_id,
        key.tenant,
        key.user,
        json.dumps(list(key.scopes)),
        json.dumps(list(key.roles)),
        key.name,
        key.created_at,
        key.revoked_at,
        row.salt,
        row.digest,
    )


def row_of(values: Sequence[Any]) -> KeyRow:
    """The key whose columns are ``values`` (:data:`COLUMNS` order)."""
    key = ApiKey(
        key_id=str(values[0]),
        tenant=str(values[1]),
        user=str(values[2]),
        scopes=tuple(cast(Scope, s) for s in json.loads(values[3])),
        roles=tuple(str(r) for r in json.loads(values[4])),
        name=None if values[5] is None else str(values[5]),
        created_at=float(values[6]),
        revoked_at=None if values[7] is None else float(values[7]),
    )
    return KeyRow(key, str(values[8]), str(values[9]))
