"""Prices of model tokens and the cost of a call.

A model with no known price has an *unknown* cost (``None``), never a cost of 0: a run's cost is
unknown as soon as one of its calls is. Users override or extend the table per runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from keel._core.usage import Usage

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """USD per million tokens. Cached input defaults to the input price when not given."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None

    def cost(self, usage: Usage) -> float:
        """The cost of ``usage`` at this price, in USD."""
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_price = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        return (
            (usage.input_tokens - cached) * self.input_per_mtok
            + cached * cached_price
            + usage.output_tokens * self.output_per_mtok
        ) / 1_000_000


_FREE = Price(input_per_mtok=0.0, output_per_mtok=0.0)

#: List prices (USD per million tokens) of common models; override with ``PriceTable``.
DEFAULT_PRICES: Mapping[str, Price] = {
    "openai:gpt-4o": Price(input_per_mtok=2.5, output_per_mtok=10.0, cached_input_per_mtok=1.25),
    "openai:gpt-4o-mini": Price(
        input_per_mtok=0.15, output_per_mtok=0.6, cached_input_per_mtok=0.075
    ),
    "openai:gpt-4.1": Price(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5),
    "openai:gpt-4.1-mini": Price(
        input_per_mtok=0.4, output_per_mtok=1.6, cached_input_per_mtok=0.1
    ),
    "openai:gpt-4.1-nano": Price(
        input_per_mtok=0.1, output_per_mtok=0.4, cached_input_per_mtok=0.025
    ),
    "anthropic:claude-3-5-haiku-latest": Price(
        input_per_mtok=0.8, output_per_mtok=4.0, cached_input_per_mtok=0.08
    ),
    "anthropic:claude-sonnet-4-5": Price(
        input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3
    ),
    "anthropic:claude-opus-4-1": Price(
        input_per_mtok=15.0, output_per_mtok=75.0, cached_input_per_mtok=1.5
    ),
    # Keel's own offline and test models cost nothing.
    "rules": _FREE,
    "scripted": _FREE,
    "function": _FREE,
}


class PriceTable:
    """Looks up prices by model name: exact names first, then ``prefix*`` patterns.

    >>> table = PriceTable({"ollama:*": Price(input_per_mtok=0, output_per_mtok=0)})
    >>> table.cost("ollama:llama3.2", Usage(input_tokens=10))
    0.0
    >>> table.cost("acme:unknown", Usage(input_tokens=10)) is None
    True
    """

    def __init__(
        self, prices: Mapping[str, Price] | None = None, *, include_defaults: bool = True
    ) -> None:
        merged = dict(DEFAULT_PRICES) if include_defaults else {}
        merged.update(prices or {})
        self._exact = {k: v for k, v in merged.items() if not k.endswith("*")}
        # Longest prefix wins, so "openai:gpt-4o-mini*" beats "openai:*".
        self._prefixes = sorted(
            ((k[:-1], v) for k, v in merged.items() if k.endswith("*")),
            key=lambda kv: len(kv[0]),
            reverse=True,
        )

    def price(self, model: str) -> Price | None:
        """The price of ``model``, or ``None`` when it is unknown."""
        found = self._exact.get(model)
        if found is not None:
            return found
        for prefix, price in self._prefixes:
            if model.startswith(prefix):
                return price
        return None

    def cost(self, model: str, usage: Usage) -> float | None:
        """The USD cost of ``usage`` on ``model``, or ``None`` when its price is unknown."""
        price = self.price(model)
        return None if price is None else price.cost(usage)
