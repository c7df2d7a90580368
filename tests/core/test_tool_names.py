"""Tool names mapped to ones model APIs accept: kept, replaced, or cut with a hash."""

from __future__ import annotations

import pytest

from keel._core.tool_names import TOOL_NAME, safe_tool_name


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("lookup_order", "lookup_order"),
        ("get-weather", "get-weather"),
        ("math.factorial", "math_factorial"),
        ("Find the order", "Find_the_order"),
        ("café/menu", "caf__menu"),
        ("", "tool"),
    ],
)
def test_names_are_kept_or_have_refused_characters_replaced(name: str, safe: str) -> None:
    assert safe_tool_name(name) == safe


def test_a_long_name_is_cut_and_ends_with_a_hash_of_the_original() -> None:
    long = "api.v1." + "x" * 80
    other = "api.v1." + "x" * 79 + "y"

    mapped = safe_tool_name(long)

    assert len(mapped) == 64
    assert TOOL_NAME.match(mapped)
    assert mapped.startswith("api_v1_xxx")
    assert mapped == safe_tool_name(long)  # deterministic
    assert mapped != safe_tool_name(other)  # the same beginning, different names
    assert safe_tool_name("a" * 64) == "a" * 64
    assert safe_tool_name("a" * 65) != "a" * 64
