"""No traceback reaches a user of the ``keel`` command: a corrupt journal, a malformed or
unreachable Redis, an unknown database, and Ctrl-C all end in one line that says what to do,
with no password in it."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel import KeelSettings

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "examples" / "support.py")
EXAMPLE = f"{APP}:agent"
_CLEARED = ("KEEL_MODEL", "KEEL_APP", "KEEL_REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")


def keel(
    *args: str, db: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    environment.update({"KEEL_DB": str(db), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=db.parent,
        timeout=60,
        check=False,
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one_clean_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_corrupt_journal_row_is_one_clear_line(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    assert keel("run", EXAMPLE, "Where is order 1042?", db=db).returncode == 0
    with sqlite3.connect(db) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
        conn.execute('UPDATE events SET body = \'{"type": "nonsense"}\' WHERE seq = 2')

    shown = keel("runs", "show", run_id, db=db)

    assert shown.returncode == 1
    line = one_clean_line(shown)
    assert "is not a valid Keel event" in line
    assert "edited or corrupted" in line


@pytest.mark.parametrize(
    "url",
    ["nonsense", "redis://:s3cret@127.0.0.1:notaport/0"],
    ids=["no-scheme", "bad-port"],
)
def test_a_malformed_redis_url_is_one_line_without_its_password(tmp_path: Path, url: str) -> None:
    done = keel("breakers", "list", db=tmp_path / "keel.db", env={"KEEL_REDIS_URL": url})

    assert done.returncode == 2
    line = one_clean_line(done)
    assert "Redis URL" in line
    assert "s3cret" not in done.stderr + done.stdout


def test_an_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    url = f"redis://:s3cret@127.0.0.1:{closed_port()}/0"
    done = keel("breakers", "list", db=tmp_path / "keel.db", env={"KEEL_REDIS_URL": url})

    assert done.returncode == 1
    line = one_clean_line(done)
    assert "Redis" in line
    assert "s3cret" not in done.stderr + done.stdout


def test_an_unknown_database_scheme_is_one_line_without_its_password(tmp_path: Path) -> None:
    done = keel("runs", "list", db=tmp_path / "keel.db", env={"KEEL_DB": "mysql://u:s3cret@h/db"})

    assert done.returncode == 2
    line = one_clean_line(done)
    assert "unknown scheme 'mysql://'" in line
    assert "s3cret" not in done.stderr


def test_ctrl_c_during_a_run_says_which_run_and_how_to_continue(tmp_path: Path) -> None:
    agent_file = tmp_path / "slow.py"
    agent_file.write_text(
        "import time\n"
        "from keel import Agent, tool\n"
        "from keel.testing import ScriptedModel, call\n\n"
        "@tool(side_effects='read')\n"
        "def wait() -> str:\n"
        "    '''Take a long time.'''\n"
        "    time.sleep(15)\n"
        "    return 'done'\n\n"
        "agent = Agent(name='slow', model=ScriptedModel([call('wait'), 'ok']), tools=[wait])\n"
    )
    db = tmp_path / "keel.db"
    # Nothing from the environment that could make the command do more on its way out
    # (an OTLP exporter to flush, a Redis to reach): only what this test sets.
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in _CLEARED and not k.startswith(("KEEL_", "OTEL_"))
    }
    environment["KEEL_DB"] = str(db)
    process = subprocess.Popen(
        [sys.executable, "-m", "keel", "run", f"{agent_file}:agent", "Go"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                found = (
                    conn.execute(
                        "SELECT count(*) FROM sqlite_master WHERE name = 'events'"
                    ).fetchone()[0]
                    and conn.execute(
                        "SELECT count(*) FROM events WHERE type = 'tool_call_started'"
                    ).fetchone()[0]
                )
            if found:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"keel run did not stop within 60 s of Ctrl-C:\n{stderr}")

    assert process.returncode == 130
    assert "Traceback" not in stderr
    with sqlite3.connect(db) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
    assert run_id in stderr
    assert f"keel resume {run_id} --app {agent_file}" in stderr


def test_settings_never_show_passwords() -> None:
    settings = KeelSettings.from_environ(
        {
            "KEEL_DB": "postgresql://keel:s3cret@db.internal:5432/keel",
            "KEEL_REDIS_URL": "redis://:t0ken@cache.internal:6379/0",
            "OPENAI_API_KEY": "sk-live-secret",
        }
    )
    shown = repr(settings) + str(settings)
    assert "s3cret" not in shown
    assert "t0ken" not in shown
    assert "sk-live-secret" not in shown
    assert "postgresql://keel:***@db.internal:5432/keel" in shown
