"""Guardrails that run offline: personal data and secrets, and prompt injection, as checks.

::

    agent = Agent(
        name="desk",
        model="...",
        tools=[search],
        checks=[
            InjectionGuard(action="fence"),  # user input and tool results
            PIIGuard(actions={"CREDIT_CARD": "block", "EMAIL": "hash"}),  # the final answer
        ],
    )

- :func:`detect_pii` / :func:`redact_pii` (:mod:`keel.guardrails._pii`): e-mail addresses,
  phone numbers, card numbers (Luhn), IBANs (mod 97), US social security numbers, IP
  addresses and secrets (API keys, tokens, private keys, ``password=...``) by patterns with
  validators; names and places through Presidio, with the ``presidio`` extra.
- :func:`detect_injection` (:mod:`keel.guardrails._injection`): rules for the known families
  of prompt-injection attacks over normalized text, in well under a millisecond;
  :func:`fence` wraps untrusted text so a model reads it as data.
- :func:`PIIGuard` and :func:`InjectionGuard` (:mod:`keel.guardrails._guards`): both as
  :class:`keel.Check` objects; :func:`UntrustedToolOutput` fences every tool result, so the
  model always reads tool output as data and the journal says it was marked so.

Both detectors are heuristics: they catch the explicit cases and miss some (see
``docs/guide/guardrails.md`` for what, and ``docs/benchmarks.md`` for how often).
"""

from keel.guardrails._guards import (
    InjectionAction,
    InjectionGuard,
    PIIGuard,
    PIIRedactor,
    UntrustedToolOutput,
)
from keel.guardrails._injection import DEFAULT_THRESHOLD, InjectionResult, detect_injection, fence
from keel.guardrails._pii import ENTITIES, PIIAction, PIIMatch, Redaction, detect_pii, redact_pii

__all__ = [
    "DEFAULT_THRESHOLD",
    "ENTITIES",
    "InjectionAction",
    "InjectionGuard",
    "InjectionResult",
    "PIIAction",
    "PIIGuard",
    "PIIMatch",
    "PIIRedactor",
    "Redaction",
    "UntrustedToolOutput",
    "detect_injection",
    "detect_pii",
    "fence",
    "redact_pii",
]
