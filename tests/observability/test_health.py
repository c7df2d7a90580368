"""Health: readiness of SQLite and PostgreSQL stores, an unreachable store, semantic probes
that pass and fail, and the exit codes of ``keel health``."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel import Agent, KeelSettings, Runtime
from keel._cli.main import app
from keel.errors import ConfigurationError
from keel.observability import Metrics, Probe, check_health, liveness, readiness
from keel.stores import PostgresStore, SQLiteStore
from keel.testing import MemoryStore, ScriptedModel

NO_MODELS = KeelSettings.from_environ({})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def test_a_live_process_is_alive() -> None:
    assert liveness().ok


async def test_a_sqlite_store_with_a_current_schema_is_ready(tmp_path: Path) -> None:
    async with Runtime(store=SQLiteStore(tmp_path / "keel.db"), settings=NO_MODELS) as runtime:
        report = await readiness(runtime)
    assert report.ok, report
    assert {c.name: c.ok for c in report.checks} == {
        "store": True,
        "schema": True,
        "breakers": True,
        "queue": True,
    }


async def test_a_postgres_store_is_ready(postgres_url: str, postgres_schema: str) -> None:
    store = PostgresStore(postgres_url, schema=postgres_schema)
    async with Runtime(store=store, settings=NO_MODELS) as runtime:
        report = await readiness(runtime)
    assert report.ok, report


async def test_a_postgres_schema_changed_since_the_store_opened_is_not_ready(
    postgres_url: str, postgres_schema: str
) -> None:
    import psycopg

    from keel.stores._sql.postgres_schema import LATEST_VERSION

    store = PostgresStore(postgres_url, schema=postgres_schema)
    async with Runtime(store=store, settings=NO_MODELS) as runtime:
        assert (await readiness(runtime)).ok
        # Another process, running a newer Keel, migrates the schema further.
        table = f'"{postgres_schema}".schema_migrations'
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {table} (version, name, applied_at) VALUES (%s, 'newer', 0)",
                [LATEST_VERSION + 1],
            )
        report = await readiness(runtime)
    [schema] = [c for c in report.checks if c.name == "schema"]
    assert not report.ok
    assert not schema.ok
    assert f"schema {LATEST_VERSION + 1}" in schema.why


async def test_an_unreachable_store_is_not_ready() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    async with Runtime(store=PostgresStore(url), settings=NO_MODELS) as runtime:
        report = await readiness(runtime, timeout_s=5)
    checks = {c.name: c for c in report.checks}
    assert not report.ok
    assert not checks["store"].ok
    assert not checks["queue"].ok


async def test_a_queue_deeper_than_allowed_is_not_ready() -> None:
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS)
    agent = Agent(name="desk", model=ScriptedModel(["a", "b"]))
    await runtime.submit(agent, "one")
    await runtime.submit(agent, "two")
    report = await readiness(runtime, max_queue_depth=1)
    [queue] = [c for c in report.checks if c.name == "queue"]
    assert (queue.ok, report.ok) == (False, False)


async def test_probes_pass_and_fail_and_set_the_gauges() -> None:
    metrics = Metrics()
    runtime = Runtime(store=MemoryStore(), settings=NO_MODELS)
    agent = Agent(name="desk", model=ScriptedModel(["Paris", "It is 4.", "Lyon"]))
    probes = [
        Probe("Capital of France?", exact="paris"),
        Probe("What is 2+2?", contains="4", name="sums"),
        Probe("Capital of France, again?", scorer=lambda answer: answer == "Paris"),
    ]

    report = await check_health(runtime, agent, probes, metrics=metrics)

    assert [p.passed for p in report.probes] == [True, True, False]
    assert report.probes[2].answer == "Lyon"
    assert not report.ok
    text = metrics.exposition().decode()
    assert 'keel_health_probe_ok{agent="desk",probe="sums"} 1.0' in text
    assert 'keel_health_ok{agent="desk"} 0.0' in text


def test_a_probe_needs_exactly_one_way_to_judge() -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        Probe("Capital of France?")
    with pytest.raises(ConfigurationError, match="exactly one"):
        Probe("Capital of France?", exact="Paris", contains="Par")


APP = """
from keel import Agent
from keel.observability import Probe
from keel.testing import ScriptedModel

desk = Agent(name="desk", model=ScriptedModel(["{answer}"]))
health_probes = [Probe("Capital of France?", exact="Paris")]
"""

runner = CliRunner()


@pytest.mark.parametrize(("answer", "code"), [("Paris", 0), ("Lyon", 1)])
def test_keel_health_exits_0_when_healthy_and_1_when_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, code: int
) -> None:
    (tmp_path / "app.py").write_text(APP.format(answer=answer))
    monkeypatch.delenv("KEEL_APP", raising=False)
    db = str(tmp_path / "keel.db")
    done = runner.invoke(app, ["health", "--app", str(tmp_path / "app.py"), "--db", db, "--json"])
    assert done.exit_code == code, done.output
    data = json.loads(done.stdout)
    assert data["ok"] is (code == 0)
    assert data["probes"][0]["answer"] == answer


def test_keel_health_exits_2_on_bad_usage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "app.py").write_text(APP.format(answer="Paris"))
    monkeypatch.delenv("KEEL_APP", raising=False)
    db = str(tmp_path / "keel.db")
    unknown = runner.invoke(
        app, ["health", "--app", str(tmp_path / "app.py"), "--agent", "nobody", "--db", db]
    )
    assert unknown.exit_code == 2, unknown.output
    assert "names agent 'nobody', which it does not define" in unknown.output
    no_app = runner.invoke(app, ["health", "--agent", "desk", "--db", db])
    assert no_app.exit_code == 2
