"""Keel's HTTP server: the agents of a Python module behind a versioned API
(``pip install 'keel-runtime[server]'``)."""

__all__: list[str] = []
