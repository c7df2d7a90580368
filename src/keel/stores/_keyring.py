"""Encryption at rest: the keys, and text sealed with them.

A :class:`Keyring` holds Fernet keys (AES-128-CBC with an HMAC-SHA256, from ``cryptography``):
the first key encrypts, every key decrypts (``MultiFernet``), so keys are rotated by putting a
new key first, re-encrypting (``keel keys rotate``) and then dropping the old one. What it
encrypts is marked, ``enc:1:`` followed by the Fernet token, so a store tells sealed text from
the plain JSON written before a key was configured (``1`` is the format, for a later change of
scheme). The keys come from the environment or a file (:meth:`Keyring.from_settings`), never
from the database they protect, and never appear in a repr or an error.

``cryptography`` is imported when a keyring is made, so Keel works without the ``encryption``
extra until a key is configured.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import SecretStr

from keel.errors import ConfigurationError, MissingExtraError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

__all__ = ["MARK", "KeySettings", "Keyring", "is_sealed"]

MARK = "enc:1:"
"""The prefix of every value a keyring encrypted."""

# A Fernet token is url-safe base64; plain JSON never starts with the mark.
_SEALED = re.compile(r"enc:1:[A-Za-z0-9_\-]+=*")

_KEYS_FIX = (
    "generate a key with `keel keys generate` and set KEEL_ENCRYPTION_KEYS to it "
    "(several, comma-separated: the first encrypts, all decrypt)"
)


def is_sealed(text: str) -> bool:
    """Whether ``text`` is a value a keyring encrypted (``enc:1:`` and a Fernet token)."""
    return text.startswith(MARK) and _SEALED.fullmatch(text) is not None


class KeySettings(Protocol):
    """Where :meth:`Keyring.from_settings` finds the keys (:class:`keel.KeelSettings`)."""

    @property
    def encryption_keys(self) -> SecretStr | None:
        """``KEEL_ENCRYPTION_KEYS``: keys, comma-separated."""

    @property
    def encryption_key_file(self) -> str | None:
        """``KEEL_ENCRYPTION_KEY_FILE``: a file of keys, one per line."""


class Keyring:
    """Fernet keys that encrypt what a store keeps: the first encrypts, all decrypt.

    Args:
        keys: Fernet keys (44 characters of url-safe base64, as :meth:`generate_key` makes),
            the one to encrypt with first, then older ones still needed to decrypt.

    Raises :class:`keel.errors.ConfigurationError` for a key that is not a Fernet key (without
    showing it) and :class:`keel.errors.MissingExtraError` without ``cryptography``. The keys
    never appear in a repr or an error.
    """

    __slots__ = ("_all", "_first", "_size")

    def __init__(self, keys: Iterable[str | bytes | SecretStr]) -> None:
        fernet_class, multi_class = _fernet()
        given = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
        fernets: list[Fernet] = []
        for number, key in enumerate(given, 1):
            try:
                fernets.append(fernet_class(key.strip()))
            except (ValueError, TypeError, AttributeError):
                # ``from None``: the cause's message could quote the key.
                raise ConfigurationError(
                    f"encryption key {number} of {len(given)} is not a Fernet key (32 random "
                    f"bytes in url-safe base64, 44 characters); {_KEYS_FIX}"
                ) from None
        if not fernets:
            raise ConfigurationError(f"a keyring needs at least one key; {_KEYS_FIX}")
        self._first: Fernet = fernets[0]
        self._all: MultiFernet = multi_class(fernets)
        self._size = len(fernets)

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key, as text (what ``keel keys generate`` prints)."""
        fernet_class, _ = _fernet()
        return fernet_class.generate_key().decode("ascii")

    @classmethod
    def from_settings(cls, settings: KeySettings) -> Keyring | None:
        """The keyring ``KEEL_ENCRYPTION_KEYS`` or ``KEEL_ENCRYPTION_KEY_FILE`` configures
        (``settings`` is a :class:`keel.KeelSettings`); ``None`` if neither is set.

        Raises :class:`keel.errors.ConfigurationError` if both are set, if the file cannot be
        read or holds no key, or for a key that is not a Fernet key.
        """
        inline, path = settings.encryption_keys, settings.encryption_key_file
        if inline is not None and path:
            raise ConfigurationError(
                "both KEEL_ENCRYPTION_KEYS and KEEL_ENCRYPTION_KEY_FILE are set; set one of "
                "them, so that which key encrypts is never in doubt"
            )
        if path:
            return cls(_read_key_file(path))
        if inline is not None:
            keys = [k for k in inline.get_secret_value().split(",") if k.strip()]
            if not keys:
                raise ConfigurationError(f"KEEL_ENCRYPTION_KEYS holds no key; {_KEYS_FIX}")
            return cls(keys)
        return None

    @property
    def size(self) -> int:
        """How many keys the keyring holds."""
        return self._size

    def __repr__(self) -> str:
        return f"Keyring(<{self._size} key{'' if self._size == 1 else 's'}>)"

    def __reduce__(self) -> str:
        # Nothing may carry the keys out of the process by serializing a keyring.
        raise TypeError("a Keyring cannot be serialized: it holds secret keys")

    def encrypt(self, data: bytes | str) -> str:
        """``data`` (text as UTF-8) encrypted with the first key, marked: ``enc:1:<token>``."""
        raw = data.encode() if isinstance(data, str) else data
        return MARK + self._first.encrypt(raw).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The text ``token`` (from :meth:`encrypt`, marked or not) holds.

        Raises :class:`keel.errors.ConfigurationError` if no key of the keyring decrypts it.
        """
        from cryptography.fernet import InvalidToken

        try:
            return self._all.decrypt(token.removeprefix(MARK).encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise self._no_key() from None

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted with the first key (decrypted with any), marked.

        Raises :class:`keel.errors.ConfigurationError` if no key of the keyring decrypts it.
        """
        from cryptography.fernet import InvalidToken

        try:
            fresh = self._all.rotate(token.removeprefix(MARK).encode("ascii"))
        except (InvalidToken, UnicodeError):
            raise self._no_key() from None
        return MARK + fresh.decode("ascii")

    def is_current(self, token: str) -> bool:
        """Whether ``token`` was encrypted with the first key (rotating it changes nothing)."""
        from cryptography.fernet import InvalidToken

        try:
            self._first.decrypt(token.removeprefix(MARK).encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def _no_key(self) -> ConfigurationError:
        return ConfigurationError(
            f"none of the {self._size} encryption key(s) decrypts this value; add the key it "
            "was encrypted with to KEEL_ENCRYPTION_KEYS (comma-separated, after the key that "
            "encrypts)"
        )


def _fernet() -> tuple[type[Fernet], type[MultiFernet]]:
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError as exc:  # pragma: no cover - exercised with cryptography hidden
        raise MissingExtraError(
            package="cryptography", extra="encryption", feature="Encryption at rest"
        ) from exc
    return Fernet, MultiFernet


def _read_key_file(path: str) -> list[str]:
    """The keys in a key file: one per line; blank lines and ``#`` comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(
            f"KEEL_ENCRYPTION_KEY_FILE names '{path}', which cannot be read "
            f"({type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) else 'not UTF-8'})"
            "; point it at a readable file with one key per line"
        ) from None
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise ConfigurationError(
            f"KEEL_ENCRYPTION_KEY_FILE names '{path}', which holds no key; put one key per "
            "line in it (`keel keys generate` makes one), the key that encrypts first"
        )
    return keys
