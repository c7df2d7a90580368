"""A real Prometheus server scrapes a Keel process's standalone exporter, and its query API
returns Keel's series.

The server is Debian's ``prometheus`` binary (``.ci/run`` installs it), started privately on a
free loopback port with a temporary config and data directory; the test skips without it
(fails under ``KEEL_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.services import require_service

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("metrics_worker.py")
_WAIT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prometheus_binary() -> str | None:
    found = shutil.which("prometheus")
    if found is None and os.access("/usr/bin/prometheus", os.X_OK):
        found = "/usr/bin/prometheus"
    return found


def query(port: int, expression: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=2) as response:
        data = json.loads(response.read())
    result: list[dict[str, object]] = data["data"]["result"]
    return result


def test_a_real_prometheus_scrapes_a_keel_process(tmp_path: Path) -> None:
    binary = prometheus_binary()
    require_service(
        "the prometheus binary",
        binary is not None,
        "install Debian's prometheus package (apt-get install -y prometheus; .ci/run does)",
    )
    assert binary is not None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    keel = subprocess.Popen(
        [sys.executable, str(WORKER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        assert keel.stdout is not None
        exporter_port = int(keel.stdout.readline())
        web_port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: keel\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        )
        server = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{web_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        expression = 'keel_runs_finished_total{agent="scraped",status="completed"}'
        found: list[dict[str, object]] = []
        deadline = time.monotonic() + _WAIT_S
        while time.monotonic() < deadline and not found:
            with contextlib.suppress(OSError):  # not listening yet
                found = query(web_port, expression)
            if not found:
                time.sleep(0.3)
        assert found, f"Prometheus did not return {expression} within {_WAIT_S:g} s"
        assert found[0]["value"][1] == "1"  # type: ignore[index]
        assert query(web_port, "keel_approvals_pending"), "the scrape-time series is missing"
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if keel.stdin is not None:
            keel.stdin.close()
        keel.wait(timeout=10)
        if keel.stdout is not None:
            keel.stdout.close()
