"""Which Keel thread a client's conversation is, per caller.

A client names its conversation (``X-Keel-Thread``, or ``thread`` in the body). Two tenants
may both call theirs ``support-1``, and one must never read the other's: the Keel thread is
the client's name scoped by the caller, ``tenant/user/name``, with ``%`` and ``/`` escaped in
each part so that no choice of names makes two callers' threads meet. A caller with neither
tenant nor user (a server that authenticates nobody) gets the name itself, escaped the same
way: it never holds a ``/``, so it never meets a scoped thread either.
"""

from __future__ import annotations

import hashlib

from keel.server._openai_caller import Caller
from keel.server._openai_errors import invalid_request

__all__ = ["MAX_THREAD", "client_thread", "keel_thread"]

MAX_THREAD = 100
"""The longest thread name a client may give."""

_MAX_KEEL_THREAD = 200  # what the runtime accepts


def client_thread(in_body: str | None, in_header: str | None) -> str | None:
    """The thread the request names, from its body or its ``X-Keel-Thread`` header; a 400
    naming ``thread`` if it is malformed or the two disagree."""
    if in_body is not None and in_header is not None and in_body != in_header:
        raise invalid_request(
            "The request names two threads: 'thread' in the body and the X-Keel-Thread "
            "header differ; send one.",
            param="thread",
        )
    thread = in_body if in_body is not None else in_header
    if thread is None:
        return None
    if not thread.strip() or len(thread) > MAX_THREAD or not thread.isprintable():
        raise invalid_request(
            f"'thread' must be 1 to {MAX_THREAD} printable characters, not only spaces.",
            param="thread",
        )
    return thread


def _escaped(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


def keel_thread(thread: str, caller: Caller) -> str:
    """The Keel thread id of the caller's conversation ``thread``."""
    if caller.tenant is None and caller.user is None:
        return _escaped(thread)
    scoped = "/".join(_escaped(part or "") for part in (caller.tenant, caller.user, thread))
    if len(scoped) <= _MAX_KEEL_THREAD:
        return scoped
    # Long tenant and user names: a digest, still with a "/", so it meets no unscoped name.
    return "h/" + hashlib.sha256(scoped.encode()).hexdigest()
