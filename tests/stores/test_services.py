"""A missing service skips its tests on a developer's machine and fails them in CI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import POSTGRES_URL_ENV
from tests.services import REQUIRE_SERVICES_ENV, port_open, require_service

ROOT = Path(__file__).resolve().parents[2]


def test_a_reachable_service_is_required_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_SERVICES_ENV, "1")
    require_service("Redis at 127.0.0.1:6379", True, "start it")


def test_a_missing_service_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_SERVICES_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"Redis at 127\.0\.0\.1:6379 .*start it"):
        require_service("Redis at 127.0.0.1:6379", False, "start it")


def test_a_missing_service_fails_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(REQUIRE_SERVICES_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"not available; start it .*=1"):
        require_service("Redis at 127.0.0.1:6379", False, "start it")


def test_port_open() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_open("127.0.0.1", port)
    assert not port_open("127.0.0.1", port, timeout_s=0.2)


# A fixture that fails makes pytest report an error (exit status 1), which fails CI.
@pytest.mark.parametrize(("required", "outcome"), [("1", "1 error"), ("0", "1 skipped")])
def test_an_unreachable_postgres_fails_in_ci_and_skips_elsewhere(
    required: str, outcome: str
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        REQUIRE_SERVICES_ENV: required,
        POSTGRES_URL_ENV: f"postgresql://postgres@127.0.0.1:{port}/test",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            "tests/stores/test_contract.py::test_it_is_a_store[postgres]",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert outcome in done.stdout, done.stdout + done.stderr
    assert done.returncode == (1 if required == "1" else 0)
    assert f"PostgreSQL at 127.0.0.1:{port}/test" in done.stdout
    assert POSTGRES_URL_ENV in done.stdout
