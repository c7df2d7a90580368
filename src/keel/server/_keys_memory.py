"""API keys kept in this process only: for tests and for a server on a memory store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from keel.server._keys import KeyRow, KeyStore

__all__ = ["MemoryKeyStore"]


class MemoryKeyStore(KeyStore):
    """A :class:`KeyStore` in a dict; its keys vanish with the process."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        super().__init__(clock=clock)
        self._rows: dict[str, KeyRow] = {}

    def __repr__(self) -> str:
        return "MemoryKeyStore()"

    async def _insert(self, row: KeyRow) -> None:
        self._rows[row.key.key_id] = row

    async def _find(self, key_id: str) -> KeyRow | None:
        return self._rows.get(key_id)

    async def _all(self) -> list[KeyRow]:
        return list(self._rows.values())

    async def _revoke(self, key_id: str, at: float) -> bool:
        row = self._rows.get(key_id)
        if row is None or row.key.revoked:
            return False
        self._rows[key_id] = replace(row, key=replace(row.key, revoked_at=at))
        return True

    async def _count(self) -> int:
        return len(self._rows)
