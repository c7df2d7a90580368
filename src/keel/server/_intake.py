"""Backpressure: a bounded number of run-creating requests per process.

Each ``POST /v1/runs`` (and each run a WebSocket starts) holds a slot from the moment it is
taken until its answer is sent, waits included. When none is free, the request is refused
with 429 and ``Retry-After`` before anything is journaled: a request is either refused whole
or accepted durably (a 202 is sent only once the run is in the store), never half-taken.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from keel.server._errors import ApiError

__all__ = ["Intake"]


class Intake:
    """At most ``capacity`` run-creating requests at once in this process."""

    def __init__(self, capacity: int, *, retry_after_s: int) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self._retry_after = str(retry_after_s)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the block; :class:`ApiError` 429 when all are taken."""
        if self.in_flight >= self.capacity:
            raise ApiError(
                429,
                "too_many_requests",
                f"this server is handling {self.capacity} run requests already; retry after "
                f"{self._retry_after} s",
                headers={"Retry-After": self._retry_after},
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
