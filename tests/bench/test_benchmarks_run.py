"""The benchmark scripts still run (tiny sizes, nothing timed or asserted about speed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def require_corpora(folder: str = "injection") -> None:
    """The shared corpora a benchmark reads (``KEEL_CORPORA``, else ``../shared/corpora``
    beside the repository; ``folder`` is the part it needs): skip without them, or fail where
    services and data are required (CI, ``KEEL_REQUIRE_SERVICES=1``)."""
    where = Path(os.environ.get("KEEL_CORPORA", ROOT.parent / "shared" / "corpora"))
    if (where / folder).is_dir():
        return
    message = f"the shared corpora are not at {where}: set KEEL_CORPORA to their folder"
    if os.environ.get("KEEL_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "step_overhead.py",
            ("memory", "sqlite-full", "sqlite-normal", "peak memory", "test double"),
        ),
        ("journal.py", ("bytes/step", "resume of a 20-step run")),
        ("chaos.py", ("completed: ", "none hung past it")),
        ("concurrency.py", ("memory", "sqlite", "runs/s", "peak RSS")),
        ("claim_latency.py", ("sqlite", "p50", "p99")),
        ("guardrails.py", ("CyberSecEval", "NotInject", "BIPIA", "precision", "p99")),
        ("budgets.py", ("| sqlite |", "statements per call", "ratio")),
        ("history.py", ("sqlite: 3,000 runs", "tool=refund", "p50 ms", "worst p50")),
        ("server.py", ("create-and-wait sqlite", "SSE:", "KB per run in flight")),
        ("observability_instructions.py", ("observability workload ran",)),
        (
            "taubench.py",
            ("tau-bench retail, 10 test tasks", "ratio memory/sqlite", "tasks/s", "eval dataset"),
        ),
        ("evals.py", ("evaluate() cases/s", "| sqlite |", "loading the plugin", "per test")),
        ("delegation_overhead.py", ("| memory |", "| sqlite |", "delegated")),
        ("mcp_overhead.py", ("direct call", "the mcp SDK alone", "keel run, MCP tool")),
    ],
)
def test_benchmark_runs(script: str, expected: tuple[str, ...]) -> None:
    if script == "guardrails.py":
        require_corpora()
    if script == "taubench.py":
        require_corpora("tau-bench")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout
