"""Limits: finite defaults, refusal of values that make no sense, and breach messages."""

from __future__ import annotations

import pytest

from keel._core.limits import LimitBreach, Limits


def test_every_default_is_finite() -> None:
    limits = Limits()
    assert limits.max_steps == 25
    assert limits.max_wall_time_s < float("inf")
    assert limits.max_total_tokens < 10**9


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("max_steps", 0, "Limits.max_steps must be at least 1, got 0"),
        ("max_tool_calls", -1, "Limits.max_tool_calls must be at least 1"),
        ("max_tool_calls_per_turn", 0, "max_tool_calls_per_turn must be at least 1"),
        ("max_total_tokens", 0, "max_total_tokens must be at least 1"),
        ("max_output_retries", -1, "max_output_retries must be 0 or more"),
        ("max_wall_time_s", 0, "must be positive"),
        ("tool_timeout_s", -5, "must be positive"),
    ],
)
def test_nonsense_values_are_refused(field: str, value: float, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        Limits(**{field: value})  # type: ignore[arg-type]


def test_a_breach_names_the_limit_the_value_and_the_fix() -> None:
    breach = LimitBreach(limit="max_wall_time_s", allowed=60, observed=61.25)
    assert breach.code == "limit.max_wall_time_s"
    assert breach.message == (
        "the run reached its max_wall_time_s limit (61.25 of 60); "
        "raise Limits(max_wall_time_s=...) and resume the run to continue"
    )
