"""Limits: finite defaults, refusal of values that make no sense, and breach messages."""

from __future__ import annotations

import pytest

from keel._core.limits import LimitBreach, Limits
from keel.errors import ConfigurationError, KeelError


def test_every_default_is_finite() -> None:
    limits = Limits()
    assert limits.max_steps == 25
    assert limits.max_wall_time_s < float("inf")
    assert limits.max_total_tokens < 10**9


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("max_steps", 0, "Limits.max_steps must be an int of at least 1, got 0"),
        ("max_tool_calls", -1, "Limits.max_tool_calls must be an int of at least 1"),
        ("max_tool_calls_per_turn", 0, "max_tool_calls_per_turn must be an int of at least 1"),
        ("max_total_tokens", 0, "max_total_tokens must be an int of at least 1"),
        ("max_output_retries", -1, "max_output_retries must be an int of at least 0"),
        ("max_tool_result_chars", 0, "max_tool_result_chars must be an int of at least 1"),
        ("max_steps", 2.5, "Limits.max_steps must be an int of at least 1, got 2.5"),
        ("max_wall_time_s", 0, "must be a positive number of seconds"),
        ("tool_timeout_s", -5, "must be a positive number of seconds"),
        ("tool_timeout_s", float("nan"), "must be a positive number of seconds"),
    ],
)
def test_nonsense_values_are_refused_as_keel_configuration_errors(
    field: str, value: float, expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=expected) as caught:
        Limits(**{field: value})  # type: ignore[arg-type]
    assert isinstance(caught.value, KeelError)
    assert isinstance(caught.value, ValueError)  # still a ValueError for older callers


def test_a_breach_names_the_limit_the_value_and_the_fix() -> None:
    breach = LimitBreach(limit="max_wall_time_s", allowed=60, observed=61.25)
    assert breach.code == "limit.max_wall_time_s"
    assert breach.message == (
        "the run reached its max_wall_time_s limit (61.25 of 60); "
        "raise Limits(max_wall_time_s=...) and resume the run to continue"
    )
