"""Budgets, windows and cost estimates: the pure parts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from keel import Price
from keel.budgets import Budget, estimate_tokens, window_start, worst_case_cost
from keel.budgets._model import from_nanos, to_nanos
from keel.errors import ConfigurationError


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("window", "start"),
    [
        ("hour", "2026-03-14T15:00:00"),
        ("day", "2026-03-14T00:00:00"),
        ("month", "2026-03-01T00:00:00"),
    ],
)
def test_windows_are_utc_calendar_windows(window: str, start: str) -> None:
    assert window_start(window, at("2026-03-14T15:30:59")) == at(start)  # type: ignore[arg-type]


def test_the_total_window_starts_at_zero() -> None:
    assert window_start("total", at("2026-03-14T15:30:59")) == 0.0


def test_a_budget_is_validated() -> None:
    assert Budget("tenant", 5).limit_usd == 5.0
    assert Budget("global", 1.0).key == "global"
    with pytest.raises(ConfigurationError, match="scope must be one of"):
        Budget("team", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="window must be one of"):
        Budget("user", 1.0, window="week")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="limit must be a number"):
        Budget("user", float("nan"))
    with pytest.raises(ConfigurationError, match="limit must be a number"):
        Budget("user", -1.0)
    with pytest.raises(ConfigurationError, match="needs the user's name"):
        Budget("user", 1.0, key="")
    with pytest.raises(ConfigurationError, match="one key, 'global'"):
        Budget("global", 1.0, key="acme")


@given(st.integers(min_value=0, max_value=10**15))
@example(132_762_829_599_804)  # $132,762.83: the multiplication's noise is above a thousandth
def test_whole_nano_dollars_survive_the_round_trip(nanos: int) -> None:
    assert to_nanos(from_nanos(nanos)) == nanos


def test_dollar_amounts_become_exact_nano_dollars_rounded_up() -> None:
    assert to_nanos(0.1) == 100_000_000
    assert to_nanos(0.1) * 3 == to_nanos(0.3)
    assert to_nanos(1e-10) == 1


def test_token_estimates_count_bytes_and_messages() -> None:
    assert estimate_tokens("") == 8
    assert estimate_tokens("abc") == 9
    assert estimate_tokens("abcd") == 10
    assert estimate_tokens("é") == 9  # two bytes
    assert estimate_tokens(["abc", "abc"]) == 18
    with pytest.raises(ConfigurationError, match="iterable of texts"):
        estimate_tokens([1])  # type: ignore[list-item]


def test_the_worst_case_uses_full_input_and_max_output_prices() -> None:
    price = Price(input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3)
    assert worst_case_cost(price, 2_000_000, 1_000_000) == 21.0
    with pytest.raises(ConfigurationError, match="max_output_tokens"):
        worst_case_cost(price, 10, -1)
