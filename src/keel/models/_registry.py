"""Model names to model objects: ``"openai:gpt-4o-mini"`` -> ``OpenAIModel("gpt-4o-mini")``.

A name is ``provider:model``, or a bare provider for models that need no model id (``rules``).
Each :class:`keel.Runtime` owns a :class:`ModelRegistry`; there is no global one, so tests and
several runtimes in one process never see each other's registrations.

Built-in providers:

============  ===================================================================
``openai``    OpenAI, or any OpenAI-compatible server at ``OPENAI_BASE_URL``
``anthropic`` Anthropic's Messages API
``ollama``    Ollama's OpenAI-compatible endpoint (no key)
``vllm``      a vLLM server (no key)
``lmstudio``  LM Studio (no key)
``llamacpp``  llama.cpp's server (no key)
``rules``     the offline, deterministic rule-based model
============  ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable

from keel._settings import KeelSettings
from keel.errors import ConfigurationError
from keel.models._anthropic import AnthropicModel
from keel.models._openai import OpenAIModel
from keel.models._rules import RulesModel
from keel.ports import Model

__all__ = ["ModelFactory", "ModelRegistry"]

ModelFactory = Callable[[str, KeelSettings], Model]
"""Builds a model from the part of its name after ``provider:`` and the settings."""


def _openai(model: str, settings: KeelSettings) -> Model:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if key is None and not settings.openai_base_url:
        raise ConfigurationError(
            f"model 'openai:{model}' needs an API key: set OPENAI_API_KEY, or set "
            "OPENAI_BASE_URL to a local OpenAI-compatible server, or name another model "
            "(model='rules' is the offline one)"
        )
    return OpenAIModel(
        model,
        base_url=settings.openai_base_url or "https://api.openai.com/v1",
        api_key=key,
        timeout_s=settings.model_timeout_s,
    )


def _anthropic(model: str, settings: KeelSettings) -> Model:
    key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
    if key is None and not settings.anthropic_base_url:
        raise ConfigurationError(
            f"model 'anthropic:{model}' needs an API key: set ANTHROPIC_API_KEY, or name "
            "another model (model='rules' is the offline one)"
        )
    return AnthropicModel(
        model,
        base_url=settings.anthropic_base_url or "https://api.anthropic.com",
        api_key=key,
        timeout_s=settings.model_timeout_s,
    )


def _local(provider: str, url_of: Callable[[KeelSettings], str]) -> ModelFactory:
    def build(model: str, settings: KeelSettings) -> Model:
        return OpenAIModel(
            model, base_url=url_of(settings), provider=provider, timeout_s=settings.model_timeout_s
        )

    return build


def _rules(model: str, settings: KeelSettings) -> Model:
    return RulesModel()


class ModelRegistry:
    """Resolves model names; ``register`` adds or replaces a provider prefix."""

    def __init__(self, settings: KeelSettings | None = None) -> None:
        self.settings = settings or KeelSettings()
        self._factories: dict[str, ModelFactory] = {
            "openai": _openai,
            "anthropic": _anthropic,
            "ollama": _local("ollama", lambda s: s.ollama_base_url),
            "vllm": _local("vllm", lambda s: s.vllm_base_url),
            "lmstudio": _local("lmstudio", lambda s: s.lmstudio_base_url),
            "llamacpp": _local("llamacpp", lambda s: s.llamacpp_base_url),
            "rules": _rules,
        }

    @property
    def providers(self) -> list[str]:
        """The known provider prefixes, sorted."""
        return sorted(self._factories)

    def register(self, provider: str, factory: ModelFactory) -> None:
        """Make ``provider:<model>`` names resolve through ``factory``."""
        if not provider or ":" in provider:
            raise ConfigurationError(f"provider prefix {provider!r} must be non-empty, without ':'")
        self._factories[provider] = factory

    def resolve(self, name: str) -> Model:
        """A new model object for ``name``; raises ``ConfigurationError`` naming the fix."""
        provider, _, model = name.partition(":")
        factory = self._factories.get(provider.strip())
        if factory is None:
            raise ConfigurationError(
                f"unknown model {name!r}: the provider '{provider}' is not known; use one of "
                f"{', '.join(self.providers)} (as 'provider:model', e.g. 'openai:gpt-4o-mini'), "
                "or register it with runtime.models.register()"
            )
        if not model.strip() and provider != "rules":
            raise ConfigurationError(
                f"model name {name!r} has no model after '{provider}:'; "
                f"write it as '{provider}:<model>'"
            )
        return factory(model.strip(), self.settings)
