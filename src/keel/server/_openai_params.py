"""Which request parameters an agent can honour.

An agent is not a bare model: its instructions, tools, output type and model settings are
the operator's, and a run gives one answer. A parameter that asks for something else (several
choices, token log probabilities, the client's own tools, another output format, audio) is
refused with a 400 naming it, rather than ignored into a different answer than the client
asked for. Parameters that only tune sampling or bookkeeping (``temperature``, ``top_p``,
``max_tokens``, ``seed``, ``stop``, ``user``, ``metadata``...) are accepted and ignored: the
agent's model settings apply, and who the run is for comes from the server's authentication.
"""

from __future__ import annotations

from keel.server._openai_errors import invalid_request
from keel.server._openai_models import ChatCompletionRequest

__all__ = ["refuse_unsupported"]

_TEXT_ONLY = (None, ["text"])


def _unsupported(param: str, why: str) -> None:
    raise invalid_request(
        f"'{param}' is not supported: {why}.", param=param, code="unsupported_parameter"
    )


def refuse_unsupported(request: ChatCompletionRequest) -> None:
    """Raise a 400 naming the first parameter of ``request`` an agent cannot honour."""
    if request.n not in (None, 1):
        _unsupported("n", "a run gives one answer, so n must be 1")
    if request.logprobs:
        _unsupported("logprobs", "an agent's answer comes without token log probabilities")
    if request.top_logprobs:
        _unsupported("top_logprobs", "an agent's answer comes without token log probabilities")
    tools_why = "the agent's tools are defined on the server and run there"
    if request.tools:
        _unsupported("tools", tools_why)
    if request.tool_choice not in (None, "auto"):
        _unsupported("tool_choice", tools_why)
    if request.functions:
        _unsupported("functions", tools_why)
    if request.function_call is not None:
        _unsupported("function_call", tools_why)
    if request.response_format not in (None, {"type": "text"}):
        _unsupported(
            "response_format",
            "the agent's output type decides the format of its answer (an agent with a "
            "structured output answers in JSON)",
        )
    if request.audio is not None:
        _unsupported("audio", "agents answer in text")
    if request.modalities not in _TEXT_ONLY:
        _unsupported("modalities", "agents answer in text")
    if request.prediction is not None:
        _unsupported("prediction", "an agent's answer cannot be predicted")
    if request.web_search_options is not None:
        _unsupported("web_search_options", "the agent's tools decide what it looks up")
