"""Identifiers for runs: time-ordered, so that sorting ids sorts runs by creation."""

from __future__ import annotations

import secrets

__all__ = ["new_run_id"]


def new_run_id(now: float) -> str:
    """``run_`` + 12 hex digits of milliseconds since the epoch + 16 random hex digits."""
    return f"run_{int(now * 1000):012x}{secrets.token_hex(8)}"
