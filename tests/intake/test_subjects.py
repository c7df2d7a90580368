"""Which subjects a NATS stream's subject patterns take."""

from __future__ import annotations

import pytest

from keel.intake._subjects import covers


@pytest.mark.parametrize(
    ("pattern", "subject", "taken"),
    [
        ("keel.runs", "keel.runs", True),
        ("keel.runs", "keel.runs.dead", False),
        ("keel.runs.*", "keel.runs.dead", True),
        ("keel.runs.*", "keel.runs", False),
        ("keel.runs.*", "keel.runs.dead.letter", False),
        ("keel.>", "keel.runs.dead", True),
        ("keel.>", "keel", False),
        ("*.runs", "keel.runs", True),
        ("keel.run", "keel.runs", False),
    ],
)
def test_a_pattern_takes_the_subjects_it_matches(pattern: str, subject: str, taken: bool) -> None:
    assert covers(pattern, subject) is taken
