"""Model names to model objects, per runtime, with errors that name the fix."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from keel import KeelSettings
from keel.errors import ConfigurationError
from keel.models._anthropic import AnthropicModel
from keel.models._openai import OpenAIModel
from keel.models._registry import ModelRegistry
from keel.models._rules import RulesModel
from keel.ports import Model
from keel.testing import ScriptedModel


def registry(**settings: object) -> ModelRegistry:
    return ModelRegistry(KeelSettings.model_validate(settings))


def test_rules_needs_nothing() -> None:
    model = registry().resolve("rules")
    assert isinstance(model, RulesModel)
    assert model.name == "rules"


def test_openai_with_a_key() -> None:
    model = registry(openai_api_key=SecretStr("sk-1")).resolve("openai:gpt-4o-mini")
    assert isinstance(model, OpenAIModel)
    assert model.name == "openai:gpt-4o-mini"
    assert "sk-1" not in repr(model)


def test_openai_compatible_server_without_a_key() -> None:
    model = registry(openai_base_url="http://127.0.0.1:9/v1").resolve("openai:qwen")
    assert isinstance(model, OpenAIModel)
    assert "127.0.0.1:9" in repr(model)


@pytest.mark.parametrize(
    ("name", "provider_name"),
    [
        ("ollama:llama3.2", "ollama:llama3.2"),
        ("vllm:Qwen/Qwen2.5-7B", "vllm:Qwen/Qwen2.5-7B"),
        ("lmstudio:phi-4", "lmstudio:phi-4"),
        ("llamacpp:local", "llamacpp:local"),
    ],
)
def test_local_servers_need_no_key(name: str, provider_name: str) -> None:
    model = registry().resolve(name)
    assert isinstance(model, OpenAIModel)
    assert model.name == provider_name


def test_anthropic_with_a_key() -> None:
    model = registry(anthropic_api_key=SecretStr("k")).resolve("anthropic:claude-sonnet-4-5")
    assert isinstance(model, AnthropicModel)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("openai:gpt-4o", "set OPENAI_API_KEY"),
        ("anthropic:claude-x", "set ANTHROPIC_API_KEY"),
        ("acme:model", "the provider 'acme' is not known; use one of anthropic, llamacpp"),
        ("openai:", "has no model after 'openai:'"),
        ("gpt-4o", "the provider 'gpt-4o' is not known"),
    ],
)
def test_mistakes_name_the_fix(name: str, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        registry().resolve(name)


def test_custom_providers_can_be_registered_per_registry() -> None:
    mine = registry()
    mine.register("acme", lambda model, settings: ScriptedModel(["hi"], name=f"acme:{model}"))

    model: Model = mine.resolve("acme:one")

    assert model.name == "acme:one"
    with pytest.raises(ConfigurationError):
        registry().resolve("acme:one")  # another registry never saw it
    with pytest.raises(ConfigurationError, match="without ':'"):
        mine.register("a:b", lambda model, settings: model)  # type: ignore[arg-type,return-value]
