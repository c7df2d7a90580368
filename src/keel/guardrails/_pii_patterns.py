"""The patterns and validators behind PII detection: candidates by regex, kept only if valid.

A regex alone over-matches (any 16 digits look like a card), so every structured type has a
validator: the Luhn checksum for cards, ISO 13616 mod-97 for IBANs, the issued ranges for US
social security numbers, :mod:`ipaddress` for IP addresses, for phone numbers a plausible digit
count, not a date, and either a phone's shape (``+``, an area code in brackets, an extension,
digits in groups) or a word beside it that says so ("call", "phone", "office").
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

__all__ = ["BUILTIN_ENTITIES", "candidates"]

#: The types found by patterns, in priority order: where two overlap, the earlier one wins.
BUILTIN_ENTITIES: tuple[str, ...] = (
    "SECRET",
    "EMAIL",
    "IBAN",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "PHONE",
)

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w@-])"
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
# Compact, or printed in groups of four: both case-insensitive (people type them lower case).
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}"
    r"(?: [A-Za-z0-9]{1,3})?)(?![A-Za-z0-9])"
)
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w@.+/-])"
    r"(?:(?P<plus>\+)\s?\d{1,3}[ .-]?)?"  # +country
    r"(?P<paren>\(\d{1,5}\)[ .-]?)?"  # (area)
    r"\d{1,13}(?:[ .-]\d{1,8}){0,5}"  # groups
    r"(?P<ext>\s?(?:x|ext\.?|extension)\s?\d{1,6})?"
    r"(?![\w@/]|[-.:]\d)",
    re.IGNORECASE,
)
# A word that says a number is a phone number, just before it or just after it.
_PHONE_BEFORE = re.compile(
    r"\b(?:phone|tel|telephone|call|mobile|cell|fax|whatsapp|sms|text me|ring|number)\b\W{0,12}"
    r"(?:\w+\W+){0,2}$",
    re.IGNORECASE,
)
_PHONE_AFTER = re.compile(
    r"^\W{0,3}(?:phone|tel|telephone|mobile|cell|fax|office|home|work)\b", re.I
)
_DATE = re.compile(r"^(\d{1,4})[-. ](\d{1,2})[-. ](\d{1,4})$")
_DATE_PREFIX = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4})\b")
_SSN_SHAPE = re.compile(r"^\d{3}[- ]\d{2}[- ]\d{4}$")
_DOTTED_PHONE = re.compile(r"^(?:\+?\d{1,3}[ .-]?)?\(?\d{2,4}\)?(?:\.\d{2,4}){2,4}$")
_SHORT_SPACED = re.compile(r"^\d{3,4} \d{4}$|^\d{2,3} \d{3} \d{2,4}$")

# Well-known token formats: a prefix that says what the secret is, then enough random text.
_TOKENS = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|[rs]k_(?:live|test)_[0-9A-Za-z]{16,}"  # Stripe
    r"|glpat-[0-9A-Za-z_-]{20,}"  # GitLab
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r")(?![\w-])"
)
_PEM = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
)
# password=..., "api_key": "...", token: ...: the value is the secret, the name stays readable.
_ASSIGNED = re.compile(
    r"(?i)(?<![\w-])[\"']?(?:password|passwd|passphrase|pwd|secret|client[_-]?secret"
    r"|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key|(?:access|auth|bearer"
    r"|refresh|api)[_-]?token|token)[\"']?\s*[:=]\s*(?P<q>[\"']?)(?P<value>[^\s\"',;}]{4,})(?P=q)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _valid_card(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    separators = set(re.sub(r"\d", "", text))
    # One kind of separator at most ("4111 1111-1111" is two numbers, not one card).
    return (
        13 <= len(digits) <= 19 and len(separators) <= 1 and len(set(digits)) > 1 and _luhn(digits)
    )


def _valid_iban(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _valid_ssn(match: re.Match[str]) -> bool:
    area, group, serial = int(match[1]), int(match[3]), int(match[4])
    return 0 < area < 900 and area != 666 and group != 0 and serial != 0


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _looks_like_date(candidate: str) -> bool:
    found = _DATE.match(candidate)
    if not found:
        return False
    first, second, third = (int(g) for g in found.groups())
    lengths = tuple(len(g) for g in found.groups())
    if lengths[0] == 4:  # 2024-01-31
        return 1 <= second <= 12 and 1 <= third <= 31 and lengths[2] <= 2
    if lengths[2] in (2, 4) and lengths[0] <= 2 and lengths[1] <= 2:  # 31.01.2024, 01-31-24
        return (1 <= first <= 31 and 1 <= second <= 12) or (1 <= first <= 12 and 1 <= second <= 31)
    return False


def _valid_phone(match: re.Match[str], text: str) -> bool:
    """Whether a candidate is a phone number: 7 to 15 digits, not a date or an SSN, and, when
    its shape alone does not say so, a word around it that does."""
    candidate, extension = match[0], match["ext"]
    body = (candidate[: len(candidate) - len(extension)] if extension else candidate).strip()
    digits = sum(char.isdigit() for char in body)
    if not 7 <= digits <= 15:
        return False
    start, end = match.span()
    context = _PHONE_BEFORE.search(text[max(0, start - 30) : start]) or _PHONE_AFTER.match(
        text[end:]
    )
    separated = re.search(r"\d[ .-]\d", body) is not None
    if not (separated or match["plus"] or match["paren"] or extension):
        # A bare run of digits is an order number as often as a phone number.
        return 10 <= digits <= 13 and context is not None
    if _looks_like_date(body) or _SSN_SHAPE.match(body) or _DATE_PREFIX.match(body):
        return False  # 2024-05-01, 12.05.2020, 2024-05-01 14:30, 123-45-6789
    spaced_only = " " in body and not re.search(r"[.()+-]", body)
    if digits <= 8 and spaced_only and not (_SHORT_SPACED.match(body) or context):
        return False  # short numbers split by spaces: house numbers and postcodes look the same
    # Dots appear in phone numbers written 555.123.4567, but far more often in other numbers.
    return "." not in body or _DOTTED_PHONE.match(body) is not None


def _from(
    pattern: re.Pattern[str], valid: Callable[[str], bool]
) -> Callable[[str], Iterator[tuple[int, int]]]:
    def find(text: str) -> Iterator[tuple[int, int]]:
        for match in pattern.finditer(text):
            if valid(match[0]):
                yield match.start(), match.end()

    return find


def _ssns(text: str) -> Iterator[tuple[int, int]]:
    for match in _SSN.finditer(text):
        if _valid_ssn(match):
            yield match.start(), match.end()


def _ips(text: str) -> Iterator[tuple[int, int]]:
    for pattern in (_IPV4, _IPV6):
        for match in pattern.finditer(text):
            if ":" in match[0] and not re.search(r"[0-9A-Fa-f]", match[0]):
                continue  # a bare "::" in prose
            if _valid_ip(match[0]):
                yield match.start(), match.end()


def _phones(text: str) -> Iterator[tuple[int, int]]:
    # Something shaped like an IBAN, SSN or IPv4 address that failed its check is a wrong
    # one of those (a typo, an example), not a phone number.
    shaped = [m.span() for p in (_IBAN, _SSN, _IPV4) for m in p.finditer(text)]
    for match in _PHONE.finditer(text):
        start, end = match.span()
        if _valid_phone(match, text) and all(end <= s or start >= e for s, e in shaped):
            yield start, end


def _secrets(text: str) -> Iterator[tuple[int, int]]:
    for pattern in (_TOKENS, _PEM):
        for match in pattern.finditer(text):
            yield match.start(), match.end()
    for match in _ASSIGNED.finditer(text):
        yield match.start("value"), match.end("value")


_FINDERS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "SECRET": _secrets,
    "EMAIL": _from(_EMAIL, lambda _: True),
    "IBAN": _from(_IBAN, _valid_iban),
    "CREDIT_CARD": _from(_CARD, _valid_card),
    "US_SSN": _ssns,
    "IP_ADDRESS": _ips,
    "PHONE": _phones,
}


def candidates(text: str, entity: str) -> Iterator[tuple[int, int]]:
    """The valid ``(start, end)`` spans of one built-in entity type in ``text``."""
    return _FINDERS[entity](text)
