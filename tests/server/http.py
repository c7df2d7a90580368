"""Small HTTP helpers of the server tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["settled", "start", "until"]


def start(client: httpx.Client, **body: object) -> httpx.Response:
    """``POST /v1/runs`` of the echo agent, with ``body`` over the defaults."""
    return client.post("/v1/runs", json={"agent": "echo", "input": "hello", **body})


def settled(client: httpx.Client, run_id: str, *, still: tuple[str, ...] = ()) -> dict[str, Any]:
    """The run once it is no longer queued or running (nor in ``still``), polled."""
    while True:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] not in ("queued", "running", *still):
            return run
        time.sleep(0.01)


def until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds, asking again every 10 ms."""
    while not condition():
        time.sleep(0.01)
