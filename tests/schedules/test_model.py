"""A schedule is checked when it is made, and reads its cron expression in its time zone."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest

from keel.errors import ConfigurationError, MissingExtraError
from keel.schedules import Schedule, planned_run_id


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_an_invalid_cron_expression_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match=r"'61 \* \* \* \*' is not valid.*\*/5"):
        Schedule("s", "61 * * * *", agent="a", input="x")


def test_an_unknown_time_zone_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="schedule 's': timezone 'Mars/Base'"):
        Schedule("s", "* * * * *", agent="a", input="x", timezone="Mars/Base")


@pytest.mark.parametrize("name", ["", "has space", "x" * 101, "-leading"])
def test_a_bad_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        Schedule(name, "* * * * *", agent="a", input="x")


def test_an_empty_agent_or_thread_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="agent"):
        Schedule("s", "* * * * *", agent=" ", input="x")
    with pytest.raises(ConfigurationError, match="thread"):
        Schedule("s", "* * * * *", agent="a", input="x", thread="")


def test_the_cron_expression_is_read_in_the_schedules_time_zone() -> None:
    paris = Schedule("s", "0 9 * * *", agent="a", input="x", timezone="Europe/Paris")
    # 9:00 in Paris is 8:00 UTC in winter and 7:00 UTC in summer.
    assert paris.next_after(at("2024-01-15T00:00:00")) == at("2024-01-15T08:00:00")
    assert paris.next_after(at("2024-07-15T00:00:00")) == at("2024-07-15T07:00:00")


def test_the_latest_due_time_includes_now_itself() -> None:
    every5 = Schedule("s", "*/5 * * * *", agent="a", input="x")
    assert every5.latest_at_or_before(at("2024-01-01T10:05:00")) == at("2024-01-01T10:05:00")
    assert every5.latest_at_or_before(at("2024-01-01T10:09:59")) == at("2024-01-01T10:05:00")
    assert every5.times_between(at("2024-01-01T10:00:00"), at("2024-01-01T11:00:00")) == 12


def test_a_fire_has_the_same_run_id_every_time_and_another_for_another_time() -> None:
    first = planned_run_id("nightly", 1_700_000_100.0)
    assert first == planned_run_id("nightly", 1_700_000_100.0)
    assert first != planned_run_id("nightly", 1_700_000_160.0)
    assert first != planned_run_id("weekly", 1_700_000_100.0)
    assert first.startswith("run_")
    assert len(first) == len("run_") + 28


def test_without_the_server_extra_a_schedule_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=r"keel-runtime\[server\]"):
        Schedule("s", "* * * * *", agent="a", input="x")
