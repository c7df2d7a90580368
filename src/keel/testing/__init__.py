"""Test doubles shipped with Keel: scripted models, a fake clock, an in-memory store, and
loopback servers that speak the OpenAI and Anthropic wire formats with injectable faults."""

from keel.stores._memory import MemoryStore
from keel.testing._anthropic_server import AnthropicCompatibleServer
from keel.testing._chaos import ChaosModel
from keel.testing._clock import FakeClock
from keel.testing._models import FunctionModel, Scripted, ScriptedModel, call
from keel.testing._openai_server import Fault, OpenAICompatibleServer, RecordedRequest, Reply

__all__ = [
    "AnthropicCompatibleServer",
    "ChaosModel",
    "FakeClock",
    "Fault",
    "FunctionModel",
    "MemoryStore",
    "OpenAICompatibleServer",
    "RecordedRequest",
    "Reply",
    "Scripted",
    "ScriptedModel",
    "call",
]
