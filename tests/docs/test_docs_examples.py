"""Every example in the README and docs/ runs: Python blocks are executed (in order, one
namespace per file, top-level ``await`` allowed), ``keel`` commands in console blocks are run
as real subprocesses, and relative links point at files that exist."""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
BLOCK = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")
_PROVIDER_VARIABLES = (
    "KEEL_MODEL",
    "KEEL_DB",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
)


def blocks(path: Path, lang: str) -> list[str]:
    return [m["body"] for m in BLOCK.finditer(path.read_text()) if m["lang"] == lang]


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in _PROVIDER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "python")], ids=name)
def test_python_examples_run(path: Path, clean_env: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    loop = asyncio.new_event_loop()
    try:
        for number, source in enumerate(blocks(path, "python"), 1):
            code = compile(
                source,
                f"{name(path)}[block {number}]",
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )
            result = eval(code, namespace)  # our own documentation, trusted
            if inspect.iscoroutine(result):
                loop.run_until_complete(result)
    finally:
        loop.close()


EXIT = re.compile(r"#\s*exit (?P<code>\d+)")


def _keel_commands(path: Path) -> list[tuple[str, int]]:
    """Each ``keel`` command of the file's console blocks, with the exit code it should end
    with: 0, or what a trailing ``# exit N`` comment says."""
    lines = [line.strip() for body in blocks(path, "console") for line in body.splitlines()]
    found = []
    for line in lines:
        if line.startswith("keel "):
            command, _, comment = line.partition("#")
            code = EXIT.search("#" + comment)
            found.append((command.strip(), int(code["code"]) if code else 0))
    return found


@pytest.mark.parametrize("path", [p for p in DOCS if _keel_commands(p)], ids=name)
def test_keel_commands_in_the_docs_run(path: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in _PROVIDER_VARIABLES}
    env["KEEL_DB"] = str(tmp_path / "keel.db")
    latest = ""
    for command, expected in _keel_commands(path):
        args = shlex.split(command)[1:]
        args = [latest if arg == "RUN_ID" else arg for arg in args]
        done = subprocess.run(
            [sys.executable, "-m", "keel", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == expected, f"{command}\n{done.stderr}"
        found = re.search(r"run (run_[0-9a-f]+) ", done.stderr)
        latest = found.group(1) if found else latest


@pytest.mark.parametrize("path", DOCS, ids=name)
def test_relative_links_resolve(path: Path) -> None:
    for match in LINK.finditer(path.read_text()):
        target = match["target"]
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{name(path)} links to missing {target}"
