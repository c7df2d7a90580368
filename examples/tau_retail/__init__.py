"""tau-bench's retail domain as a Keel workload: its 16 tools over the mock database, an agent
with the published policy, and the tasks' expected actions replayed through a runtime.

The corpus (public data, MIT) is read at run time from the corpora folder: pass it, or set
``KEEL_CORPORA`` (default ``../shared/corpora`` beside the repository). See
``docs/guide/tau-bench.md``.
"""

from examples.tau_retail.agent import RETAIL_TOOLS, build_agent
from examples.tau_retail.corpus import CorpusMissingError, corpus_root, read_policy, retail_dir
from examples.tau_retail.db import RetailDB
from examples.tau_retail.tasks import (
    Action,
    Replay,
    RetailTask,
    Turn,
    apply_actions,
    expected_state,
    final_answer,
    grouped_turns,
    load_tasks,
    one_call_per_turn,
    replay,
    scripted_model,
)

__all__ = [
    "RETAIL_TOOLS",
    "Action",
    "CorpusMissingError",
    "Replay",
    "RetailDB",
    "RetailTask",
    "Turn",
    "apply_actions",
    "build_agent",
    "corpus_root",
    "expected_state",
    "final_answer",
    "grouped_turns",
    "load_tasks",
    "one_call_per_turn",
    "read_policy",
    "replay",
    "retail_dir",
    "scripted_model",
]
