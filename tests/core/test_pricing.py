"""Prices and costs: cached tokens, prefix patterns, overrides, and unknown prices."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keel._core.pricing import DEFAULT_PRICES, Price, PriceTable
from keel._core.usage import Usage


def test_cached_input_is_charged_at_its_own_price() -> None:
    price = Price(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5)
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000)
    assert price.cost(usage) == pytest.approx(0.6 * 2.0 + 0.4 * 0.5 + 0.1 * 8.0)


def test_without_a_cached_price_cached_input_costs_as_input() -> None:
    price = Price(input_per_mtok=1.0, output_per_mtok=1.0)
    assert price.cost(Usage(input_tokens=10, cached_input_tokens=10)) == pytest.approx(1e-5)


def test_the_default_table_knows_common_models_and_keels_own() -> None:
    table = PriceTable()
    assert table.price("openai:gpt-4o-mini") == DEFAULT_PRICES["openai:gpt-4o-mini"]
    assert table.cost("rules", Usage(input_tokens=10**6)) == 0.0


def test_unknown_models_have_an_unknown_cost_not_zero() -> None:
    assert PriceTable().cost("acme:mystery", Usage(input_tokens=5)) is None


def test_exact_names_beat_patterns_and_longer_patterns_beat_shorter() -> None:
    table = PriceTable(
        {
            "openai:*": Price(input_per_mtok=1, output_per_mtok=1),
            "openai:gpt-4o-mini*": Price(input_per_mtok=2, output_per_mtok=2),
            "openai:gpt-4o-mini-2024": Price(input_per_mtok=3, output_per_mtok=3),
        },
        include_defaults=False,
    )
    million = Usage(input_tokens=10**6)
    assert table.cost("openai:gpt-4o-mini-2024", million) == 3
    assert table.cost("openai:gpt-4o-mini-x", million) == 2
    assert table.cost("openai:o3", million) == 1
    assert table.cost("anthropic:x", million) is None


def test_overrides_replace_defaults() -> None:
    table = PriceTable({"openai:gpt-4o": Price(input_per_mtok=0, output_per_mtok=0)})
    assert table.cost("openai:gpt-4o", Usage(input_tokens=10**6)) == 0


@given(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=10**9),
)
def test_cost_is_never_negative_and_grows_with_usage(inp: int, cached: int, out: int) -> None:
    price = Price(input_per_mtok=2.5, output_per_mtok=10, cached_input_per_mtok=1.25)
    usage = Usage(input_tokens=inp, cached_input_tokens=min(cached, inp), output_tokens=out)
    more = Usage(input_tokens=inp + 1, cached_input_tokens=min(cached, inp), output_tokens=out)
    assert 0 <= price.cost(usage) <= price.cost(more)
