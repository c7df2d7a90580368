"""Undoing the cheap disguises before the injection rules read a text.

Attackers hide trigger words from filters with tricks a model still reads through: invisible
characters inside words, letters from other scripts that look Latin, full-width or styled
letters, digits for letters ("1gn0re"). :func:`normalize` undoes them and says which it saw,
because using them at all is a signal.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["Normalized", "normalize"]

# Zero-width and other invisible format characters (Unicode category Cf, the common ones).
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
_HIDDEN = re.compile(
    "[A-Za-z][\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]+[A-Za-z]"
)
# Cyrillic and Greek letters that look like Latin ones (NFKC leaves them alone).
_HOMOGLYPHS = str.maketrans(
    "аеорсухіјѕԁԛԝАВЕКМНОРСТХІЈЅαβεικνορτυχΑΒΕΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdqwABEKMHOPCTXIJSabeikvoptuxABEHIKMNOPTYX",
)
_LOOKALIKE = re.compile("[аеорсухіјѕԁԛԝАВЕКМНОРСТХІЈЅαβεικνορτυχΑΒΕΗΙΚΜΝΟΡΤΥΧ]")
_LATIN = re.compile("[A-Za-z]")
_WORD = re.compile(r"\S+")
# Only words mixing letters with digits or @/$ are read as leetspeak, so numbers stay numbers.
_LEET_WORD = re.compile(r"\b(?=[a-z0-9@$]*[a-z])(?=[a-z0-9@$]*[0-9@$])[a-z0-9@$]{3,}\b")
_LEET = str.maketrans("013457@$", "oieastas")
_SPACES = re.compile(r"[ \t\r\f\v]+")
# Typographic apostrophes and quotes, as word processors and phones write them.
_QUOTES = str.maketrans("\u2018\u2019\u201b\u201c\u201d", "'''\"\"")


@dataclass(frozen=True, slots=True)
class Normalized:
    """A text as the rules read it, and the disguises that were undone."""

    text: str
    invisible: bool = False
    homoglyphs: bool = False


def _mixed_script(text: str) -> bool:
    # A look-alike letter inside a word that also has Latin letters: Russian or Greek prose
    # uses these letters too, but not inside English words.
    for match in _WORD.finditer(text):
        word = match[0]
        if _LOOKALIKE.search(word) and _LATIN.search(word):
            return True
    return False


def normalize(text: str) -> Normalized:
    """``text`` folded (NFKC), without invisible characters, look-alikes and light leetspeak,
    with straight quotes, lower case, with runs of spaces collapsed."""
    # Invisible characters inside a word hide it; elsewhere (a BOM, the joiner inside an
    # emoji) they are innocent, and only removed.
    invisible = _HIDDEN.search(text) is not None
    if _INVISIBLE.search(text):
        text = _INVISIBLE.sub("", text)
    folded = unicodedata.normalize("NFKC", text)
    homoglyphs = _mixed_script(folded) if _LOOKALIKE.search(folded) else False
    if homoglyphs:
        folded = folded.translate(_HOMOGLYPHS)
    lowered = folded.lower() if folded.isascii() else folded.translate(_QUOTES).lower()
    lowered = _LEET_WORD.sub(lambda m: m[0].translate(_LEET), lowered)
    return Normalized(_SPACES.sub(" ", lowered), invisible=invisible, homoglyphs=homoglyphs)
