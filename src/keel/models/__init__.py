"""Model providers and the model-name registry.

::

    from keel.models import OpenAIModel

    model = OpenAIModel("llama3.2", base_url="http://127.0.0.1:11434/v1", provider="ollama")

- :class:`OpenAIModel`: OpenAI's Chat Completions API, or any OpenAI-compatible server
  (vLLM, Ollama, llama.cpp, LM Studio).
- :class:`AnthropicModel`: Anthropic's Messages API.
- :class:`RulesModel`: the offline, deterministic rule-based model (only where it is named).
- :class:`ModelRegistry`: turns ``provider:model`` names into model objects.
"""

from keel.models._anthropic import AnthropicModel
from keel.models._openai import OpenAIModel
from keel.models._registry import ModelFactory, ModelRegistry
from keel.models._rules import Rule, RulesModel

__all__ = ["AnthropicModel", "ModelFactory", "ModelRegistry", "OpenAIModel", "Rule", "RulesModel"]
