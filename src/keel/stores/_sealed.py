"""What a store encrypts with its keyring, and opening it again with a clear error.

Encrypted: every event body and thread message (message contents, tool arguments and results,
answers, errors), and a run record's content fields, :data:`SEALED_FIELDS`. Plain: the rest of
the run record (ids, agent, model, status, times, counts, tokens, cost, ``reason_code``), which
listing, filtering, claiming and retention read in SQL. A value that is not marked as
encrypted is read as it is: rows written before a key was configured stay readable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

from keel.errors import ConfigurationError, StoreError
from keel.ports import RunRecord
from keel.stores._keyring import Keyring, is_sealed

__all__ = ["SEALED_FIELDS", "described", "open_record", "seal", "seal_record", "unseal"]

SEALED_FIELDS = ("input", "output_preview", "reason")
"""The run record's fields that can hold what users, models or tools said."""


def seal(keyring: Keyring | None, text: str) -> str:
    """``text`` encrypted with ``keyring``; as it is without one."""
    return text if keyring is None else keyring.encrypt(text)


def unseal(keyring: Keyring | None, text: str, what: Callable[[], str]) -> str:
    """The plain text of a stored value; ``what()`` names it in the error (``event 3 of run
    'r' in 'keel.db'``) if it is encrypted and ``keyring`` cannot open it."""
    if not is_sealed(text):
        return text
    if keyring is None:
        raise StoreError(
            f"{what()} is encrypted and this store has no encryption key; set "
            "KEEL_ENCRYPTION_KEYS (or KEEL_ENCRYPTION_KEY_FILE) to the key it was written with "
            "(or pass keyring= to the store)"
        )
    try:
        return keyring.decrypt(text)
    except ConfigurationError:
        raise StoreError(
            f"{what()} is encrypted with a key this store does not have (it has "
            f"{keyring.size}); add the key it was written with to KEEL_ENCRYPTION_KEYS "
            "(comma-separated, after the key that encrypts)"
        ) from None


def seal_record(keyring: Keyring | None, record: RunRecord) -> RunRecord:
    """``record`` with its content fields (:data:`SEALED_FIELDS`) encrypted; ``None`` stays
    ``None``."""
    if keyring is None:
        return record
    return dataclasses.replace(
        record,
        input=keyring.encrypt(record.input),
        output_preview=_maybe(keyring.encrypt, record.output_preview),
        reason=_maybe(keyring.encrypt, record.reason),
    )


def open_record(keyring: Keyring | None, record: RunRecord, where: str) -> RunRecord:
    """``record`` as read, with its encrypted fields decrypted."""
    if not any(v is not None and is_sealed(v) for v in (record.input, *_optional(record))):
        return record  # plain: the common case without a keyring, at no cost

    def opened(name: str, value: str) -> str:
        return unseal(keyring, value, lambda: f"the {name} of run '{record.run_id}' {where}")

    return dataclasses.replace(
        record,
        input=opened("input", record.input),
        output_preview=_maybe(partial(opened, "output_preview"), record.output_preview),
        reason=_maybe(partial(opened, "reason"), record.reason),
    )


def _optional(record: RunRecord) -> tuple[str | None, str | None]:
    return record.output_preview, record.reason


def _maybe(change: Callable[[str], str], value: str | None) -> str | None:
    return None if value is None else change(value)


def described(template: str, *args: object) -> Callable[[], str]:
    """A name for :func:`unseal`'s error, formatted only if it is needed."""
    return lambda: template.format(*args)
