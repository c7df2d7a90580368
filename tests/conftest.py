"""Test-wide guards: no test may reach the network beyond this machine."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from tests.postgres import admin_conn, postgres_schema, postgres_url
from tests.redis import redis_url

# Fixtures for every test.
__all__ = ["admin_conn", "postgres_schema", "postgres_url", "redis_url"]

# pytester runs pytest on generated test files (tests/testing/test_pytest_plugin.py).
pytest_plugins = ["pytester"]


def _is_local(address: Any) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # Unix sockets and the like never leave the machine
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", maxsplit=1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection to an address that is not loopback, naming it."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not _is_local(address):
            raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _is_local(address):
            raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
