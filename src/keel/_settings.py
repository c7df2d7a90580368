"""Settings from the environment, read once, explicitly, into a frozen value.

Nothing in Keel reads ``os.environ`` behind the caller's back: a :class:`KeelSettings` is built
with :meth:`KeelSettings.from_environ` (the process environment by default, any mapping in
tests) and handed to the :class:`keel.Runtime`. API keys are ``SecretStr`` so they never show
in a repr, a log line or an error; so are the encryption keys (``KEEL_ENCRYPTION_KEYS``), which
:meth:`keel.stores.Keyring.from_settings` turns into a keyring.

============================  ==============================================================
``KEEL_DB``                   where runs are kept: a path (default ``keel.db``), ``sqlite:///path``,
                              ``postgresql://user:password@host/db`` or ``memory``
``KEEL_DB_SCHEMA``            PostgreSQL: the schema of Keel's tables (default ``keel``)
``KEEL_DB_POOL_SIZE``         PostgreSQL: the most connections the pool opens (default 10)
``KEEL_APP``                  the agents the ``keel`` command may run and continue: a Python file or
                              module (every agent it defines), or ``module:attribute``
``KEEL_MODEL``                the model of agents that name none
``OPENAI_API_KEY``            key for ``openai:*`` models (``KEEL_OPENAI_API_KEY`` wins if set)
``OPENAI_BASE_URL``           an OpenAI-compatible server for ``openai:*`` models (vLLM, LM
                              Studio...)
``ANTHROPIC_API_KEY``         key for ``anthropic:*`` models
``ANTHROPIC_BASE_URL``        another Messages API endpoint
``OLLAMA_BASE_URL``           Ollama's ``/v1`` root (default ``http://127.0.0.1:11434/v1``)
``VLLM_BASE_URL``             a vLLM server's ``/v1`` root (default ``http://127.0.0.1:8000/v1``)
``LMSTUDIO_BASE_URL``         LM Studio's ``/v1`` root (default ``http://127.0.0.1:1234/v1``)
``LLAMACPP_BASE_URL``         llama.cpp server's ``/v1`` root (default ``http://127.0.0.1:8080/v1``)
``KEEL_MODEL_TIMEOUT``        seconds per network phase of a model call (default 60)
``KEEL_REDIS_URL``            Redis shared by processes for circuit breakers and the response cache,
                              e.g. ``redis://127.0.0.1:6379/0``
                              (``pip install 'keel-runtime[redis]'``)
``KEEL_ENCRYPTION_KEYS``      Fernet keys, comma-separated, that encrypt what SQLite and PostgreSQL
                              stores keep (the first encrypts, all decrypt; ``keel keys generate``
                              makes one; ``pip install 'keel-runtime[encryption]'``)
``KEEL_ENCRYPTION_KEY_FILE``  a file holding those keys instead, one per line
``KEEL_AUDIT``                ``1`` keeps the audit log beside the journal (``Runtime(audit=...)``
                              decides in code; the ``keel`` command follows this)
``KEEL_BUDGETS``              ``1`` enforces the budget limits stored with ``keel budgets set``
                              (``Runtime(budgets=...)`` decides in code; the ``keel`` command
                              follows this)
============================  ==============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from keel._redact import redact_url
from keel.errors import ConfigurationError

__all__ = ["KeelSettings"]

_ENV = {
    "db": ("KEEL_DB",),
    "db_schema": ("KEEL_DB_SCHEMA",),
    "db_pool_size": ("KEEL_DB_POOL_SIZE",),
    "app": ("KEEL_APP",),
    "model": ("KEEL_MODEL",),
    "model_timeout_s": ("KEEL_MODEL_TIMEOUT",),
    "redis_url": ("KEEL_REDIS_URL",),
    "encryption_keys": ("KEEL_ENCRYPTION_KEYS",),
    "encryption_key_file": ("KEEL_ENCRYPTION_KEY_FILE",),
    "audit": ("KEEL_AUDIT",),
    "budgets": ("KEEL_BUDGETS",),
    "openai_api_key": ("KEEL_OPENAI_API_KEY", "OPENAI_API_KEY"),
    "openai_base_url": ("KEEL_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
    "anthropic_api_key": ("KEEL_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
    "anthropic_base_url": ("KEEL_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"),
    "ollama_base_url": ("OLLAMA_BASE_URL",),
    "vllm_base_url": ("VLLM_BASE_URL",),
    "lmstudio_base_url": ("LMSTUDIO_BASE_URL",),
    "llamacpp_base_url": ("LLAMACPP_BASE_URL",),
}


class KeelSettings(BaseModel):
    """Keel's configuration; see the module docstring for the environment variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    db: str = "keel.db"
    db_schema: str = "keel"
    db_pool_size: int = 10
    app: str | None = None
    model: str | None = None
    model_timeout_s: float = 60.0
    redis_url: str | None = None
    encryption_keys: SecretStr | None = None
    encryption_key_file: str | None = None
    audit: bool = False
    budgets: bool = False
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    ollama_base_url: str = "http://127.0.0.1:11434/v1"
    vllm_base_url: str = "http://127.0.0.1:8000/v1"
    lmstudio_base_url: str = "http://127.0.0.1:1234/v1"
    llamacpp_base_url: str = "http://127.0.0.1:8080/v1"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Settings from ``environ`` (default: the process environment). Empty values count
        as unset."""
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for field, names in _ENV.items():
            for name in names:
                value = env.get(name, "").strip()
                if value:
                    values[field] = value
                    break
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_ENV[str(e['loc'][0])][0]}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            raise ConfigurationError(
                f"invalid Keel settings in the environment: {problems}"
            ) from None

    def __repr_args__(self) -> Any:
        # URLs may carry passwords (postgresql://user:secret@host/db): never show them.
        for name, value in super().__repr_args__():
            if name in ("db", "redis_url") and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    def secret_values(self) -> tuple[str, ...]:
        """The secrets these settings hold: API keys, encryption keys (the key file's too) and
        the passwords in the store's and Redis's URLs. The runtime keeps them out of what it
        records (:mod:`keel._runtime.scrubbing`)."""
        found: list[str] = []
        for key in (self.openai_api_key, self.anthropic_api_key):
            if key is not None:
                found.append(key.get_secret_value())
        if self.encryption_keys is not None:
            found += [k.strip() for k in self.encryption_keys.get_secret_value().split(",")]
        if self.encryption_key_file:
            try:
                lines = Path(self.encryption_key_file).read_text().splitlines()
            except OSError:
                lines = []  # the keyring reports a missing file; nothing to mask from it
            found += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        for url in (self.db, self.redis_url):
            if url and "://" in url:
                password = urlsplit(url).password
                if password:
                    found.append(unquote(password))
        return tuple(secret for secret in found if secret)

    @property
    def default_model(self) -> str | None:
        """The model for agents that name none: ``KEEL_MODEL``, else OpenAI when it is
        configured; ``None`` otherwise (the offline ``rules`` model is never chosen silently)."""
        if self.model:
            return self.model
        if self.openai_api_key is not None or self.openai_base_url:
            return "openai:gpt-4o-mini"
        return None
