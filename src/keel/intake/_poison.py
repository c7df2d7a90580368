"""Messages no retry can turn into a run, and how a dead letter says why."""

from __future__ import annotations

from keel._redact import redact
from keel.errors import KeelError

__all__ = [
    "CODE_HEADER",
    "REASON_HEADER",
    "SOURCE_HEADER",
    "IntakeError",
    "PoisonMessage",
    "reason_text",
]

#: The headers a dead letter carries beside the original body and headers.
CODE_HEADER = "Keel-Reason-Code"
REASON_HEADER = "Keel-Reason"
SOURCE_HEADER = "Keel-Source"

# A reason is one line for a person; a long one (an error quoting a whole input) is cut.
_MAX_REASON = 1000


class PoisonMessage(KeelError):  # noqa: N818 - it names the message, which is what it is
    """A message that can never become a run: not JSON, not an object, a missing or invalid
    field, an unknown agent, an input too long, a request the runtime refuses, or one that
    failed too many times. It goes to the dead-letter destination with ``code`` and
    ``reason`` and is acknowledged, so it never comes back.

    Codes: ``not_json``, ``not_an_object``, ``invalid_field``, ``unknown_agent``,
    ``input_too_long``, ``refused`` (``Runtime.submit`` said no: a bad thread id or key, a
    model without its API key...), ``too_many_failures``.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason_text(reason))
        self.code = code
        self.reason = self.message


class IntakeError(KeelError):
    """The broker could not be reached, or refused what the intake set up (a queue declared
    with other arguments, a stream that does not take a subject)."""

    code = "intake_error"


def reason_text(reason: str) -> str:
    """``reason`` as a dead letter carries it: one line, no password, not too long."""
    text = redact(" ".join(reason.split()))
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
