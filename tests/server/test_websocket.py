"""``/v1/ws``: an interactive session. A message starts a run whose events and text come back
on the socket; a pending call is approved over the socket and the run goes on; bad messages
get an error and the session goes on; keys are checked at the handshake or in a first
message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.server.conftest import KeyMaker


@pytest.fixture
def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/v1/ws"


class Session:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    def send(self, **message: Any) -> None:
        self.socket.send(json.dumps(message))

    def receive(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.socket.recv(timeout=30))
        return data

    def until(self, kind: str, **matching: Any) -> list[dict[str, Any]]:
        """Every message received up to and including the first of ``kind`` (matching)."""
        got = []
        while True:
            message = self.receive()
            got.append(message)
            if message["type"] == kind and all(message.get(k) == v for k, v in matching.items()):
                return got


@pytest.fixture
def session(ws_url: str) -> Iterator[Session]:
    with connect(ws_url) as socket:
        opened = Session(socket)
        assert opened.receive()["type"] == "ready"
        yield opened


def test_a_message_runs_and_an_approval_over_the_socket_finishes_it(session: Session) -> None:
    session.send(type="message", id="m1", agent="desk", input="refund me", thread="w")
    first = session.until("stopped")

    assert first[0]["type"] == "run"
    assert (first[0]["ref"], first[0]["thread"]) == ("m1", "w")
    run_id = first[0]["run_id"]
    stopped = first[-1]["run"]
    assert stopped["status"] == "awaiting_approval"
    call_id = stopped["pending"][0]["call_id"]

    session.send(type="approve", id="a1", run_id=run_id, call_id=call_id)
    second = session.until("stopped")

    assert (second[0]["type"], second[0]["ref"]) == ("decided", "a1")
    assert second[-1]["run"]["output"] == "Done: refunded $120."
    events = [m for m in first + second if m["type"] == "event"]
    assert [m["seq"] for m in events] == list(range(1, len(events) + 1))  # once each, in order
    assert events[0]["event"]["type"] == "run_started"
    assert events[-1]["event"]["type"] == "run_finished"


def test_a_rejection_and_a_cancel_over_the_socket(session: Session) -> None:
    session.send(type="message", agent="desk", input="refund me")
    run_id = session.until("stopped")[0]["run_id"]

    session.send(type="reject", run_id=run_id, reason="not today")
    done = session.until("stopped")[-1]["run"]
    session.send(type="message", agent="desk", input="refund me", thread="x")
    other = session.until("stopped")[0]["run_id"]
    session.send(type="cancel", id="c", run_id=other)
    cancelled = session.until("cancelled")[-1]

    assert "not today" in done["output"]
    assert (cancelled["ref"], cancelled["run"]["status"]) == ("c", "cancelled")


def test_the_models_text_comes_as_deltas(session: Session) -> None:
    session.send(type="message", agent="desk", input="refund me", thread="d")
    holder = session.until("stopped")[0]["run_id"]
    # Queued behind the holder, the typist's run is followed before it is driven.
    session.send(type="message", agent="typist", input="hi", thread="d")
    run_id = session.until("run")[-1]["run_id"]
    session.send(type="cancel", run_id=holder)

    got = session.until("stopped", run_id=run_id)

    deltas = [m["text"] for m in got if m["type"] == "delta" and m["run_id"] == run_id]
    assert "".join(deltas) == "Hello there."
    assert got[-1]["run"]["output"] == "Hello there."


@pytest.mark.parametrize(
    ("message", "code", "field"),
    [
        ({"type": "message", "agent": "echo"}, "invalid_request", "message.input"),
        ({"type": "shout"}, "invalid_request", None),
        ({"type": "message", "agent": "nobody", "input": "hi"}, "agent_not_found", "agent"),
        ({"type": "approve", "run_id": "run_0000"}, "run_not_found", "run_id"),
        ({"type": "follow", "run_id": "run 1"}, "invalid_request", "follow.run_id"),
    ],
)
def test_a_bad_message_gets_an_error_and_the_session_goes_on(
    session: Session, message: dict[str, Any], code: str, field: str | None
) -> None:
    session.send(**message)
    error = session.receive()

    assert error["type"] == "error"
    assert error["error"]["code"] == code
    if field is not None:
        assert error["error"]["field"] == field
    session.send(type="message", agent="echo", input="still here")
    assert session.until("stopped")[-1]["run"]["output"] == "Seen: still here"


def test_once_keys_exist_a_socket_needs_one(ws_url: str, make_key: KeyMaker) -> None:
    key = make_key(tenant="acme", user="ann")
    reader = make_key(tenant="acme", user="rita", scopes=["read"])

    with connect(ws_url) as socket:
        socket.send(json.dumps({"type": "message", "agent": "echo", "input": "hi"}))
        refused = json.loads(socket.recv(timeout=30))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=30)
    with connect(ws_url) as socket:
        socket.send(json.dumps({"type": "auth", "api_key": key}))
        ready = json.loads(socket.recv(timeout=30))
    with connect(ws_url, additional_headers={"X-API-Key": reader}) as socket:
        socket.recv(timeout=30)
        socket.send(json.dumps({"type": "message", "agent": "echo", "input": "hi"}))
        no_scope = json.loads(socket.recv(timeout=30))

    assert refused["error"]["code"] == "missing_key"
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
    assert (ready["type"], ready["user"]) == ("ready", "ann")
    assert no_scope["error"]["code"] == "missing_scope"


def test_another_tenants_run_cannot_be_followed(ws_url: str, make_key: KeyMaker) -> None:
    acme = make_key(tenant="acme", user="ann")
    globex = make_key(tenant="globex", user="bob")
    with connect(ws_url, additional_headers={"X-API-Key": acme}) as socket:
        mine = Session(socket)
        mine.receive()
        mine.send(type="message", agent="desk", input="refund me")
        run_id = mine.until("stopped")[0]["run_id"]

    with connect(ws_url, additional_headers={"X-API-Key": globex}) as socket:
        theirs = Session(socket)
        theirs.receive()
        theirs.send(type="follow", run_id=run_id)
        followed = theirs.receive()
        theirs.send(type="approve", run_id=run_id)
        approved = theirs.receive()

    assert followed["error"]["code"] == approved["error"]["code"] == "run_not_found"
