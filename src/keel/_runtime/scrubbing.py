"""Keeping the secrets a runtime knows out of everything it records.

The runtime knows some secrets: the API keys and passwords in its settings, its encryption
keys, and any value passed as ``Runtime(secrets=...)``. None of them may reach a journal, a
result, an error, the audit log or what the ``keel`` command prints, even when a model puts one
in a tool call (a prompt injection trying to exfiltrate it), a tool returns one, or a provider
echoes one in an error. So every event is scrubbed *before* the run applies it: the secret
becomes ``[REDACTED]`` in the run's state and journal alike (a tool that was handed a secret by
the model gets ``[REDACTED]``), and the input of a new run too.

Checking costs one JSON encoding of each event, done only when there are secrets to look for.

A *redactor* (``Runtime(redact=...)``, e.g. :class:`keel.guardrails.PIIRedactor`) goes further:
it rewrites the text a run records (its input, the model's text, tool results, errors and
reasons) before the run applies it, so personal data is neither stored nor sent on. Tool call
arguments are left alone: the tools need them as the model wrote them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from keel._core.codec import decode_event, encode_event, event_to_dict
from keel._core.eventbase import Event

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "TEXT_FIELDS", "Scrubber", "StreamMask"]

#: The fields of events (and of what they hold) whose text a redactor rewrites: what people
#: and models wrote, and what tools returned. Ids, names and tool call arguments are not text.
TEXT_FIELDS = frozenset(
    {
        "content",
        "input",
        "result",
        "message",
        "reason",
        "output",
        "text",
        "replacement",
        "error",
        "history_summary",
    }
)


def _rewrite(value: Any, redact: Callable[[str], str], inside: bool) -> Any:
    """``value`` with the strings under a text field redacted."""
    if isinstance(value, str):
        return redact(value) if inside else value
    if isinstance(value, list):
        return [_rewrite(item, redact, inside) for item in value]
    if isinstance(value, dict):
        return {
            key: value[key]
            if key == "arguments"
            else _rewrite(value[key], redact, inside or key in TEXT_FIELDS)
            for key in value
        }
    return value


REDACTED = "[REDACTED]"
#: Shorter values are not treated as secrets: masking every "abc" would garble text.
MIN_SECRET_LENGTH = 8


def _forms(secret: str) -> list[bytes]:
    """How ``secret`` may appear in an event's JSON: as is, escaped once (a string field), and
    escaped twice (inside a tool call's JSON arguments, themselves a string field)."""
    once = json.dumps(secret)[1:-1]
    twice = json.dumps(once)[1:-1]
    return sorted({secret.encode(), once.encode(), twice.encode()}, key=len, reverse=True)


class Scrubber:
    """Replaces known secrets with ``[REDACTED]`` in events and text."""

    def __init__(
        self, secrets: Iterable[str] = (), *, redactor: Callable[[str], str] | None = None
    ) -> None:
        found = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(found, key=len, reverse=True)
        self._forms = [form for s in self._secrets for form in _forms(s)]
        self._redactor = redactor

    def __bool__(self) -> bool:
        return bool(self._secrets) or self._redactor is not None

    def __repr__(self) -> str:
        return f"Scrubber(<{len(self._secrets)} secrets>)"

    @property
    def redacts(self) -> bool:
        """Whether a redactor rewrites text (then text cannot be streamed piece by piece)."""
        return self._redactor is not None

    def stream(self) -> StreamMask | None:
        """A mask for one stream of text pieces, or ``None`` when there is no secret."""
        return StreamMask(self._secrets) if self._secrets else None

    def text(self, text: str) -> str:
        """``text`` with every known secret masked (and redacted, with a redactor)."""
        if self._redactor is not None:
            text = self._redactor(text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def event(self, event: Event) -> Event:
        """``event``, or a copy of it with every known secret masked (and its text redacted,
        with a redactor)."""
        if self._redactor is not None:
            data = event_to_dict(event)
            rewritten = _rewrite(data, self._redactor, inside=False)
            if rewritten != data:
                event = decode_event(json.dumps(rewritten))
        if not self._forms:
            return event
        body = encode_event(event)
        if not any(form in body for form in self._forms):
            return event
        for form in self._forms:
            body = body.replace(form, REDACTED.encode())
        return decode_event(body)

    def events(self, events: Sequence[Event]) -> Sequence[Event]:
        """``events`` with every known secret masked (the same sequence when there is nothing
        to look for)."""
        if not self._secrets and self._redactor is None:
            return events
        return [self.event(event) for event in events]


class StreamMask:
    """Masks known secrets in text that arrives in pieces: the last ``longest - 1`` characters
    are held back until the next piece (or :meth:`flush`), so that a secret split across
    pieces is whole when it is masked. A secret that begins in what is let through would end
    in it too: what is held back is shorter than any secret it could begin."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._secrets = secrets
        self._hold = max(len(s) for s in secrets) - 1
        self._pending = ""

    def feed(self, text: str) -> str:
        """What of the text so far may go out now, masked."""
        pending = self._mask(self._pending + text)
        cut = max(0, len(pending) - self._hold)
        self._pending = pending[cut:]
        return pending[:cut]

    def flush(self) -> str:
        """The rest, masked: the stream ended."""
        rest, self._pending = self._mask(self._pending), ""
        return rest

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text
