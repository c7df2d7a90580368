"""The public API of keel.resilience: a sorted ``__all__`` whose names resolve, and wrappers
that are models, so they compose."""

from __future__ import annotations

import keel.resilience
from keel.ports import Model
from keel.resilience import (
    BreakerBoard,
    CircuitBreaker,
    Fallback,
    MemoryBreakerBoard,
    Retrying,
)
from tests.resilience._resilience import Flaky


def test_exports_are_sorted_and_resolve() -> None:
    assert sorted(keel.resilience.__all__) == keel.resilience.__all__
    for name in keel.resilience.__all__:
        assert hasattr(keel.resilience, name), name


def test_every_wrapper_is_a_model_and_they_nest() -> None:
    board = MemoryBreakerBoard()
    chain = Fallback(Retrying(CircuitBreaker(Flaky([], name="a"), board)), Flaky([], name="b"))
    assert isinstance(chain, Model)
    assert isinstance(chain.models[0], Retrying)
    assert chain.name == "fallback(a,b)"
    assert isinstance(board, BreakerBoard)
