"""What every transport shares: its settings are checked with a clear error, and the backoff
between tries doubles up to its bound."""

from __future__ import annotations

from typing import Any

import pytest

from keel import ConfigurationError
from keel.intake._accepting import IntakeOptions


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ({"prefetch": 0}, "prefetch must be a whole number of at least 1, got 0"),
        ({"max_deliveries": True}, "max_deliveries must be a whole number"),
        ({"concurrency": 2.5}, "concurrency must be a whole number"),
        ({"retry_delay_s": 0}, "retry_delay_s must be a positive number of seconds, got 0"),
        ({"reply_check_s": -1}, "reply_check_s must be a positive number"),
        ({"max_input_chars": "many"}, "max_input_chars must be a whole number"),
    ],
)
def test_a_bad_setting_is_refused_by_name(setting: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        IntakeOptions(**setting)


def test_the_backoff_doubles_from_the_first_delay_up_to_the_bound() -> None:
    options = IntakeOptions(retry_delay_s=0.5, max_retry_delay_s=3.0)
    assert [options.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
