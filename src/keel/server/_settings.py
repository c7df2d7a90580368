"""The server's settings: defaults, a config file, ``KEEL_SERVER_*`` variables, and flags.

``ServerSettings(...)`` is exactly what it is given (and the defaults): it never reads the
environment. :meth:`ServerSettings.from_environ` reads, lowest priority first, a config file
(TOML with a ``[server]`` table, or JSON with a ``"server"`` object), then the environment
(``KEEL_SERVER_PORT=9000`` sets ``port``), then explicit overrides (the command's flags). A
value that does not fit raises :class:`keel.errors.ConfigurationError` naming where it came
from: the variable, the file's key, or the flag.
"""

from __future__ import annotations

import contextvars
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from keel.errors import ConfigurationError

__all__ = ["ServerSettings"]

ENV_PREFIX = "KEEL_SERVER_"


@dataclass(frozen=True, slots=True)
class _Sources:
    """What :meth:`ServerSettings.from_environ` reads, for the duration of one load."""

    environ: Mapping[str, str]
    file_values: dict[str, Any]


# Sources are chosen per load, but pydantic-settings asks the class for them: the load in
# progress says which, and a plain ServerSettings(...) (no load in progress) reads nothing.
_LOADING: contextvars.ContextVar[_Sources | None] = contextvars.ContextVar(
    "keel_server_settings_sources", default=None
)


class _MappingEnv(EnvSettingsSource):
    """``KEEL_SERVER_*`` variables from a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items() if v.strip()}


class ServerSettings(BaseSettings):
    """How ``keel serve`` (and :func:`keel.server.create_app`) serves the API.

    Every field is also a ``KEEL_SERVER_<NAME>`` variable and a key of the config file's
    ``[server]`` table; see docs/guide/server.md.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port (0: any free one).")
    inline_worker: bool = Field(
        default=True, description="Drive runs in the server process too (a worker inside)."
    )
    worker_concurrency: int = Field(default=8, ge=1, le=1000, description="Runs driven at once.")
    grace_s: float = Field(
        default=10.0, ge=0, le=3600, description="How long a drain lets work finish (SIGTERM)."
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body accepted (413 above)."
    )
    max_inflight: int = Field(
        default=64, ge=1, description="Run-creating requests handled at once (429 above)."
    )
    max_queued: int | None = Field(
        default=None, ge=1, description="Refuse new runs (429) while this many are queued."
    )
    retry_after_s: int = Field(default=1, ge=1, le=3600, description="Retry-After of a 429/503.")
    wait_s: float = Field(
        default=30.0, ge=0, le=3600, description="How long POST /v1/runs waits by default."
    )
    max_wait_s: float = Field(
        default=300.0, ge=0, le=3600, description="The longest wait a request may ask for."
    )
    heartbeat_s: float = Field(
        default=15.0, gt=0, le=3600, description="Seconds between keep-alive comments of a stream."
    )
    ready_max_queue_depth: int | None = Field(
        default=None, ge=0, description="/readyz fails while more runs than this are queued."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then the environment, then the config file (only while loading with
        :meth:`from_environ`; otherwise only what the constructor is given)."""
        loading = _LOADING.get()
        if loading is None:
            return (init_settings,)
        return (
            init_settings,
            _MappingEnv(settings_cls, loading.environ),
            InitSettingsSource(settings_cls, init_kwargs=loading.file_values),
        )

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        config_file: str | os.PathLike[str] | None = None,
        override_names: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Self:
        """Settings from ``config_file``, then ``environ`` (default: the process
        environment), then ``overrides`` (each wins over the one before; ``None`` values are
        left out). Raises :class:`keel.errors.ConfigurationError` naming the setting that is
        wrong, and where it came from: ``override_names`` says what the overrides are called
        there (``{"grace_s": "--grace"}``; default ``--grace-s``)."""
        env = dict(os.environ if environ is None else environ)
        file_values = _read_file(Path(config_file)) if config_file is not None else {}
        where = _Where(
            env,
            file_values,
            None if config_file is None else str(config_file),
            dict(override_names or {}),
        )
        unknown = sorted(
            name
            for name in env
            if name.startswith(ENV_PREFIX)
            and name.removeprefix(ENV_PREFIX).lower() not in cls.model_fields
        )
        if unknown:
            raise ConfigurationError(
                f"unknown server setting {unknown[0]}; the settings are "
                + ", ".join(ENV_PREFIX + n.upper() for n in cls.model_fields)
            )
        for name in file_values:
            if name not in cls.model_fields:
                raise ConfigurationError(
                    f"unknown server setting '{name}' in {config_file}; the settings are "
                    + ", ".join(cls.model_fields)
                )
        token = _LOADING.set(_Sources(env, file_values))
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            name = str(first["loc"][0]) if first["loc"] else "?"
            raise ConfigurationError(
                f"invalid server setting {where.of(name, overrides)}: {first['msg']}"
            ) from None
        finally:
            _LOADING.reset(token)


@dataclass(frozen=True, slots=True)
class _Where:
    """Which source gave a setting its value, for error messages."""

    environ: Mapping[str, str]
    file_values: Mapping[str, Any]
    config_file: str | None
    override_names: Mapping[str, str]

    def of(self, name: str, overrides: Mapping[str, Any]) -> str:
        if overrides.get(name) is not None:
            return self.override_names.get(name, f"--{name.replace('_', '-')}")
        variable = ENV_PREFIX + name.upper()
        if self.environ.get(variable, "").strip():
            return variable
        if name in self.file_values:
            return f"'{name}' in {self.config_file}"
        return name


def _read_file(path: Path) -> dict[str, Any]:
    """The ``server`` table of a TOML or JSON config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the config file {path}: {exc.strerror or exc}"
        ) from None
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigurationError(f"the config file {path} must be TOML (.toml) or JSON (.json)")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"the config file {path} is not valid: {exc}") from None
    table = data.get("server", {}) if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise ConfigurationError(
            f"the config file {path} must hold a 'server' table of settings, e.g. [server] "
            "port = 8000"
        )
    return table
