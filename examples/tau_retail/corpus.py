"""Where the tau-bench retail files are, and reading them.

The corpus is public data written by other people; it is read where it lies, never copied into
this repository. Its folder is a parameter everywhere: pass it, or set ``KEEL_CORPORA``; the
default is ``../shared/corpora`` beside the repository's root.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["RETAIL", "CorpusMissingError", "corpus_root", "read_json", "read_policy", "retail_dir"]

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_CORPORA = REPOSITORY.parent / "shared" / "corpora"
#: The retail domain's folder inside the corpora.
RETAIL = Path("tau-bench") / "v1" / "retail"
_REQUIRED = ("users.json", "orders.json", "products.json", "policy_wiki.md", "tasks_test.json")


class CorpusMissingError(FileNotFoundError):
    """The tau-bench retail files are not where they were looked for."""


def corpus_root(corpus: Path | str | None = None) -> Path:
    """The corpora folder: ``corpus`` if given, else ``$KEEL_CORPORA``, else the default."""
    if corpus is not None:
        return Path(corpus)
    return Path(os.environ.get("KEEL_CORPORA") or DEFAULT_CORPORA)


def retail_dir(corpus: Path | str | None = None) -> Path:
    """The retail domain's folder, checked to hold every file the workload reads.

    Raises :class:`CorpusMissingError` naming the missing files and how to point at them.
    """
    root = corpus_root(corpus)
    folder = root / RETAIL
    missing = [name for name in _REQUIRED if not (folder / name).is_file()]
    if missing:
        raise CorpusMissingError(
            f"the tau-bench retail corpus is not complete at {folder}: missing "
            f"{', '.join(missing)}. Pass the corpora folder (the one holding 'tau-bench/'), "
            f"or set KEEL_CORPORA to it (default: {DEFAULT_CORPORA})"
        )
    return folder


def read_json(corpus: Path | str | None, name: str) -> Any:
    """One JSON file of the retail folder, e.g. ``read_json(None, "tasks_test.json")``."""
    path = retail_dir(corpus) / name
    if not path.is_file():
        raise CorpusMissingError(f"{path} does not exist; the retail folder has no {name}")
    return json.loads(path.read_text(encoding="utf-8"))


def read_policy(corpus: Path | str | None = None) -> str:
    """The retail agent policy (its system prompt), as published."""
    return (retail_dir(corpus) / "policy_wiki.md").read_text(encoding="utf-8")
