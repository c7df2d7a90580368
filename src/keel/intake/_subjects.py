"""NATS subject patterns: which subjects a stream's subject list takes."""

from __future__ import annotations

__all__ = ["covers"]


def covers(pattern: str, subject: str) -> bool:
    """Whether ``pattern`` (tokens separated by ``.``; ``*`` matches one token, a final ``>``
    one or more) matches the literal ``subject``."""
    wanted, given = pattern.split("."), subject.split(".")
    for index, part in enumerate(wanted):
        if part == ">":
            return len(given) > index
        if index >= len(given) or (part not in ("*", given[index])):
            return False
    return len(wanted) == len(given)
