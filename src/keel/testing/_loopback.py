"""A real HTTP/1.1 server on 127.0.0.1 with scripted replies and injectable faults.

The provider servers (:mod:`keel.testing._openai_server`, :mod:`keel.testing._anthropic_server`)
build on :class:`LoopbackServer`: they only say how a reply looks on their wire. Everything else
is here: the listening socket on an ephemeral port, one thread per connection, a record of every
request, the reply script, and faults (error statuses, delays, malformed bodies, cut streams),
either queued one per request or drawn at a seeded rate for chaos tests.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import random
import re
import socket
import socketserver
import sys
import threading
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from keel._core.usage import Usage

__all__ = [
    "Fault",
    "LoopbackServer",
    "RecordedRequest",
    "Reply",
    "split_arguments",
    "split_text",
]

FaultKind = Literal["status", "delay", "malformed_json", "cut_stream", "context_window"]
Event = tuple[str | None, Any]
"""An SSE event to send: its name (or ``None``) and its data (JSON-encoded unless a str)."""

_INVALID = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """Something going wrong with one request. Build one with the class methods."""

    kind: FaultKind
    status_code: int = 500
    retry_after: float | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0
    after_events: int = 0

    @classmethod
    def status(
        cls,
        code: int,
        retry_after: float | str | None = None,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with HTTP ``code``; ``body`` (JSON if not a str) defaults to the provider's
        error shape, and ``retry_after`` (seconds or an HTTP-date) sets ``Retry-After``.

        ``Fault.status(200, body=...)`` sends any raw answer, e.g. one the script cannot make.
        """
        return cls(
            kind="status",
            status_code=code,
            retry_after=retry_after,
            body=body,
            headers=dict(headers or {}),
        )

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Hold the request ``seconds`` before answering normally (to trigger timeouts)."""
        return cls(kind="delay", seconds=seconds)

    @classmethod
    def malformed_json(cls) -> Fault:
        """Answer 200 with a body (or, when streaming, an event) that is not JSON."""
        return cls(kind="malformed_json")

    @classmethod
    def cut_stream(cls, after_events: int = 0) -> Fault:
        """Send ``after_events`` SSE events (or half the JSON body), then close the socket."""
        return cls(kind="cut_stream", after_events=after_events)

    @classmethod
    def context_window(cls) -> Fault:
        """Answer with the provider's own "prompt too long for the context window" error."""
        return cls(kind="context_window", status_code=400)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A scripted answer. ``tool_calls`` holds ``(name, raw JSON arguments)`` pairs."""

    text: str | None = None
    tool_calls: tuple[tuple[str, str], ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request the server received. Header names are lower-case; ``body`` is parsed JSON
    (``None`` if there was no body or it was not JSON)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm and delayed ACKs that
    # costs ~40 ms per answer.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self, add=False)

    def do_GET(self) -> None:
        self.server.owner._serve(self, "GET")

    def do_POST(self) -> None:
        self.server.owner._serve(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: test output is no place for access logs."""

    def send_body(
        self,
        status: int,
        content: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        cut: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(content)))
        extra = dict(headers or {})
        if not any(name.lower() == "content-type" for name in extra):
            extra["Content-Type"] = content_type
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        # A cut answer sends half the promised body, then the connection closes.
        self.wfile.write(content[: len(content) // 2] if cut else content)
        self.close_connection = self.close_connection or cut

    def send_json(self, status: int, body: Any, **options: Any) -> None:
        self.send_body(status, json.dumps(body).encode(), **options)

    def send_events(self, events: list[Event], cut: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for sent, (name, data) in enumerate(events):
            if cut is not None and sent >= cut:
                # No terminating zero-length chunk: the client sees the body end mid-stream.
                self.close_connection = True
                return
            text = data if isinstance(data, str) else json.dumps(data)
            frame = ((f"event: {name}\n" if name else "") + f"data: {text}\n\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        self.wfile.write(b"0\r\n\r\n")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: LoopbackServer, port: int) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve our name with getfqdn(): a DNS lookup, not wanted.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up is routine in fault tests; anything else is a bug worth keeping.
        if not isinstance(sys.exc_info()[1], OSError):
            self.owner.errors.append(traceback.format_exc())


class LoopbackServer(abc.ABC):
    """A provider-shaped HTTP server on ``127.0.0.1`` for tests, run in background threads.

    Use it as a context manager (``with`` or ``async with``), or call :meth:`start` and
    :meth:`stop`. ``api_key``, when set, is required the way the provider requires it.
    ``fail_rate`` answers that share of requests (drawn with ``random.Random(seed)``) with one
    of ``chaos_faults``; queued faults (:meth:`add_fault`) come first, one per request.
    Unexpected server-side exceptions are collected in :attr:`errors`.
    """

    base_path = ""
    chat_path = ""

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str | None = None,
        model: str = "loopback-model",
        fail_rate: float = 0.0,
        chaos_faults: Sequence[Fault] = (Fault.status(500),),
        seed: int = 0,
    ) -> None:
        self.api_key = api_key
        self.model = model
        self.errors: list[str] = []
        self._port = port
        self._fail_rate = fail_rate
        self._chaos_faults = tuple(chaos_faults)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._replies: deque[Reply] = deque()
        self._faults: deque[Fault] = deque()
        self._answered = 0
        self._active: dict[_Handler, threading.Thread] = {}
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a port and serve in a background thread."""
        if self._httpd is None:
            self._stopping.clear()
            self._httpd = _HTTPServer(self, self._port)
            self._port = self._httpd.server_address[1]
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed requests, close open connections and join threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            self._stopping.set()
            active = list(self._active.items())
        for handler, _ in active:
            _hang_up(handler)
        httpd.server_close()
        for _, thread in active:
            thread.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        # Joining handler threads must not block the loop a client may still be running on.
        await asyncio.to_thread(self.stop)

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """The URL to give the provider's model class as ``base_url``."""
        return self.root_url + self.base_path

    # -- script -------------------------------------------------------------------------------

    def add_reply(
        self,
        text: str | None = None,
        *,
        tool_calls: Sequence[tuple[str, Mapping[str, Any] | str]] = (),
        usage: tuple[int, int] | Usage | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """Queue the answer to the next successful request.

        Tool arguments given as a mapping are JSON-encoded; a str is sent as is (to script
        malformed arguments). ``usage`` is ``(input_tokens, output_tokens)`` or a full Usage.
        """
        calls = tuple(
            (name, args if isinstance(args, str) else json.dumps(args)) for name, args in tool_calls
        )
        if isinstance(usage, tuple):
            usage = Usage(requests=1, input_tokens=usage[0], output_tokens=usage[1])
        reply = Reply(text=text, tool_calls=calls, usage=usage, finish_reason=finish_reason)
        with self._lock:
            self._replies.append(reply)

    def add_fault(self, *faults: Fault) -> None:
        """Queue faults; each applies to one request, in order."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order of arrival."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until ``count`` requests have arrived (or ``timeout`` seconds pass); return
        them. Call it through ``asyncio.to_thread`` from async code."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self._requests) >= count, timeout)
            return list(self._requests)

    @property
    def pending_replies(self) -> int:
        """Scripted replies not used yet."""
        with self._lock:
            return len(self._replies)

    # -- provider hooks -----------------------------------------------------------------------

    @abc.abstractmethod
    def render_json(self, reply: Reply, request: Any, number: int) -> dict[str, Any]:
        """The non-streaming response body for ``reply``; ``number`` makes ids unique."""

    @abc.abstractmethod
    def render_events(self, reply: Reply, request: Any, number: int) -> list[Event]:
        """The SSE events of a streamed ``reply``, in order."""

    @abc.abstractmethod
    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """The provider's error body for ``status``."""

    @abc.abstractmethod
    def context_window_body(self) -> dict[str, Any]:
        """The provider's 400 body for a prompt longer than the context window."""

    @abc.abstractmethod
    def authorized(self, headers: Mapping[str, str]) -> bool:
        """Whether the request carries ``api_key`` the provider's way."""

    @abc.abstractmethod
    def invalid(self, body: Any, headers: Mapping[str, str]) -> str | None:
        """Why a chat request would be rejected with 400, or ``None`` if it is fine."""

    @abc.abstractmethod
    def last_user_text(self, body: Any) -> str:
        """The text of the last user message (for the default echo reply)."""

    def get(self, path: str) -> dict[str, Any] | None:
        """The body for ``GET path``, or ``None`` for 404."""
        return None

    # -- serving ------------------------------------------------------------------------------

    def _track(self, handler: _Handler, *, add: bool) -> None:
        with self._lock:
            if not add:
                self._active.pop(handler, None)
            elif self._stopping.is_set():  # accepted just as stop() took its snapshot
                _hang_up(handler)
            else:
                self._active[handler] = threading.current_thread()

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            if self._fail_rate and self._random.random() < self._fail_rate:
                return self._random.choice(self._chaos_faults)
            return None

    def _next_reply(self, body: Any) -> tuple[Reply, int]:
        with self._lock:
            reply = self._replies.popleft() if self._replies else None
            self._answered += 1
            number = self._answered
        if reply is None:
            text = f"echo: {self.last_user_text(body)}"
            reply = Reply(text=text)
        if reply.usage is None:
            # A rough, deterministic count: four characters of prompt make a token.
            chars = len(json.dumps(body.get("messages", []) if isinstance(body, dict) else []))
            out = len((reply.text or "").split()) + 10 * len(reply.tool_calls)
            usage = Usage(requests=1, input_tokens=max(1, chars // 4), output_tokens=max(1, out))
            reply = replace(reply, usage=usage)
        return reply, number

    def _serve(self, handler: _Handler, method: str) -> None:
        try:
            self._answer(handler, method)
        except OSError:  # the client went away (timeouts, cut tests): nothing left to answer
            handler.close_connection = True

    def _answer(self, handler: _Handler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = _INVALID
        path = urlsplit(handler.path).path
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self._requests.append(
                RecordedRequest(method, path, headers, None if body is _INVALID else body)
            )
            self._arrived.notify_all()
        if method == "GET" or path != self.chat_path:
            found = self.get(path) if method == "GET" else None
            if not self.authorized(headers):
                handler.send_json(401, self.error_body(401, "invalid API key"))
            elif found is None:
                handler.send_json(404, self.error_body(404, f"no route for {method} {path}"))
            else:
                handler.send_json(200, found)
            return
        fault = self._next_fault()
        if fault is not None and fault.kind == "delay":
            if self._stopping.wait(fault.seconds):
                handler.close_connection = True
                return
            fault = None
        if fault is not None and fault.kind in ("status", "context_window"):
            self._send_fault(handler, fault)
            return
        problem = "the body is not JSON" if body is _INVALID else self.invalid(body, headers)
        if not self.authorized(headers):
            handler.send_json(401, self.error_body(401, "invalid API key"))
            return
        if problem is not None:
            handler.send_json(400, self.error_body(400, problem))
            return
        reply, number = self._next_reply(body)
        kind = fault.kind if fault is not None else None
        cut = fault.after_events if fault is not None and kind == "cut_stream" else None
        if body.get("stream") is True:
            events = self.render_events(reply, body, number)
            if kind == "malformed_json":
                events = [(None, "{this is not json"), *events]
            handler.send_events(events, cut)
        elif kind == "malformed_json":
            handler.send_body(200, b'{"id": "oops", this is not json')
        else:
            body = self.render_json(reply, body, number)
            handler.send_json(200, body, cut=cut is not None)

    def _send_fault(self, handler: _Handler, fault: Fault) -> None:
        if fault.kind == "context_window":
            handler.send_json(400, self.context_window_body())
            return
        headers = dict(fault.headers)
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        body = fault.body
        if isinstance(body, str):
            handler.send_body(
                fault.status_code, body.encode(), headers=headers, content_type="text/plain"
            )
            return
        if body is None:
            body = self.error_body(fault.status_code, f"simulated HTTP {fault.status_code}")
        handler.send_json(fault.status_code, body, headers=headers)


def _hang_up(handler: _Handler) -> None:
    # Wakes a thread blocked reading the next request of a kept-alive connection.
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def split_text(text: str) -> list[str]:
    """Cut text into word-sized pieces (each keeps its trailing space), as models stream it."""
    return re.findall(r"\S+\s*|\s+", text)


def split_arguments(arguments: str, parts: int = 3) -> list[str]:
    """Cut tool arguments into ``parts`` fragments, so clients must join them."""
    size = max(1, -(-len(arguments) // parts))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]
