"""Keeping secrets out of what Keel prints: URLs with their passwords masked."""

from __future__ import annotations

import re

__all__ = ["redact", "redact_url"]

# scheme://user:password@host... -> scheme://user:***@host...
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*):(?P<secret>[^@/?#\s]*)@"
)
# libpq key/value strings: password=secret
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return redact(url)


def redact(text: str) -> str:
    """``text`` with the passwords of any URLs or ``password=`` settings in it masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:***@", text)
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}***", text)
