"""The keyring: where its keys come from, what it makes, and that the keys never show."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from pydantic import SecretStr

from keel import KeelSettings
from keel.errors import ConfigurationError
from keel.stores import Keyring
from keel.stores._keyring import is_sealed

KEY_A = Keyring.generate_key()
KEY_B = Keyring.generate_key()


def test_a_generated_key_is_a_new_fernet_key_each_time() -> None:
    assert len(KEY_A) == 44
    assert KEY_A != KEY_B
    assert Keyring([KEY_A]).size == 1


@pytest.mark.parametrize("data", ["héllo", b"h\xc3\xa9llo"])
def test_text_and_bytes_come_back_as_text(data: str | bytes) -> None:
    keyring = Keyring([KEY_A])
    sealed = keyring.encrypt(data)
    assert sealed.startswith("enc:1:")
    assert is_sealed(sealed)
    assert keyring.decrypt(sealed) == "héllo"


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old = Keyring([KEY_A]).encrypt("x")
    both = Keyring([KEY_B, KEY_A])
    assert both.decrypt(old) == "x"
    assert not both.is_current(old)

    rotated = both.rotate(old)

    assert both.is_current(rotated)
    assert Keyring([KEY_B]).decrypt(rotated) == "x"
    with pytest.raises(ConfigurationError, match="KEEL_ENCRYPTION_KEYS"):
        Keyring([KEY_A]).decrypt(rotated)


def test_plain_json_is_never_taken_for_encrypted_text() -> None:
    assert not is_sealed('{"type": "run_started"}')
    assert not is_sealed("enc:1: not a token")


def test_keys_come_from_the_environment_comma_separated() -> None:
    settings = KeelSettings.from_environ({"KEEL_ENCRYPTION_KEYS": f" {KEY_B} , {KEY_A} ,"})
    keyring = Keyring.from_settings(settings)
    assert keyring is not None
    assert keyring.size == 2
    assert Keyring([KEY_B]).decrypt(keyring.encrypt("x")) == "x"


def test_keys_come_from_a_file_one_per_line(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# the new key first\n{KEY_B}\n\n{KEY_A}\n")
    keyring = Keyring.from_settings(KeelSettings(encryption_key_file=str(path)))
    assert keyring is not None
    assert keyring.size == 2
    assert Keyring([KEY_B]).decrypt(keyring.encrypt("x")) == "x"


def test_no_key_configured_means_no_keyring() -> None:
    assert Keyring.from_settings(KeelSettings.from_environ({})) is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"encryption_keys": "not-a-key"}, "key 1 of 1 is not a Fernet key"),
        ({"encryption_keys": f"{KEY_A},{KEY_A[:-2]}"}, "key 2 of 2 is not a Fernet key"),
        ({"encryption_keys": " , "}, "holds no key"),
        ({"encryption_keys": KEY_A, "encryption_key_file": "keys"}, "set one of them"),
        ({"encryption_key_file": "/nonexistent/keys"}, "cannot be read"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        Keyring.from_settings(KeelSettings.model_validate(settings))
    assert KEY_A not in str(caught.value)
    assert KEY_A[:-2] not in str(caught.value)
    assert caught.value.__cause__ is None


def test_the_keys_never_show_in_a_repr_and_a_keyring_cannot_be_serialized() -> None:
    settings = KeelSettings(encryption_keys=SecretStr(f"{KEY_A},{KEY_B}"))
    keyring = Keyring.from_settings(settings)
    for shown in (repr(settings), str(settings), repr(keyring), str(keyring)):
        assert KEY_A not in shown
        assert KEY_B not in shown
    assert repr(keyring) == "Keyring(<2 keys>)"
    with pytest.raises(TypeError, match="cannot be serialized"):
        copy.deepcopy(keyring)  # what pickle would call, too
