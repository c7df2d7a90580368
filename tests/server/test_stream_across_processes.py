"""A replica that drives nothing (``--no-inline-worker``) streams the text of a run another
process drives, when both share Redis: the SSE client gets the deltas before the answer."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx

from keel import KeelSettings
from keel.server import ServerSettings, create_app
from tests.runtime.relay_driver import AGENT, PIECES
from tests.server.live import serving
from tests.server.sse import Message, messages

ROOT = Path(__file__).resolve().parents[2]


def test_a_replica_streams_text_a_worker_elsewhere_produces(tmp_path: Path, redis_url: str) -> None:
    db = tmp_path / "keel.db"
    settings = KeelSettings.from_environ({"KEEL_DB": str(db), "KEEL_REDIS_URL": redis_url})
    app = create_app(
        agents=[AGENT], settings=ServerSettings(inline_worker=False), keel_settings=settings
    )
    got: list[Message] = []
    following = threading.Event()
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        made = client.post("/v1/runs", json={"agent": "far", "input": "Hi", "background": True})
        assert made.status_code == 202, made.text
        run_id = made.json()["run_id"]

        def read() -> None:
            with client.stream("GET", f"/v1/runs/{run_id}/stream") as response:
                for message in messages(response):
                    got.append(message)
                    following.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert following.wait(20), "the stream sent nothing"
        driver = subprocess.run(
            [sys.executable, "-m", "tests.runtime.relay_driver", str(db), redis_url, run_id],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert driver.returncode == 0, driver.stderr.decode()
        reader.join(30)
        assert not reader.is_alive()

    deltas = [m for m in got if m.event == "delta"]
    assert "".join(m.json()["text"] for m in deltas) == "".join(PIECES)
    answer = next(m for m in got if m.id and m.json()["type"] == "model_responded")
    assert got.index(deltas[-1]) < got.index(answer)
    assert got[-1].json() == {"status": "completed"}
