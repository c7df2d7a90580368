"""What a model call may cost at most, before it is made.

A reservation must cover the call's worst case, so the estimates here err high:

- prompt tokens: :func:`estimate_tokens`, ``ceil(UTF-8 bytes / 3)`` per message plus
  :data:`MESSAGE_OVERHEAD_TOKENS` for each message's framing (role, separators). Tokenizers of
  current models average about 4 bytes of English or code per token, and rarely fewer than 3
  (text in scripts that need several bytes per character packs more bytes into a token). It
  is an estimate, not a bound: a prompt of random symbols can take more tokens than this.
  When the provider reports the real count, the settlement records it.
- output tokens: the call's ``max_tokens``, the most the provider may bill.
- prices: the full input price (the discount for cached input is not counted on).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from keel._core.pricing import Price
from keel.errors import ConfigurationError

__all__ = ["BYTES_PER_TOKEN", "MESSAGE_OVERHEAD_TOKENS", "estimate_tokens", "worst_case_cost"]

#: The bytes of UTF-8 text counted as one token (fewer than any common tokenizer averages).
BYTES_PER_TOKEN = 3
#: Tokens counted for each message's framing.
MESSAGE_OVERHEAD_TOKENS = 8


def estimate_tokens(text: str | Iterable[str]) -> int:
    """A conservative count of the tokens of one message (``str``) or several (their
    texts): ``ceil(utf8_bytes / 3) + 8`` per message.

    >>> estimate_tokens("Hello, world!")
    13
    >>> estimate_tokens(["You are terse.", "Hi"])
    23
    """
    messages = [text] if isinstance(text, str) else list(text)
    total = 0
    for message in messages:
        if not isinstance(message, str):
            raise ConfigurationError(
                f"estimate_tokens takes text or an iterable of texts, got {message!r}"
            )
        total += math.ceil(len(message.encode()) / BYTES_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS
    return total


def worst_case_cost(price: Price, prompt_tokens: int, max_output_tokens: int) -> float:
    """The most a call may cost in USD: ``prompt_tokens`` at the full input price plus
    ``max_output_tokens`` at the output price.

    >>> worst_case_cost(Price(input_per_mtok=2.5, output_per_mtok=10.0), 1_000, 500)
    0.0075
    """
    for name, value in (("prompt_tokens", prompt_tokens), ("max_output_tokens", max_output_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(
                f"{name} must be a whole number of tokens, 0 or more, got {value!r}; a call "
                "without max_tokens has no worst case: set one on the model's settings"
            )
    return (prompt_tokens * price.input_per_mtok + max_output_tokens * price.output_per_mtok) / (
        1_000_000
    )
