"""``keel serve`` and ``keel worker`` as real subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

__all__ = ["ROOT", "finish", "free_port", "keel_env", "start_keel", "wait_until_serving"]

ROOT = Path(__file__).resolve().parents[2]
_CLEARED = ("KEEL_", "OPENAI_", "ANTHROPIC_")
_START_TIMEOUT_S = 30.0


def keel_env(**extra: str) -> dict[str, str]:
    """The environment without Keel or provider settings, plus ``extra``; the subprocess
    imports this checkout's ``keel`` (and the tests' agents) whatever its directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    paths = [str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_keel(*args: str, cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """``python -m keel ARGS`` in the background, its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "keel", *args],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_serving(process: subprocess.Popen[str], url: str) -> None:
    """Return once ``url``/healthz answers; fail with the server's output if it exits."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"keel serve exited {process.returncode}:\n{out}\n{err}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"keel serve did not answer at {url}")
        time.sleep(0.05)


def finish(
    process: subprocess.Popen[str], *, signum: int | None = signal.SIGTERM, timeout_s: float = 45
) -> tuple[str, str]:
    """Send ``signum`` (if any) and wait for the process's output; a process still there
    after ``timeout_s`` is killed (so a failing test leaves nothing running) and the test
    fails."""
    if signum is not None:
        process.send_signal(signum)
    try:
        return process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"keel did not exit within {timeout_s:g} s:\n{out}\n{err}") from None
