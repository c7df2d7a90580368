"""Tool names that model APIs accept, made from names that they refuse.

Model APIs take 1 to 64 letters, digits, ``_`` or ``-`` as a tool's name. Real-world names are
often dotted (``math.factorial``), spaced, or long (generated from an API's paths).
:func:`safe_tool_name` maps any name to an accepted one, deterministically, so that the same
definition gives the same name in every process and after a restart:

- a name that is already accepted is kept as it is;
- every other character becomes ``_`` (``math.factorial`` -> ``math_factorial``);
- a name still longer than 64 characters is cut and ends with ``_`` and 8 hex digits of the
  SHA-256 of the original name, so two long names that share a beginning stay apart.

Two different names can still map to one (``a.b`` and ``a_b``): an agent refuses two tools
with the same name, and says which originals they came from.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_TOOL_NAME", "TOOL_NAME", "safe_tool_name"]

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What model APIs accept as a tool's name."""

MAX_TOOL_NAME = 64
_HASH_CHARS = 8
_REFUSED = re.compile(r"[^A-Za-z0-9_-]")


def safe_tool_name(name: str) -> str:
    """``name`` as model APIs accept it: unchanged when already accepted, else mapped."""
    if TOOL_NAME.match(name):
        return name
    mapped = _REFUSED.sub("_", name) or "tool"
    if len(mapped) <= MAX_TOOL_NAME:
        return mapped
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    return f"{mapped[: MAX_TOOL_NAME - _HASH_CHARS - 1]}_{digest}"
