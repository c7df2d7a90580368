"""The store fixtures of the contract suites (``open_store``, ``store``): see ``_backends``."""

from ._backends import open_store, store

__all__ = ["open_store", "store"]
