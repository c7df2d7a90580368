"""Names and places through Presidio, used only if installed (``pip install
'keel-runtime[presidio]'`` plus a spaCy English model).

Patterns cannot tell a name from a word, so these types need a trained model. Presidio's
analyzer loads spaCy's ``en_core_web_lg`` by default; spaCy's models are published on GitHub,
not on PyPI, so the extra cannot pull one in: install it with ``python -m spacy download
en_core_web_lg`` where that is reachable.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cache
from typing import Any

from keel.errors import ConfigurationError

__all__ = ["PRESIDIO_ENTITIES", "presidio_spans"]

#: Keel's names for them, and Presidio's.
PRESIDIO_ENTITIES: tuple[str, ...] = ("PERSON", "LOCATION")
_PRESIDIO_NAMES = {"PERSON": "PERSON", "LOCATION": "LOCATION"}


@cache
def _analyzer() -> Any:
    # One analyzer per process: loading the spaCy model takes seconds. It holds no run state.
    try:
        module = importlib.import_module("presidio_analyzer")
    except ImportError as exc:
        raise ConfigurationError(
            "detecting PERSON or LOCATION needs Presidio: pip install 'keel-runtime[presidio]' "
            "and a spaCy English model (python -m spacy download en_core_web_lg)"
        ) from exc
    try:
        return module.AnalyzerEngine()
    except (OSError, ImportError) as exc:
        raise ConfigurationError(
            "Presidio is installed but its spaCy model is not: python -m spacy download "
            f"en_core_web_lg ({type(exc).__name__})"
        ) from exc


def presidio_spans(text: str, entities: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(start, end, entity)`` for each name or place Presidio finds in ``text``."""
    names = {_PRESIDIO_NAMES[e]: e for e in entities}
    results = _analyzer().analyze(text=text, entities=list(names), language="en")
    return [(int(r.start), int(r.end), names[str(r.entity_type)]) for r in results]
