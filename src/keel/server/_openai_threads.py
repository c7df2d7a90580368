"""Which Keel thread a client's conversation is, per caller.

A client names its conversation (``X-Keel-Thread``, or ``thread`` in the body). The name
follows the same rule as everywhere else on the server (:mod:`keel.server._tenancy`): it
lives in its tenant's namespace, ``tenant/name``, so the thread ``support-1`` that a client
continues here is the thread ``support-1`` of ``/v1/runs`` and ``/v1/threads``, and two
tenants never share one. Names are letters, digits and ``._:@+=-``: never a ``/``, so no
name of a caller without a tenant meets a tenant's thread.
"""

from __future__ import annotations

import re

from keel.server._models_runs import THREAD_PATTERN
from keel.server._openai_caller import Caller
from keel.server._openai_errors import invalid_request

__all__ = ["MAX_THREAD", "client_thread", "keel_thread"]

MAX_THREAD = 128
"""The longest thread name a client may give."""

_THREAD = re.compile(THREAD_PATTERN)


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
    if not _THREAD.fullmatch(thread):
        raise invalid_request(
            f"'thread' must be 1 to {MAX_THREAD} letters, digits or '._:@+=-', starting "
            "with a letter or digit.",
            param="thread",
        )
    return thread


def keel_thread(thread: str, caller: Caller) -> str:
    """The Keel thread id of the caller's conversation ``thread``: the name in the caller's
    tenant's namespace, as ``/v1/runs`` names it."""
    return thread if caller.tenant is None else f"{caller.tenant}/{thread}"
