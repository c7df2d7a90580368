"""Text analysis for :mod:`keel.models._rules`: words, terms, and values found in a message.

Everything here is pure and deterministic; the regular expressions are compiled once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from keel.models._rules_schema import MISSING, Schema, resolve, schema_type

__all__ = [
    "Analysis",
    "Extractor",
    "ParamKind",
    "is_id_name",
    "name_words",
    "stem",
    "terms",
]

ParamKind = Literal[
    "const", "enum", "email", "id", "array", "money", "number", "boolean", "text", "other"
]

_WORD: Final = re.compile(r"[a-z0-9]+")
_NAME_SPLIT: Final = re.compile(r"[\s_\-./]+|(?<=[a-z0-9])(?=[A-Z])")
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_TOKEN: Final = re.compile(
    r"(?P<email>[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,})"
    rf"|(?P<money>[$€£]\s?{_NUM}|{_NUM}\s?(?:usd|eur|gbp|dollars?|euros?|pounds?|bucks)\b)"
    r"|(?P<word>#?[a-z0-9]+(?:[-_][a-z0-9]+)*(?:\.\d+)?)",
    re.IGNORECASE,
)
_PLAIN_NUMBER: Final = re.compile(r"\d+(?:\.\d+)?")
_SENTENCE_BREAK: Final = re.compile(r"(?<=[.!?])\s+|\n+")
_HASH_EXAMPLE: Final = re.compile(r"['\"`]#\w")

STOP_WORDS: Final = frozenset(
    """a about after again all also am an and any are as at be been before being but by can
    could dear did do does doing done each etc every for from get got had has have having he
    hello her hers hey hi him his how i id if im in into is it its ive just know let like may
    me might mine must my myself need needs no nor not of off ok okay on one only or other our
    out over own per please same shall she should so some such than thank thanks that the their
    them then there these they this those to too under up us very via want wanted was we were
    what when which who whom whose why will with would yes you your yours""".split()  # noqa: SIM905
)

# Words that name the same intent or thing in support-desk language; each maps to the first.
_SYNONYM_GROUPS: Final = (
    ("lookup", "look", "find", "check", "track", "status", "where", "show", "view", "fetch",
     "retrieve", "detail", "info", "information"),
    ("refund", "reimburse", "reimbursement", "chargeback"),
    ("cancel", "cancell", "cancellation"),
    ("create", "open", "new", "raise", "submit"),
    ("ticket", "issue", "complaint", "problem"),
    ("faq", "question", "policy"),
    ("human", "representative", "operator", "agent"),
    ("modify", "change", "update", "edit", "alter"),
    ("delete", "remove"),
    ("email", "mail"),
    ("deliver", "delivery", "arrive", "shipment"),
    ("exchange", "swap", "replace", "replacement"),
)  # fmt: skip

#: Parameter-name words that mark an identifier: its value is a token with a digit in it.
ID_WORDS: Final = frozenset(
    "id ids number no num code sku ref reference key uuid serial zip postcode phone".split()  # noqa: SIM905
)
#: Parameter-name words that mark an amount of money: ``$30`` is preferred over ``30``.
MONEY_WORDS: Final = frozenset(
    "amount price total cost usd eur gbp fee balance charge money paid sum".split()  # noqa: SIM905
)
#: Parameter-name words that mark free text, filled from the user's own words.
TEXT_WORDS: Final = frozenset(
    """body comment comments content description detail details explanation feedback input
    instructions issue keywords message note notes problem prompt q query question reason
    request search subject summary text thought title topic""".split()  # noqa: SIM905
)
#: The free-text parameters that get the best-matching sentence rather than the whole message.
QUERY_WORDS: Final = frozenset({"keywords", "q", "query", "question", "search", "topic"})


def stem(word: str) -> str:
    """A crude stem of a lower-case word: plurals, ``-ed``, ``-ing`` and a final ``e`` dropped.

    Crude on purpose: it only has to send ``orders``/``order``, ``shipped``/``shipping``/``ship``
    and ``created``/``create`` to the same string, and to be easy to predict.
    """
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        base = word[: -len(suffix)]
        if word.endswith(suffix) and len(base) >= 3:
            # shipped -> shipp -> ship, but called -> call and missed -> miss stay whole
            if len(base) >= 4 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]
            word = base
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


_SYNONYMS: Final = {stem(word): group[0] for group in _SYNONYM_GROUPS for word in group}


def term(word: str) -> str | None:
    """The canonical term of a lower-case word, or ``None`` for stop words and stray letters."""
    if len(word) < 2 or word in STOP_WORDS or word.isdigit():
        return None
    stemmed = stem(word)
    return _SYNONYMS.get(stemmed, stemmed)


def terms(text: str) -> frozenset[str]:
    """The canonical terms of a text: lower-cased, stemmed, synonyms merged, stop words out."""
    found = (term(word) for word in _WORD.findall(text.lower()))
    return frozenset(t for t in found if t is not None)


def name_words(name: str) -> list[str]:
    """The words of an identifier: ``lookupOrder``, ``lookup_order`` -> ``["lookup", "order"]``."""
    return [word.lower() for word in _NAME_SPLIT.split(name) if word]


def is_id_name(words: Iterable[str]) -> bool:
    """Whether parameter-name words mark an identifier."""
    return any(word in ID_WORDS for word in words)


@dataclass(frozen=True, slots=True)
class Token:
    """One token of a message, with where it is and what kind of value it holds."""

    index: int
    text: str
    kind: Literal["email", "money", "number", "id", "word"]
    value: str  # the id without its '#', the number without commas or currency
    hashed: bool
    term: str | None  # for word tokens: the canonical term


def _scan(text: str) -> list[Token]:
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        raw = match.group()
        if match.lastgroup == "email":
            tokens.append(Token(len(tokens), raw, "email", raw, hashed=False, term=None))
        elif match.lastgroup == "money":
            digits = re.sub(r"[^\d.]", "", raw.replace(",", ""))
            tokens.append(Token(len(tokens), raw, "money", digits, hashed=False, term=None))
        else:
            hashed = raw.startswith("#")
            bare = raw.lstrip("#")
            if _PLAIN_NUMBER.fullmatch(bare):
                tokens.append(Token(len(tokens), raw, "number", bare, hashed, term=None))
            elif any(ch.isdigit() for ch in bare):
                tokens.append(Token(len(tokens), raw, "id", bare, hashed, term=None))
            else:
                for word in _WORD.findall(bare.lower()):
                    tokens.append(Token(len(tokens), word, "word", word, False, term(word)))
    return tokens


class Analysis:
    """What the rules see in a user message: its tokens, word stems, terms and sentences.

    ``stems`` holds every word's stem, stop words included; ``terms`` the canonical terms.
    """

    __slots__ = (
        "_all_words",
        "_content_words",
        "_sentence_terms",
        "sentences",
        "stems",
        "terms",
        "text",
        "tokens",
    )

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.tokens = _scan(self.text)
        words = [t for t in self.tokens if t.kind == "word"]
        self.stems = frozenset(stem(t.value) for t in words)
        # (token index, stem) of all words, and of content words only, for phrase matching
        self._all_words = [(t.index, stem(t.value)) for t in words]
        self._content_words = [(t.index, stem(t.value)) for t in words if t.term is not None]
        self.terms = frozenset(t.term for t in self.tokens if t.term is not None)
        self.sentences = [s.strip() for s in _SENTENCE_BREAK.split(self.text) if s.strip()]
        self._sentence_terms: list[frozenset[str]] | None = None

    def best_sentence(self, wanted: frozenset[str]) -> str:
        """The first sentence sharing the most terms with ``wanted``; all the text if none does."""
        if len(self.sentences) <= 1:
            return self.text
        if self._sentence_terms is None:
            self._sentence_terms = [terms(sentence) for sentence in self.sentences]
        overlaps = [len(found & wanted) for found in self._sentence_terms]
        best = max(overlaps)
        return self.sentences[overlaps.index(best)] if best else self.text

    def phrase_position(self, phrase: str) -> int | None:
        """The token index where ``phrase`` first occurs, or ``None``.

        Words are compared by stem, first all of them, then only the content words, so that
        "I ordered it by mistake" mentions "ordered by mistake".
        """
        words = _WORD.findall(phrase.lower())
        exact = _find([stem(word) for word in words], self._all_words)
        if exact is not None:
            return exact
        content = [stem(word) for word in words if term(word) is not None]
        return _find(content, self._content_words) if content else None


def _find(wanted: list[str], words: list[tuple[int, str]]) -> int | None:
    size = len(wanted)
    if not size:
        return None
    for start in range(len(words) - size + 1):
        if all(words[start + i][1] == wanted[i] for i in range(size)):
            return words[start][0]
    return None


class Extractor:
    """Finds parameter values in one message, never using the same token for two parameters.

    ``context`` is the terms of the tool being called, used to tell which identifier belongs to
    a parameter named just ``id``. ``strict`` is for filling an output schema, where a wrong
    value is worse than none: identifiers must follow the word they belong to, amounts must
    carry a currency mark, and plain numbers are not taken.
    """

    def __init__(
        self, analysis: Analysis, *, context: frozenset[str] = frozenset(), strict: bool = False
    ) -> None:
        self._analysis = analysis
        self._context = context
        self._strict = strict
        self._used: set[int] = set()

    @staticmethod
    def kind(name: str, schema: Schema) -> ParamKind:
        """What a parameter asks for, judged by its resolved schema and its name."""
        if "const" in schema:
            return "const"
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return "enum"
        words = name_words(name)
        kind = schema_type(schema)
        if kind == "array":
            return "array"
        if kind in ("integer", "number"):
            if is_id_name(words):
                return "id"
            return "money" if any(w in MONEY_WORDS for w in words) else "number"
        if kind == "boolean":
            return "boolean"
        if kind not in ("string", None):
            return "other"
        if schema.get("format") == "email" or "email" in words:
            return "email"
        if schema.get("format") == "uuid" or is_id_name(words):
            return "id"
        return "text" if any(w in TEXT_WORDS for w in words) else "other"

    def extract(
        self, name: str, schema: Schema, root: Schema, *, required: bool, near_only: bool = False
    ) -> Any:
        """The value of parameter ``name`` found in the message, or :data:`MISSING`.

        With ``near_only``, identifiers are only taken right after the word they belong to.
        """
        near_only = near_only or self._strict
        kind = self.kind(name, schema)
        words = name_words(name)
        numeric = schema_type(schema) in ("integer", "number")
        if kind == "const":
            return schema["const"]
        if kind == "enum":
            return self._enum(schema["enum"])
        if kind == "email":
            return self._take(self._unused("email"))
        if kind == "id":
            description = str(schema.get("description") or "")
            hashed = bool(_HASH_EXAMPLE.search(description))
            return self._id(words, numeric=numeric, hashed=hashed, near_only=near_only)
        if kind in ("money", "number"):
            if self._strict:
                pools: tuple[str, ...] = ("money",) if kind == "money" else ()
            else:
                pools = ("money", "number") if kind == "money" else ("number",)
            return self._number(pools, words, integer=schema_type(schema) == "integer")
        if kind == "boolean":
            wanted = [stem(w) for w in words if w not in STOP_WORDS and w != "is"]
            present = bool(wanted) and all(w in self._analysis.stems for w in wanted)
            return True if present else (False if required else MISSING)
        if kind == "text":
            if any(w in QUERY_WORDS for w in words):
                return self._analysis.best_sentence(self._context) or MISSING
            return self._analysis.text or MISSING
        if kind == "array":
            return self._array(words, resolve(schema.get("items"), root), near_only=near_only)
        return MISSING

    def _unused(self, *kinds: str) -> list[Token]:
        return [t for t in self._analysis.tokens if t.kind in kinds and t.index not in self._used]

    def _take(self, candidates: Sequence[Token]) -> Any:
        if not candidates:
            return MISSING
        self._used.add(candidates[0].index)
        return candidates[0].value

    def _id(self, words: list[str], *, numeric: bool, hashed: bool, near_only: bool) -> Any:
        candidates = [t for t in self._unused("id", "number") if "." not in t.value]
        if numeric:
            candidates = [t for t in candidates if t.kind == "number"]
        near = self._near(candidates, words)
        value = self._take(near if near or near_only else candidates)
        if value is MISSING:
            return MISSING
        if numeric:
            return int(value)
        return f"#{value}" if hashed else value

    def _number(self, pools: Sequence[str], words: list[str], *, integer: bool) -> Any:
        for pool in pools:
            # "#123" is an identifier, not a quantity; "quantity 3" beats an earlier number
            candidates = [t for t in self._unused(pool) if not t.hashed]
            for token in self._near(candidates, words) + candidates:
                number = float(token.value)
                if integer and not number.is_integer():
                    continue
                self._used.add(token.index)
                return int(number) if number.is_integer() else number
        return MISSING

    def _enum(self, values: list[Any]) -> Any:
        best: tuple[int, int, int] | None = None
        for order, value in enumerate(values):
            if isinstance(value, str):
                position = self._analysis.phrase_position(value)
                size = len(_WORD.findall(value.lower()))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                numbers = (t.index for t in self._unused("number") if float(t.value) == value)
                position, size = next(numbers, None), 1
            else:
                continue
            if position is not None:
                # earliest mention wins; at the same place, the longer phrase ("no longer needed")
                key = (position, -size, order)
                best = key if best is None or key < best else best
        if best is None:
            return MISSING
        if not isinstance(values[best[2]], str):
            self._used.add(best[0])  # a number token serves one parameter only
        return values[best[2]]

    def _near(self, candidates: list[Token], words: list[str]) -> list[Token]:
        """The candidates written within three words after the thing they name ("order #4512")."""
        owner = {t for w in words if not is_id_name([w]) and (t := term(w))} or self._context
        tokens = self._analysis.tokens
        return [
            c
            for c in candidates
            if any(p.term in owner for p in tokens[max(0, c.index - 3) : c.index])
        ]

    def _array(self, words: list[str], items: Schema, *, near_only: bool) -> Any:
        if isinstance(items.get("enum"), list):
            found = [v for v in items["enum"] if isinstance(v, str) and self._mentions(v)]
            return found or MISSING
        item_kind = self.kind(words[-1] if words else "", items) if items else "other"
        if item_kind == "email" or "emails" in words:
            candidates = self._unused("email")
        elif is_id_name(words) or item_kind == "id":
            candidates = [t for t in self._unused("id", "number") if not t.hashed]
        else:
            return MISSING
        near = self._near(candidates, words)
        chosen = near if near or near_only else candidates
        self._used.update(t.index for t in chosen)
        return [t.value for t in chosen] or MISSING

    def _mentions(self, phrase: str) -> bool:
        return self._analysis.phrase_position(phrase) is not None
