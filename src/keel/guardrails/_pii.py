"""Finding personal data and secrets in text, and redacting them.

Structured types are found by patterns with validators (:mod:`keel.guardrails._pii_patterns`),
in pure Python, with nothing to download. Names and places need a language model: they come
from Presidio when the ``presidio`` extra and a spaCy English model are installed
(:mod:`keel.guardrails._presidio`), and only when asked for by name.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from keel.errors import ConfigurationError
from keel.guardrails._pii_patterns import BUILTIN_ENTITIES, candidates
from keel.guardrails._presidio import PRESIDIO_ENTITIES, presidio_spans

__all__ = [
    "ENTITIES",
    "PIIAction",
    "PIIMatch",
    "Redaction",
    "detect_pii",
    "redact_pii",
]

PIIAction = Literal["redact", "mask", "hash", "block"]
_ACTIONS: tuple[str, ...] = ("redact", "mask", "hash", "block")

#: Every entity type :func:`detect_pii` knows (the last ones need the ``presidio`` extra).
ENTITIES: tuple[str, ...] = BUILTIN_ENTITIES + PRESIDIO_ENTITIES


@dataclass(frozen=True, slots=True)
class PIIMatch:
    """One piece of personal data or secret found: its type and where it is."""

    entity: str
    start: int
    end: int
    text: str

    def __repr__(self) -> str:
        # The value is the sensitive part: keep it out of logs and tracebacks.
        return f"PIIMatch(entity={self.entity!r}, start={self.start}, end={self.end})"


@dataclass(frozen=True, slots=True)
class Redaction:
    """What :func:`redact_pii` did: the new text, what it found, and what blocks it.

    ``blocked`` lists the entity types whose action is ``"block"`` that were found (sorted);
    their values are redacted in ``text`` all the same, so the text never carries them.
    """

    text: str
    matches: tuple[PIIMatch, ...]
    blocked: tuple[str, ...] = ()

    @property
    def is_blocked(self) -> bool:
        """Whether a type whose action is ``"block"`` was found."""
        return bool(self.blocked)

    @property
    def entities(self) -> tuple[str, ...]:
        """The types found, sorted, each once."""
        return tuple(sorted({m.entity for m in self.matches}))

    def __repr__(self) -> str:
        return f"Redaction(entities={self.entities!r}, blocked={self.blocked!r})"


def _entities(entities: Iterable[str] | None) -> tuple[str, ...]:
    if entities is None:
        return BUILTIN_ENTITIES
    if isinstance(entities, str):
        entities = [entities]
    chosen = tuple(dict.fromkeys(entities))
    unknown = [e for e in chosen if e not in ENTITIES]
    if unknown:
        raise ConfigurationError(
            f"unknown PII entity types {unknown!r}: use some of {', '.join(ENTITIES)}"
        )
    return chosen


def detect_pii(text: str, entities: Iterable[str] | None = None) -> list[PIIMatch]:
    """The personal data and secrets in ``text``, in order, never overlapping.

    Args:
        text: What to look through.
        entities: The types to look for (default: every built-in type, ``SECRET`` to
            ``PHONE``; ``PERSON`` and ``LOCATION`` only when named, with the ``presidio``
            extra).

    Where two finds overlap, the more specific type wins (a card number is not also a phone
    number); the order is that of :data:`ENTITIES`.
    """
    if not isinstance(text, str):
        raise ConfigurationError(f"detect_pii needs text (a str), got {type(text).__name__}")
    chosen = _entities(entities)
    found: list[tuple[int, int, str]] = []
    for entity in BUILTIN_ENTITIES:
        if entity in chosen:
            found.extend((start, end, entity) for start, end in candidates(text, entity))
    wanted = [e for e in PRESIDIO_ENTITIES if e in chosen]
    if wanted:
        found.extend(presidio_spans(text, wanted))
    rank = {entity: index for index, entity in enumerate(ENTITIES)}
    found.sort(key=lambda f: (rank[f[2]], f[0], f[0] - f[1]))
    taken: list[tuple[int, int, str]] = []
    for start, end, entity in found:
        if all(end <= s or start >= e for s, e, _ in taken):
            taken.append((start, end, entity))
    taken.sort()
    return [PIIMatch(entity, start, end, text[start:end]) for start, end, entity in taken]


def _hash(value: str, key: bytes | None) -> str:
    data = value.encode()
    if key is None:
        return hashlib.sha256(data).hexdigest()[:12]
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:12]


def _replacement(match: PIIMatch, action: str, key: bytes | None) -> str:
    if action == "mask":
        keep = match.text[-4:] if len(match.text) > 4 else ""
        return "*" * (len(match.text) - len(keep)) + keep
    if action == "hash":
        return f"[{match.entity}:{_hash(match.text, key)}]"
    return f"[{match.entity}]"  # redact, and block (the value never stays)


def check_actions(
    actions: Mapping[str, PIIAction] | None, default: PIIAction
) -> dict[str, PIIAction]:
    """``actions`` validated (entity type -> action), raising a clear error if not."""
    if default not in _ACTIONS:
        raise ConfigurationError(f"default PII action {default!r}: use one of {_ACTIONS}")
    chosen = dict(actions or {})
    for entity, action in chosen.items():
        if entity not in ENTITIES:
            raise ConfigurationError(
                f"actions name an unknown PII entity type {entity!r}: use some of "
                f"{', '.join(ENTITIES)}"
            )
        if action not in _ACTIONS:
            raise ConfigurationError(
                f"action {action!r} for {entity}: use one of {', '.join(_ACTIONS)}"
            )
    return chosen


def _key(hash_key: bytes | str | None) -> bytes | None:
    if hash_key is None or isinstance(hash_key, bytes):
        return hash_key
    if isinstance(hash_key, str):
        return hash_key.encode()
    raise ConfigurationError(f"hash_key must be bytes or str, got {type(hash_key).__name__}")


def redact_pii(
    text: str,
    actions: Mapping[str, PIIAction] | None = None,
    default: PIIAction = "redact",
    *,
    entities: Iterable[str] | None = None,
    hash_key: bytes | str | None = None,
) -> Redaction:
    """``text`` with its personal data and secrets replaced, type by type.

    Args:
        text: What to redact.
        actions: Entity type -> ``"redact"`` (``[EMAIL]``), ``"mask"`` (all but the last 4
            characters become ``*``), ``"hash"`` (``[EMAIL:`` + 12 hex digits of
            HMAC-SHA256 with ``hash_key``, or SHA-256 without one, ``]``: equal values give
            equal tags, so a model can still tell them apart) or ``"block"`` (the result says
            the text is blocked, and the value is redacted).
        default: The action for types not in ``actions``.
        entities: The types to look for (see :func:`detect_pii`).
        hash_key: The key for ``"hash"``; without one, short values such as phone numbers
            can be recovered from their hash by trying them all.
    """
    chosen = check_actions(actions, default)
    key = _key(hash_key)
    matches = detect_pii(text, entities)
    parts: list[str] = []
    cursor = 0
    blocked: set[str] = set()
    for match in matches:
        action = chosen.get(match.entity, default)
        if action == "block":
            blocked.add(match.entity)
        parts.append(text[cursor : match.start])
        parts.append(_replacement(match, action, key))
        cursor = match.end
    parts.append(text[cursor:])
    return Redaction("".join(parts), tuple(matches), tuple(sorted(blocked)))
