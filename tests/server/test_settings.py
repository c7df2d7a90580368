"""Server settings: a config file, then KEEL_SERVER_* variables, then flags, each winning over
the one before; nothing read behind the caller's back; mistakes named with their source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from keel.errors import ConfigurationError
from keel.server import ServerSettings


def test_flags_win_over_variables_which_win_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "keel.toml"
    config.write_text("[server]\nport = 9000\ngrace_s = 3\nmax_inflight = 7\n")
    environ = {"KEEL_SERVER_PORT": "9100", "KEEL_SERVER_GRACE_S": "4"}

    chosen = ServerSettings.from_environ(environ, config_file=config, port=9200, grace_s=None)

    assert (chosen.port, chosen.grace_s, chosen.max_inflight) == (9200, 4.0, 7)


def test_constructing_settings_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_SERVER_PORT", "9100")

    assert ServerSettings().port == 8000
    assert ServerSettings.from_environ().port == 9100


@pytest.mark.parametrize(
    ("content", "suffix", "problem"),
    [
        ('{"server": {"port": "x"}}', ".json", "'port' in"),
        ("[server]\nport = ", ".toml", "is not valid"),
        ("port: 1", ".yaml", "must be TOML (.toml) or JSON (.json)"),
        ('{"server": 3}', ".json", "must hold a 'server' table"),
    ],
)
def test_a_bad_config_file_is_named(
    tmp_path: Path, content: str, suffix: str, problem: str
) -> None:
    config = tmp_path / f"keel{suffix}"
    config.write_text(content)

    with pytest.raises(ConfigurationError, match=re.escape(problem)):
        ServerSettings.from_environ({}, config_file=config)


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the config file"):
        ServerSettings.from_environ({}, config_file=tmp_path / "absent.toml")
