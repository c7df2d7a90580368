"""Test doubles shipped with Keel: scripted models, a fake clock, an in-memory store, and
loopback servers that speak the OpenAI and Anthropic wire formats with injectable faults;
assertions on a run (:func:`expect`, :func:`assert_run`) with argument matchers (``ANY``,
a compiled regex, a callable, :class:`Partial`). The pytest fixtures are in
:mod:`keel.pytest_plugin`."""

from keel.stores._memory import MemoryStore
from keel.testing._anthropic_server import AnthropicCompatibleServer
from keel.testing._calls import ExpectedCall, ToolCallRecord
from keel.testing._chaos import ChaosModel
from keel.testing._clock import FakeClock
from keel.testing._expect import RunExpectation, assert_run, expect
from keel.testing._matchers import ANY, Containing, Partial
from keel.testing._models import FunctionModel, Scripted, ScriptedModel, call
from keel.testing._openai_server import Fault, OpenAICompatibleServer, RecordedRequest, Reply

__all__ = [
    "ANY",
    "AnthropicCompatibleServer",
    "ChaosModel",
    "Containing",
    "ExpectedCall",
    "FakeClock",
    "Fault",
    "FunctionModel",
    "MemoryStore",
    "OpenAICompatibleServer",
    "Partial",
    "RecordedRequest",
    "Reply",
    "RunExpectation",
    "Scripted",
    "ScriptedModel",
    "ToolCallRecord",
    "assert_run",
    "call",
    "expect",
]
