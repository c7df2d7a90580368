"""An app for ``keel intake`` in tests: one agent, ``echo``, that answers at once."""

from tests.intake._support import echo

agent = echo()
