"""Keel's HTTP server: the agents of a Python module behind a versioned API
(``pip install 'keel-runtime[server]'``)."""

from keel.server._openai import openai_router
from keel.server._openai_caller import Caller

__all__ = ["Caller", "openai_router"]
