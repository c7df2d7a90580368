"""``keel serve`` from a shell: the example app on the embedded defaults, and settings
refused at start in one line that names them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from keel._cli.main import app
from tests.server.process import (
    ROOT,
    finish,
    free_port,
    keel_env,
    start_keel,
    wait_until_serving,
)

EXAMPLE = str(ROOT / "examples" / "support.py")
runner = CliRunner()


def test_keel_serve_runs_the_example_on_the_defaults(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_keel("serve", EXAMPLE, "--port", str(port), cwd=tmp_path, env=keel_env())
    try:
        wait_until_serving(server, url)
        answer = httpx.post(
            f"{url}/v1/runs", json={"agent": "support", "input": "Where is order 1042?"}, timeout=30
        )
    finally:
        _, err = finish(server)

    assert answer.status_code == 200, answer.text
    assert "1Z999AA10123456784" in answer.json()["output"]
    assert server.returncode == 0, err
    assert (tmp_path / "keel.db").exists()  # the embedded default store, in the directory
    assert "loopback clients only" in err
    assert "Traceback" not in err


def test_a_bad_setting_stops_serve_with_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_SERVER_PORT", "eighty")

    done = runner.invoke(app, ["serve", EXAMPLE, "--db", str(tmp_path / "keel.db")])

    assert done.exit_code == 2
    assert done.stderr.strip().splitlines() == [
        "error: invalid server setting KEEL_SERVER_PORT: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"KEEL_SERVER_PROT": "8000"}, (), "unknown server setting KEEL_SERVER_PROT"),
        ({"KEEL_SERVER_MAX_BODY_BYTES": "12"}, (), "KEEL_SERVER_MAX_BODY_BYTES: Input should"),
        ({"KEEL_SERVER_INLINE_WORKER": "perhaps"}, (), "KEEL_SERVER_INLINE_WORKER"),
        ({}, ("--port", "70000"), "setting --port: Input should be less than"),
        ({}, ("--grace", "-1"), "setting --grace: Input should be greater"),
    ],
)
def test_each_bad_setting_is_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    args: tuple[str, ...],
    named: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    done = runner.invoke(app, ["serve", EXAMPLE, "--db", str(tmp_path / "keel.db"), *args])

    assert done.exit_code == 2
    assert named in done.output


def test_a_config_file_is_read_and_its_mistakes_are_named(tmp_path: Path) -> None:
    config = tmp_path / "keel.toml"
    config.write_text('[server]\nport = "high"\n')
    bad_value = runner.invoke(app, ["serve", EXAMPLE, "--config", str(config)])
    config.write_text("[server]\nprot = 1\n")
    bad_key = runner.invoke(app, ["serve", EXAMPLE, "--config", str(config)])
    (tmp_path / "keel.json").write_text(json.dumps({"server": {"grace_s": -1}}))
    bad_json = runner.invoke(app, ["serve", EXAMPLE, "--config", str(tmp_path / "keel.json")])

    assert bad_value.exit_code == 2
    assert f"'port' in {config}" in bad_value.output
    assert (bad_key.exit_code, "unknown server setting 'prot'" in bad_key.output) == (2, True)
    assert (bad_json.exit_code, "'grace_s'" in bad_json.output) == (2, True)


def test_serve_refuses_a_public_address_until_a_key_exists(tmp_path: Path) -> None:
    db = str(tmp_path / "keel.db")
    done = runner.invoke(app, ["serve", EXAMPLE, "--db", db, "--host", "0.0.0.0"])

    assert done.exit_code == 2
    assert "listens on loopback only" in done.output
    assert "keel keys create" in done.output
