"""Every example in the README and docs/ runs as a reader would run it.

- Each ``python`` block is written to a file of its own and run in a fresh interpreter
  (``python example.py``), in an empty temporary directory, with no ``KEEL_*``, ``OPENAI_*``
  or ``ANTHROPIC_*`` variable set: what a reader gets by pasting that block alone into a file.
  Each block is a test case of its own, named after its file and its number in that file.
- Each ``keel`` command of a file's ``console`` blocks runs as a real subprocess, in order,
  from the repository's root, on a fresh database: ``RUN_ID`` stands for the last run id a
  command printed, and a trailing ``# exit N`` gives the exit code expected (else 0).
- Relative links point at files that exist, and the guides import only public modules.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]
BLOCK = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")
EXIT = re.compile(r"#\s*exit (?P<code>\d+)")
PRIVATE = re.compile(r"\bkeel(?:\.[a-z]\w*)*\._\w+")
_CLEARED_PREFIXES = ("KEEL_", "OPENAI_", "ANTHROPIC_")
_TIMEOUT_S = 60


def blocks(path: Path, lang: str) -> list[str]:
    return [m["body"] for m in BLOCK.finditer(path.read_text()) if m["lang"] == lang]


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def clean_environment() -> dict[str, str]:
    """The process environment without any Keel or provider setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED_PREFIXES)}


def _python_examples() -> list[pytest.ParameterSet]:
    return [
        pytest.param(source, id=f"{name(path)}:block{number}")
        for path in DOCS
        for number, source in enumerate(blocks(path, "python"), 1)
    ]


@pytest.mark.parametrize("source", _python_examples())
def test_python_example_runs_alone(source: str, tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(source)
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, output
    for sign in ("Traceback", "Task exception was never retrieved", "Exception ignored"):
        assert sign not in done.stderr, output


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
    env = clean_environment()
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
            timeout=_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == expected, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{command}\n{done.stderr}"
        found = re.search(r"run (run_[0-9a-f]+) ", done.stderr)
        latest = found.group(1) if found else latest


@pytest.mark.parametrize("path", DOCS, ids=name)
def test_relative_links_resolve(path: Path) -> None:
    for match in LINK.finditer(path.read_text()):
        target = match["target"]
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{name(path)} links to missing {target}"


@pytest.mark.parametrize("path", GUIDES, ids=name)
def test_the_guides_use_only_public_modules(path: Path) -> None:
    found = sorted(set(PRIVATE.findall(path.read_text())))
    assert not found, f"{name(path)} names private modules: {', '.join(found)}"
