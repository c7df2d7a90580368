"""PII detection and redaction: each type found when valid and left alone when not, and each
action applied."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from keel.errors import ConfigurationError
from keel.guardrails import detect_pii, redact_pii


def found(text: str) -> list[tuple[str, str]]:
    return [(m.entity, m.text) for m in detect_pii(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ana.lopez+work@example.co.uk.", [("EMAIL", "ana.lopez+work@example.co.uk")]),
        ("card 4111 1111 1111 1111 on file", [("CREDIT_CARD", "4111 1111 1111 1111")]),
        ("card 5500-0000-0000-0004", [("CREDIT_CARD", "5500-0000-0000-0004")]),
        ("iban GB82 WEST 1234 5698 7654 32 ok", [("IBAN", "GB82 WEST 1234 5698 7654 32")]),
        ("iban de89370400440532013000", [("IBAN", "de89370400440532013000")]),
        ("ssn 123-45-6789", [("US_SSN", "123-45-6789")]),
        ("from 192.168.1.20 today", [("IP_ADDRESS", "192.168.1.20")]),
        ("from 2001:db8::8a2e:370:7334 today", [("IP_ADDRESS", "2001:db8::8a2e:370:7334")]),
        ("call (415) 555-0132 x12", [("PHONE", "(415) 555-0132 x12")]),
        ("call +44 20 7946 0958", [("PHONE", "+44 20 7946 0958")]),
        ("ring 06-12345678-Office", [("PHONE", "06-12345678")]),
        ("call me on 4155550132 tonight", [("PHONE", "4155550132")]),  # bare, but said so
        ("tel. 020 7946 0958", [("PHONE", "020 7946 0958")]),
    ],
)
def test_each_type_is_found_when_valid(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "card 4111 1111-1111 1111",  # mixed separators: not one number
        "iban GB82 WEST 1234 5698 7654 33",  # fails mod 97
        "ssn 000-12-3456",  # area 000 is never issued
        "ssn 666-12-3456",
        "ssn 912-12-3456",
        "ssn 123-00-4567",
        "ssn 123-45-0000",
        "ip 999.10.10.10",
        "at 12:30:45 on the dot",
        "see a :: b",
        "on 2024-05-01 14:30",
        "order 1234567890",  # a bare run of digits is an order number more often than a phone
        "postcode 01 4589",
        "Flat 4, 722 20 40 Harbour Road",  # short groups split by spaces: an address
        "invoice 12.05.2024",
        "user@localhost",
    ],
)
def test_invalid_look_alikes_are_not_found(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8t",
        "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
        "AKIA" + "IOSFODNN7EXAMPLE",
        "xoxb-" + "1234567890-abcdefghij",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlF",
    ],
)
def test_well_known_token_formats_are_secrets(secret: str) -> None:
    assert found(f"token: {secret} (rotate it)") == [("SECRET", secret)]


def test_a_pem_private_key_and_assigned_secrets_are_secrets() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----"
    assert found(f"key:\n{pem}\n") == [("SECRET", pem)]
    assert found('db password=hunter22 and "api_key": "k-9x8y7z"') == [
        ("SECRET", "hunter22"),
        ("SECRET", "k-9x8y7z"),
    ]
    assert found("the password policy is strict") == []


def test_overlapping_finds_keep_the_more_specific_type_and_entities_filter() -> None:
    text = "card 4111111111111111, mail ana@example.com"
    assert [m.entity for m in detect_pii(text)] == ["CREDIT_CARD", "EMAIL"]
    assert [m.entity for m in detect_pii(text, entities=["EMAIL"])] == ["EMAIL"]
    [match] = detect_pii("ana@example.com")
    assert (match.start, match.end) == (0, 15)
    assert "ana@" not in repr(match)


def test_redact_mask_and_hash_replace_values() -> None:
    text = "mail ana@example.com, card 4111 1111 1111 1111"
    assert redact_pii(text).text == "mail [EMAIL], card [CREDIT_CARD]"
    masked = redact_pii(text, {"CREDIT_CARD": "mask"}).text
    assert masked == "mail [EMAIL], card ***************1111"
    plain = hashlib.sha256(b"ana@example.com").hexdigest()[:12]
    assert redact_pii(text, {"EMAIL": "hash"}).text.startswith(f"mail [EMAIL:{plain}]")
    keyed = hmac.new(b"k", b"ana@example.com", hashlib.sha256).hexdigest()[:12]
    assert f"[EMAIL:{keyed}]" in redact_pii(text, {"EMAIL": "hash"}, hash_key="k").text
    assert keyed != plain


def test_block_redacts_and_says_which_types_block() -> None:
    done = redact_pii("ssn 123-45-6789, ana@example.com", {"US_SSN": "block"})
    assert done.is_blocked
    assert done.blocked == ("US_SSN",)
    assert done.text == "ssn [US_SSN], [EMAIL]"
    assert done.entities == ("EMAIL", "US_SSN")
    clean = redact_pii("nothing here")
    assert (clean.text, clean.is_blocked, clean.matches) == ("nothing here", False, ())


def test_bad_configuration_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="use one of"):
        redact_pii("x", {"EMAIL": "shred"})  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="unknown PII entity"):
        redact_pii("x", {"NAME": "redact"})
    with pytest.raises(ConfigurationError, match="default PII action"):
        redact_pii("x", default="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown PII entity"):
        detect_pii("x", entities=["NAME"])
    with pytest.raises(ConfigurationError, match="hash_key"):
        redact_pii("a@b.io", hash_key=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="a str"):
        detect_pii(b"x")  # type: ignore[arg-type]


def test_names_and_places_need_the_presidio_extra() -> None:
    try:
        import presidio_analyzer  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigurationError, match=r"keel-runtime\[presidio\]"):
            detect_pii("Ana lives in Lisbon", entities=["PERSON"])
    else:  # pragma: no cover - only where the extra is installed
        pytest.skip("presidio is installed here")
