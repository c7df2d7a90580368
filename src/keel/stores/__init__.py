"""Journal stores: in-memory, SQLite.

Both implement :class:`keel.ports.Store` and pass the same contract suite.
"""

from keel.stores.memory import MemoryStore
from keel.stores.sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore"]
