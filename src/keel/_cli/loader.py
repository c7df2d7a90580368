"""Finds the agents the operator names: a target (``path/to/file.py:agent`` or
``package.module:agent``) or an app (a file or module: every agent it defines; or
``module:attribute`` naming an agent or a collection of agents).

Code is only ever loaded from what the operator names on the command line or in ``KEEL_APP``;
a journal only selects, by agent name, among the agents loaded that way.
"""

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

__all__ = ["load_agent", "load_app"]


def _file_module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return f"keel_target_{path.stem}_{digest}"


def loaded_module(app: str) -> ModuleType | None:
    """The module :func:`load_app` loaded for ``app`` (a file or a module named alone; not a
    ``module:attribute``), or ``None``."""
    if ":" in app.replace("\\", "/").split("/")[-1]:
        return None
    if app.endswith(".py") or "/" in app or "\\" in app:
        return sys.modules.get(_file_module_name(Path(app)))
    return sys.modules.get(app)


def _module_from_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"no file {path}; give the path of a Python file that defines an agent")
    # A unique name, registered before execution: pydantic and dataclasses look their module
    # up in sys.modules while the file runs.
    name = _file_module_name(path)
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


def _module(where: str) -> ModuleType:
    if where.endswith(".py") or "/" in where or "\\" in where:
        return _module_from_file(Path(where))
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"cannot import module '{where}' ({exc}); for a file, give its path ending in .py"
        ) from None
    except Exception as exc:
        raise UsageError(
            f"module '{where}' could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc


def load_app(app: str) -> dict[str, Agent[Any]]:
    """The agents of an app, by name: every agent a file or module defines at its top level,
    or those ``module:attribute`` names (an agent, or a list, tuple, set or dict of them)."""
    where, sep, attribute = app.rpartition(":")
    if sep and where and attribute and not (len(where) == 1 and where.isalpha()):
        found = getattr(_module(where), attribute, None)
        if isinstance(found, Agent):
            candidates: list[Any] = [found]
        elif isinstance(found, dict):
            candidates = list(found.values())
        elif isinstance(found, list | tuple | set | frozenset):
            candidates = list(found)
        else:
            raise UsageError(
                f"{app} names {type(found).__name__ if found is not None else 'nothing'}; "
                "name an agent, or a list or dict of agents"
            )
    else:
        module = _module(app)
        candidates = [value for value in vars(module).values() if isinstance(value, Agent)]
    agents: dict[str, Agent[Any]] = {}
    for candidate in candidates:
        if not isinstance(candidate, Agent):
            raise UsageError(f"{app} holds a {type(candidate).__name__}, not a keel.Agent")
        agents.setdefault(candidate.name, candidate)
    if not agents:
        raise UsageError(f"{app} defines no keel.Agent")
    return agents


def load_agent(target: str) -> Agent[Any]:
    """The :class:`keel.Agent` named by ``target`` (``file.py:attr`` or ``module:attr``)."""
    where, sep, attribute = target.rpartition(":")
    if not sep or not where or not attribute:
        raise UsageError(
            f"target {target!r} must look like 'path/to/file.py:agent' or 'package.module:agent'"
        )
    module = _module(where)
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
