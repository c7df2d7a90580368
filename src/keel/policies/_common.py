"""What the built-in policies share: checking their configuration and counting in words."""

from __future__ import annotations

import re
from typing import Any, Literal

from keel.errors import ConfigurationError

__all__ = ["PolicyVerdict", "plural", "tool_name", "verdict_of"]

PolicyVerdict = Literal["deny", "escalate"]
"""What a limit answers when it is reached: refuse, or let a person decide."""

# The names a tool may have (keel._core.toolspec); a policy naming anything else never matches.
_TOOL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def tool_name(policy: str, value: Any) -> str:
    """``value`` if it can name a tool, else a :class:`ConfigurationError` for ``policy``."""
    if not isinstance(value, str) or not _TOOL.match(value):
        raise ConfigurationError(
            f"{policy}: tool must be a tool's name (1 to 64 letters, digits, '_' or '-'), "
            f"got {value!r}"
        )
    return value


def verdict_of(policy: str, value: Any) -> PolicyVerdict:
    """``value`` if it is ``"deny"`` or ``"escalate"``, else a :class:`ConfigurationError`."""
    if value not in ("deny", "escalate"):
        raise ConfigurationError(f"{policy}: verdict must be 'deny' or 'escalate', got {value!r}")
    return "deny" if value == "deny" else "escalate"


def plural(count: int, noun: str) -> str:
    """``1 time``, ``3 times``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
