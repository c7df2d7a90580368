"""Tests that need a real service (PostgreSQL, Redis, pgbouncer ...) and what to do without one.

On a developer's machine a missing service skips its tests, saying why and how to get it. In CI
(``KEEL_REQUIRE_SERVICES=1``) a missing service fails them: a suite that silently skipped its
PostgreSQL tests would pass without testing what production runs on.
"""

from __future__ import annotations

import os
import socket

import pytest

__all__ = ["REQUIRE_SERVICES_ENV", "port_open", "require_service", "services_required"]

REQUIRE_SERVICES_ENV = "KEEL_REQUIRE_SERVICES"


def services_required() -> bool:
    """Whether a missing service is a failure (CI) rather than a reason to skip."""
    return os.environ.get(REQUIRE_SERVICES_ENV, "") == "1"


def require_service(name: str, reachable: bool, how_to_fix: str) -> None:
    """Return if ``reachable``; otherwise skip the test, or fail it when services are required.

    Args:
        name: What is missing, with where it was looked for, e.g.
            ``"PostgreSQL at 127.0.0.1:5432/test (connection refused)"``.
        reachable: Whether the service answered.
        how_to_fix: What a person should do to get it, e.g. ``"start it with ..."``.
    """
    if reachable:
        return
    message = f"{name} is not available; {how_to_fix}"
    if services_required():
        pytest.fail(
            f"{message} ({REQUIRE_SERVICES_ENV}=1: tests that need services must run here)",
            pytrace=False,
        )
    pytest.skip(f"{message} (set {REQUIRE_SERVICES_ENV}=1 to make this a failure)")


def port_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
