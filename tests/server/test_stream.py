"""``GET /v1/runs/{id}/stream``: a run's events as Server-Sent Events, resumed after a dropped
connection with ``Last-Event-ID`` with no gap and no repeat, the model's text as deltas that
carry no id, an end event, and keep-alive comments."""

from __future__ import annotations

import threading

import httpx

from tests.server.agents import GATES
from tests.server.http import settled, start
from tests.server.live import AppFactory, serving
from tests.server.sse import Message, messages


def read_all(client: httpx.Client, run_id: str, **headers: str) -> list[Message]:
    with client.stream("GET", f"/v1/runs/{run_id}/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(messages(response))


def test_a_runs_events_come_with_their_seq_as_id_then_the_end(client: httpx.Client) -> None:
    run = start(client, agent="desk", input="refund me").json()

    got = read_all(client, run["run_id"])

    events = [m for m in got if m.event == "message"]
    journal = client.get(f"/v1/runs/{run['run_id']}/events").json()["events"]
    assert [m.json() for m in events] == journal
    assert [m.id for m in events] == [str(e["seq"]) for e in journal]
    assert (got[-1].event, got[-1].json()) == ("end", {"status": "awaiting_approval"})


def test_a_dropped_stream_resumes_from_last_event_id_without_gap_or_repeat(
    client: httpx.Client,
) -> None:
    GATES["resume me"] = threading.Event()
    run_id = start(client, agent="gated", input="resume me", background=True).json()["run_id"]
    first: list[Message] = []
    with client.stream("GET", f"/v1/runs/{run_id}/stream") as response:
        for message in messages(response):
            if message.id is not None:
                first.append(message)
            if len(first) == 2:  # run_started, run_dequeued: the model call is under way
                break  # the connection drops here, mid-run

    GATES["resume me"].set()  # the run goes on and ends while nobody follows
    settled(client, run_id)
    rest = read_all(client, run_id, **{"Last-Event-ID": first[-1].id or ""})

    ids = [int(m.id) for m in first + rest if m.id is not None]
    total = client.get(f"/v1/runs/{run_id}/events").json()["last_seq"]
    assert ids == list(range(1, total + 1))
    assert total > 2  # something happened while the client was away
    assert rest[-1].event == "end"
    assert [m.json()["type"] for m in rest if m.id][-1] == "run_finished"


def test_the_models_text_streams_as_deltas_without_ids(client: httpx.Client) -> None:
    # A run waiting for a person holds the thread: the typist's run waits in the queue until
    # the stream below follows it, so that its driver streams to a follower.
    holder = start(client, agent="desk", input="refund me", thread="d").json()["run_id"]
    run_id = start(client, agent="typist", input="hi", thread="d", background=True).json()["run_id"]
    got: list[Message] = []
    with client.stream("GET", f"/v1/runs/{run_id}/stream") as response:
        for message in messages(response):
            got.append(message)
            if message.id == "1":
                client.post(f"/v1/runs/{holder}/cancel")  # the typist's turn

    deltas = [m for m in got if m.event == "delta"]
    assert "".join(m.json()["text"] for m in deltas) == "Hello there."
    assert all(m.id is None for m in deltas)
    answer = next(m for m in got if m.id and m.json()["type"] == "model_responded")
    assert got.index(deltas[-1]) < got.index(answer)  # the text before the whole answer
    assert got[-1].json() == {"status": "completed"}


def test_an_idle_stream_gets_keep_alive_comments(make_app: AppFactory) -> None:
    GATES["idle"] = threading.Event()
    with serving(make_app(heartbeat_s=0.05)) as url, httpx.Client(base_url=url) as client:
        run_id = start(client, agent="gated", input="idle", background=True).json()["run_id"]
        with client.stream("GET", f"/v1/runs/{run_id}/stream") as response:
            for message in messages(response):
                if message.comment == "keep-alive":
                    GATES["idle"].set()
                if message.event == "end":
                    break

    assert message.json() == {"status": "completed"}


def test_a_bad_last_event_id_is_refused(client: httpx.Client) -> None:
    run_id = start(client).json()["run_id"]

    answer = client.get(f"/v1/runs/{run_id}/stream", headers={"Last-Event-ID": "seven"})

    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "Last-Event-ID"
