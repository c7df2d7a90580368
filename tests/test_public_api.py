"""The curated public API and the layering rules, kept true by tests."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import keel
import keel.testing

SRC = Path(keel.__file__).resolve().parent

EXPECTED = [
    "Agent",
    "AgentContext",
    "Check",
    "CheckPoint",
    "CheckRequest",
    "CheckResult",
    "ConfigurationError",
    "ErrorInfo",
    "History",
    "KeelError",
    "KeelSettings",
    "LeaseLostError",
    "Limits",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "ModelSpec",
    "ParentLink",
    "PendingCall",
    "Price",
    "PriceTable",
    "Recovery",
    "Replay",
    "RunContext",
    "RunDelta",
    "RunDiff",
    "RunEvent",
    "RunFailedError",
    "RunLeasedError",
    "RunNotCompletedError",
    "RunNotFoundError",
    "RunResult",
    "RunStatus",
    "Runtime",
    "Skipped",
    "Step",
    "Store",
    "StoreError",
    "ThreadBusyError",
    "Tool",
    "ToolError",
    "ToolSource",
    "Usage",
    "UsageError",
    "Worker",
    "check",
    "fan_out",
    "tool",
]

# The documented public modules; everything else is private (a leading underscore).
PUBLIC_MODULES = [
    "keel",
    "keel.audit",
    "keel.budgets",
    "keel.errors",
    "keel.evals",
    "keel.events",
    "keel.guardrails",
    "keel.intake",
    "keel.mcp",
    "keel.messages",
    "keel.models",
    "keel.observability",
    "keel.openapi",
    "keel.policies",
    "keel.ports",
    "keel.pytest_plugin",
    "keel.resilience",
    "keel.schedules",
    "keel.server",
    "keel.stores",
    "keel.testing",
    "keel.webhooks",
]


def test_the_public_api_is_exactly_the_curated_list() -> None:
    assert keel.__all__ == EXPECTED
    assert sorted(keel.__all__) == keel.__all__
    for name in keel.__all__:
        assert hasattr(keel, name), name


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_each_public_module_exports_a_sorted_list_that_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert sorted(exported) == list(exported)
    for item in exported:
        assert getattr(module, item) is not None, f"{name}.{item}"


def test_what_a_user_needs_is_public() -> None:
    from keel.events import ModelResponded, PendingCall, RunEvent, RunFinished, Step
    from keel.messages import ModelRequest, ModelResponse, TextDelta, ToolCall, UserMessage
    from keel.stores import (
        Keyring,
        MemoryStore,
        PostgresStore,
        Rotation,
        SQLiteStore,
        Store,
        open_store,
    )

    for exported in (keel.Replay, keel.RunDiff, keel.Step, keel.PendingCall, keel.Worker):
        assert exported is not None
    assert keel.ModelRequest is ModelRequest
    assert keel.ModelResponse is ModelResponse
    needed: tuple[object, ...] = (
        ModelResponded,
        PendingCall,
        RunEvent,
        RunFinished,
        Step,
        TextDelta,
        ToolCall,
        UserMessage,
        Keyring,
        MemoryStore,
        PostgresStore,
        Rotation,
        SQLiteStore,
        Store,
        open_store,
    )
    assert all(found is not None for found in needed)


def test_every_other_module_is_private() -> None:
    public = {name.replace(".", "/") for name in PUBLIC_MODULES}
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC.parent).with_suffix("")
        parts = relative.parts
        dotted = "/".join(parts[:-1]) if parts[-1] == "__init__" else "/".join(parts)
        if dotted in public or parts[-1] == "__main__":
            continue
        assert any(part.startswith("_") for part in parts[1:]), f"{dotted} should be private"


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


_BELOW_RUNTIME = (
    "keel._core",
    "keel.audit",
    "keel.budgets",
    "keel.errors",
    "keel.ports",
    "keel.pytest_plugin",
    "keel.resilience",
    "keel._runtime",
    "keel._agent",
    "keel._context",
    "keel._tools",
    "keel._checks",
    "keel._settings",
    "keel._ids",
    "keel._redact",
)

# What each layer may import from Keel (besides itself). Imports point one way: down.
ALLOWED = {
    "_core": ("keel._core", "keel.errors"),
    # The audit log stands alone: the runtime and the command line call it, not the reverse.
    "audit": ("keel.audit", "keel.errors", "keel._redact", "keel._sqlite"),
    "stores": (
        "keel._core",
        "keel.errors",
        "keel.ports",
        "keel.stores",
        "keel._redact",
        "keel._sqlite",
    ),
    "models": (
        "keel._core",
        "keel.errors",
        "keel.ports",
        "keel.models",
        "keel._settings",
        "keel._redact",
    ),
    "resilience": ("keel._core", "keel.errors", "keel.ports", "keel.resilience", "keel._redact"),
    # The budget ledger stands beside the stores: no runtime, no store.
    "budgets": ("keel._core", "keel.errors", "keel.budgets", "keel._redact", "keel._sqlite"),
    # The runtime's parts use ports only: no concrete store or provider.
    "_runtime": _BELOW_RUNTIME,
    # Policies are checks: they build on the check machinery, never on the runtime's parts.
    "policies": ("keel._core", "keel._checks", "keel.errors", "keel.policies"),
}
# The entry points wire adapters in: the runtime facade (and the command line).
WIRING = {
    "_runtime/runtime.py": ("keel.models", "keel.stores", "keel.observability"),
    "_runtime/governance.py": ("keel.stores",),
}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_what_is_below_them(layer: str) -> None:
    paths = _modules(layer)
    assert paths, f"no modules found for layer {layer}"
    for path in paths:
        allowed = ALLOWED[layer] + WIRING.get(str(path.relative_to(SRC)), ())
        for module in _keel_imports(path):
            assert module.startswith(allowed), f"{path.relative_to(SRC)} imports {module}"


def test_no_module_is_longer_than_600_lines() -> None:
    for path in SRC.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 600, f"{path.relative_to(SRC)} has {lines} lines"


def test_the_core_does_no_io() -> None:
    forbidden = {"asyncio", "socket", "sqlite3", "httpx", "os", "time", "threading", "subprocess"}
    for path in _modules("_core"):
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
