"""The curated public API and the layering rules, kept true by tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import keel
import keel.testing

SRC = Path(keel.__file__).resolve().parent

EXPECTED = [
    "Agent",
    "ConfigurationError",
    "ErrorInfo",
    "KeelError",
    "KeelSettings",
    "Limits",
    "Model",
    "ModelError",
    "ModelSettings",
    "Price",
    "PriceTable",
    "RunContext",
    "RunFailedError",
    "RunNotFoundError",
    "RunResult",
    "RunStatus",
    "Runtime",
    "StoreError",
    "ThreadBusyError",
    "Tool",
    "ToolError",
    "Usage",
    "UsageError",
    "tool",
]


def test_the_public_api_is_exactly_the_curated_list() -> None:
    assert keel.__all__ == EXPECTED
    assert sorted(keel.__all__) == keel.__all__
    for name in keel.__all__:
        assert hasattr(keel, name), name


def test_testing_exports_resolve() -> None:
    assert sorted(keel.testing.__all__) == keel.testing.__all__
    for name in keel.testing.__all__:
        assert hasattr(keel.testing, name), name


def _keel_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keel"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("keel"))
    return found


def _modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


# What each layer may import from Keel (besides itself). Imports point one way: down.
ALLOWED = {
    "core": ("keel._core", "keel.errors"),
    "stores": ("keel._core", "keel.errors", "keel.ports", "keel.stores"),
    "models": ("keel._core", "keel.errors", "keel.ports", "keel.models", "keel._settings"),
    "resilience": ("keel._core", "keel.errors", "keel.ports", "keel.resilience"),
    "runtime": (
        "keel._core",
        "keel.errors",
        "keel.ports",
        "keel.resilience",
        "keel._runtime",
        "keel._agent",
        "keel._tools",
        "keel.models",
        "keel.stores",
        "keel._settings",
        "keel._ids",
    ),
}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_what_is_below_them(layer: str) -> None:
    for path in _modules(layer):
        for module in _keel_imports(path):
            assert module.startswith(ALLOWED[layer]), f"{path.relative_to(SRC)} imports {module}"


def test_the_core_does_no_io() -> None:
    forbidden = {"asyncio", "socket", "sqlite3", "httpx", "os", "time", "threading", "subprocess"}
    for path in _modules("core"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            assert not forbidden & set(names), f"{path.name} imports {names}"


def test_nothing_in_keel_uses_pickle() -> None:
    for path in SRC.rglob("*.py"):
        assert "pickle" not in _keel_imports(path)
        assert "import pickle" not in path.read_text(), path
