"""Where the tests find the tau-bench retail corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from examples.tau_retail import CorpusMissingError, retail_dir


def retail_corpus() -> Path:
    """The retail corpus folder (``KEEL_CORPORA``, else ``../shared/corpora``): skip without
    it, or fail where data is required (CI, ``KEEL_REQUIRE_SERVICES=1``)."""
    try:
        return retail_dir()
    except CorpusMissingError as exc:
        if os.environ.get("KEEL_REQUIRE_SERVICES") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
