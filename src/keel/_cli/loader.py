"""Finds the agent a CLI target names: ``path/to/file.py:agent`` or ``package.module:agent``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from keel._agent import Agent
from keel.errors import UsageError

__all__ = ["load_agent"]


def _module_from_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"no file {path}; give the path of a Python file that defines an agent")
    # A unique name, registered before execution: pydantic and dataclasses look their module
    # up in sys.modules while the file runs.
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"keel_target_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path} is not a Python file Keel can load")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UsageError(f"{path} could not be loaded: {_where(exc, path)}") from exc
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _where(exc: Exception, path: Path) -> str:
    """The exception, with the line of ``path`` it came from when there is one."""
    line = getattr(exc, "lineno", None)
    if line is None:
        target = path.resolve()
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if Path(f.filename).resolve() == target
        ]
        line = frames[-1].lineno if frames else None
    at = f" (line {line})" if line else ""
    return f"{type(exc).__name__}: {exc}{at}"


def load_agent(target: str) -> Agent[Any]:
    """The :class:`keel.Agent` named by ``target`` (``file.py:attr`` or ``module:attr``)."""
    where, sep, attribute = target.rpartition(":")
    if not sep or not where or not attribute:
        raise UsageError(
            f"target {target!r} must look like 'path/to/file.py:agent' or 'package.module:agent'"
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _module_from_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            raise UsageError(
                f"cannot import module '{where}' ({exc}); for a file, give its path ending in .py"
            ) from None
    found = getattr(module, attribute, None)
    if isinstance(found, Agent):
        return found
    agents = sorted(name for name, value in vars(module).items() if isinstance(value, Agent))
    hint = f"it defines: {', '.join(agents)}" if agents else "it defines no keel.Agent"
    if found is None:
        raise UsageError(f"{where} has no attribute '{attribute}'; {hint}")
    raise UsageError(
        f"{where}:{attribute} is not a keel.Agent (it is of type {type(found).__name__}); {hint}"
    )
