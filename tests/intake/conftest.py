"""The broker fixtures of the intake tests: see ``tests/rabbitmq.py`` and ``tests/nats.py``."""

from tests.nats import jetstream, nats_url
from tests.rabbitmq import rabbitmq, rabbitmq_url

__all__ = ["jetstream", "nats_url", "rabbitmq", "rabbitmq_url"]
