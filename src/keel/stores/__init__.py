"""Journal stores: in-memory, SQLite."""
