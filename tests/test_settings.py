"""Settings read explicitly from an injected environment; secrets never shown."""

from __future__ import annotations

import pytest

from keel import KeelSettings
from keel.errors import ConfigurationError


def test_defaults_need_nothing_configured_and_never_pick_the_offline_model() -> None:
    settings = KeelSettings.from_environ({})
    assert settings.db == "keel.db"
    assert (settings.db_schema, settings.db_pool_size, settings.app) == ("keel", 10, None)
    assert settings.default_model is None  # "rules" runs only where it is named


def test_store_settings_come_from_the_environment() -> None:
    settings = KeelSettings.from_environ(
        {"KEEL_DB_SCHEMA": "tenant_a", "KEEL_DB_POOL_SIZE": "25", "KEEL_APP": "myapp.agents"}
    )
    assert (settings.db_schema, settings.db_pool_size, settings.app) == (
        "tenant_a",
        25,
        "myapp.agents",
    )


def test_values_come_from_the_given_environment_only() -> None:
    settings = KeelSettings.from_environ(
        {"KEEL_DB": "/data/runs.db", "KEEL_MODEL": "ollama:llama3.2", "KEEL_MODEL_TIMEOUT": "5"}
    )
    assert (settings.db, settings.model, settings.model_timeout_s) == (
        "/data/runs.db",
        "ollama:llama3.2",
        5.0,
    )


@pytest.mark.parametrize(
    ("environ", "model"),
    [
        ({"OPENAI_API_KEY": "sk-x"}, "openai:gpt-4o-mini"),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"}, "openai:gpt-4o-mini"),
        ({"OPENAI_API_KEY": "sk-x", "KEEL_MODEL": "anthropic:claude-x"}, "anthropic:claude-x"),
        ({"OPENAI_API_KEY": "  "}, None),  # blank counts as unset
    ],
)
def test_the_default_model_follows_what_is_configured(
    environ: dict[str, str], model: str | None
) -> None:
    assert KeelSettings.from_environ(environ).default_model == model


def test_keel_prefixed_keys_win_over_the_provider_ones() -> None:
    settings = KeelSettings.from_environ({"OPENAI_API_KEY": "a", "KEEL_OPENAI_API_KEY": "b"})
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "b"


def test_api_keys_never_show_in_repr_or_dumps() -> None:
    settings = KeelSettings.from_environ({"OPENAI_API_KEY": "sk-secret-123"})
    assert "sk-secret-123" not in repr(settings)
    assert "sk-secret-123" not in settings.model_dump_json()


def test_invalid_values_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="KEEL_MODEL_TIMEOUT: Input should be a valid"):
        KeelSettings.from_environ({"KEEL_MODEL_TIMEOUT": "soon"})


async def test_postgres_settings_are_given_without_building_the_store(postgres_url: str) -> None:
    from keel import Runtime
    from keel.stores import PostgresStore

    settings = KeelSettings.from_environ(
        {"KEEL_DB": postgres_url, "KEEL_DB_SCHEMA": "keel_settings_test", "KEEL_DB_POOL_SIZE": "3"}
    )
    runtime = Runtime(settings=settings)
    try:
        assert isinstance(runtime.store, PostgresStore)
        assert runtime.store.schema == "keel_settings_test"
        assert "keel_settings_test" in repr(runtime.store)
    finally:
        await runtime.close()


def test_encryption_keys_are_secret_and_the_key_file_is_a_path() -> None:
    key = "Tp6hoNeDBJYKF3Zy8WSZq5QgAv8n0g1HqKrH6Q2zSsc="
    settings = KeelSettings.from_environ(
        {"KEEL_ENCRYPTION_KEYS": key, "KEEL_ENCRYPTION_KEY_FILE": "/run/secrets/keel"}
    )
    assert settings.encryption_keys is not None
    assert settings.encryption_keys.get_secret_value() == key
    assert settings.encryption_key_file == "/run/secrets/keel"
    assert key not in repr(settings)
    assert key not in str(settings.model_dump())
