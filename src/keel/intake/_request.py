"""A message's body, read as a request for a run, or refused with the reason.

The body is a JSON object::

    {"agent": "support", "input": "Where is order 1043?", "thread": "customer-42",
     "tenant": "acme", "user": "ana", "roles": ["agent"], "idempotency_key": "order-1043-q1"}

``agent`` and ``input`` are required; the rest are optional. A field this module does not
know is refused rather than ignored: a misspelt ``"thraed"`` would otherwise start the run on
a new thread without a word. Whoever can publish to the queue may name any tenant and user:
the broker is trusted intake (see docs/guide/queue-intake.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from keel.intake._poison import PoisonMessage

__all__ = ["FIELDS", "MAX_KEY", "RunRequest", "derived_key", "parse_request"]

#: The fields a body may have.
FIELDS = ("agent", "input", "thread", "tenant", "user", "roles", "idempotency_key")
#: The longest idempotency key (``Runtime.submit`` refuses longer ones).
MAX_KEY = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """A run a message asks for: what :meth:`keel.Runtime.submit` is called with.

    ``idempotency_key`` is the body's own, else the one the transport derives from the message
    id, so that a redelivered message finds the run it created.
    """

    agent: str
    input: str
    thread: str | None = None
    tenant: str | None = None
    user: str | None = None
    roles: tuple[str, ...] = ()
    idempotency_key: str | None = None


def parse_request(
    body: bytes,
    *,
    agents: Collection[str],
    max_input_chars: int,
    default_key: str | None = None,
) -> RunRequest:
    """The request in ``body``; :class:`PoisonMessage` says why there is none.

    Args:
        body: The message body.
        agents: The names of the agents runs may be asked of.
        max_input_chars: The longest input accepted.
        default_key: The idempotency key when the body names none (from the message id).
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PoisonMessage(
            "not_json",
            f"the body is not JSON ({exc}); send a JSON object such as "
            '{"agent": "support", "input": "..."}',
        ) from None
    if not isinstance(data, dict):
        raise PoisonMessage(
            "not_an_object",
            f"the body is JSON {type(data).__name__}, not an object; send "
            '{"agent": "support", "input": "..."}',
        )
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise PoisonMessage(
            "invalid_field",
            f"unknown field {', '.join(map(repr, unknown))}; the fields are {', '.join(FIELDS)}",
        )
    agent = _text(data, "agent", required=True)
    assert agent is not None
    if agent not in agents:
        known = ", ".join(sorted(agents)) or "none"
        raise PoisonMessage(
            "unknown_agent", f"no agent named {agent!r} is served here (known: {known})"
        )
    text = _text(data, "input", required=True)
    assert text is not None
    if len(text) > max_input_chars:
        raise PoisonMessage(
            "input_too_long",
            f"the input has {len(text)} characters; at most {max_input_chars} are accepted",
        )
    return RunRequest(
        agent=agent,
        input=text,
        thread=_text(data, "thread"),
        tenant=_text(data, "tenant"),
        user=_text(data, "user"),
        roles=_roles(data.get("roles")),
        idempotency_key=_text(data, "idempotency_key") or default_key,
    )


def derived_key(source: str) -> str:
    """An idempotency key from a transport's message id: the id itself, or its SHA-256 if it
    is longer than a key may be."""
    if len(source) <= MAX_KEY:
        return source
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()


def _text(data: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        what = "missing" if value is None else f"{type(value).__name__} {value!r:.40}"
        raise PoisonMessage(
            "invalid_field", f"field {name!r} must be a non-empty string, got {what}"
        )
    return value


def _roles(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise PoisonMessage(
            "invalid_field", f"field 'roles' must be a list of strings, got {value!r:.60}"
        )
    return tuple(value)
