"""A webhook receiver on a free loopback port, for tests: records every request, and can be
told to answer the next N requests with a failure."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the server does and did. ``fail_next(n, status)``: the next n requests get
    ``status`` (with ``retry_after`` as a header, if given)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    _failures: list[tuple[int, str | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def fail_next(self, count: int, status: int = 503, retry_after: str | None = None) -> None:
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def fail_always(self, status: int = 500) -> None:
        self.fail_next(10_000, status)

    def _answer(self) -> tuple[int, str | None]:
        with self._lock:
            return self._failures.pop(0) if self._failures else (200, None)

    def record(self, request: Received) -> None:
        with self._arrived:
            self.received.append(request)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[Received]:
        """Block until ``count`` requests arrived (or fail the test after ``timeout_s``)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.received) >= count, timeout_s):
                raise AssertionError(f"got {len(self.received)} webhook(s), expected {count}")
            return list(self.received)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            status, retry_after = receiver._answer()
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.record(Received(self.path, headers, body))
            self.send_response(status)
            if retry_after is not None:
                self.send_header("retry-after", retry_after)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet

    return Handler


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver listening on 127.0.0.1 at a free port, for the block's duration."""
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
