"""Model composition: names to resilient model objects, chains to fallbacks, and which models a
run uses (the ones recorded at its start, on every resume).

Every model named by string is resolved once per runtime and wrapped as
``Retrying(CircuitBreaker(model))`` (plus ``Caching`` when a cache is configured), all timed by
the runtime's clock. A model object is used as it is: its owner chose its wrappers. An agent
that names no model gets the configured default (``KEEL_MODEL``, or OpenAI when its key or
endpoint is set); with neither, running it is refused before anything is journaled: the offline
``rules`` model runs only where it is named.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from keel._agent import Agent, ModelSpec
from keel._settings import KeelSettings
from keel.errors import ConfigurationError, UsageError
from keel.ports import Clock, Model
from keel.resilience import (
    BreakerBoard,
    CircuitBreaker,
    Fallback,
    Retrying,
    RetryPolicy,
)
from keel.resilience._cache import Caching, ResponseCache

__all__ = ["Chain", "ModelComposer", "Resolver"]


class Resolver(Protocol):
    """What turns a model name into a model object (``keel.models.ModelRegistry``)."""

    def resolve(self, name: str) -> Model:
        """A new model object for ``name``; ``ConfigurationError`` naming the fix."""
        ...


class Chain:
    """The models a run uses, in fallback order, with the names its journal records."""

    def __init__(self, models: Sequence[Model], names: Sequence[str], *, clock: Clock) -> None:
        self.models = list(models)
        self.names = tuple(names)
        self.model = (
            self.models[0] if len(self.models) == 1 else Fallback(*self.models, clock=clock)
        )

    @property
    def name(self) -> str:
        """The name of the chain as a whole (a single model's own name, or a fallback's)."""
        return self.model.name

    async def aclose(self) -> None:
        """Close the connections of every model of the chain."""
        for model in self.models:
            await model.aclose()


class ModelComposer:
    """Resolves and composes the models of one runtime; one object per model name."""

    def __init__(
        self,
        *,
        settings: KeelSettings,
        registry: Resolver,
        clock: Clock,
        retry: RetryPolicy | None,
        breakers: BreakerBoard | None,
        cache: ResponseCache | None,
        cache_ttl_s: float,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._clock = clock
        self._sleep = getattr(clock, "sleep", None) or asyncio.sleep
        self.retry = retry
        self.breakers = breakers
        self.cache = cache
        self.cache_ttl_s = cache_ttl_s
        self._resolved: dict[str, Model] = {}

    def named(self, name: str) -> Model:
        """The model ``name`` resolves to, retried, behind its breaker, cached if a cache is
        configured; one object per name."""
        model = self._resolved.get(name)
        if model is not None:
            return model
        model = self.registry.resolve(name)
        if name != "rules":  # the offline model has nothing to retry and nothing to break
            if self.breakers is not None:
                model = CircuitBreaker(model, self.breakers)
            if self.retry is not None:
                model = Retrying(model, self.retry, clock=self._clock, sleep=self._sleep)
        if self.cache is not None:
            model = Caching(model, self.cache, ttl_s=self.cache_ttl_s)
        self._resolved[name] = model
        return model

    def spec_of(self, agent: Agent[Any], override: ModelSpec | None = None) -> ModelSpec:
        """What a new run of ``agent`` uses: ``override``, the agent's model, or the default."""
        spec = override if override is not None else agent.model
        if spec is not None:
            return spec
        default = self.settings.default_model
        if default is None:
            raise ConfigurationError(
                f"agent '{agent.name}' names no model and no default is configured: name one "
                "(Agent(model='openai:gpt-4o-mini'), or model='rules' for the offline "
                "rule-based model), or set KEEL_MODEL, or OPENAI_API_KEY / OPENAI_BASE_URL"
            )
        return default

    def chain(self, spec: ModelSpec) -> Chain:
        """The models of ``spec`` (a name, an object, or a list of them), composed."""
        items: Sequence[str | Model] = [spec] if isinstance(spec, str | Model) else list(spec)
        if not items:
            raise ConfigurationError("a fallback chain needs at least one model")
        models = [self.named(item) if isinstance(item, str) else item for item in items]
        names = [item if isinstance(item, str) else item.name for item in items]
        return Chain(models, names, clock=self._clock)

    def for_agent(self, agent: Agent[Any], override: ModelSpec | None = None) -> Chain:
        """The chain a new run of ``agent`` uses."""
        return self.chain(self.spec_of(agent, override))

    def recorded(self, run_id: str, agent: Agent[Any], names: Sequence[str]) -> Chain:
        """The chain a run recorded at its start, to continue it with.

        Each recorded name is matched, in order, with the agent's own models (an object of
        that name, or the same name); a name the agent no longer has is resolved by the
        registry. A name that cannot be resolved here (a missing key, an unknown provider)
        refuses, naming the run, the model and the fix.
        """
        own: dict[str, str | Model] = {}
        spec = agent.model
        if spec is not None:
            for item in [spec] if isinstance(spec, str | Model) else list(spec):
                own.setdefault(item if isinstance(item, str) else item.name, item)
        models: list[Model] = []
        for name in names:
            found = own.get(name)
            if isinstance(found, Model):
                models.append(found)
                continue
            try:
                models.append(self.named(name))
            except ConfigurationError as exc:
                raise UsageError(
                    f"run {run_id} started on model '{name}', which this process cannot use: "
                    f"{exc.message}. Configure it here, or continue the run on another model "
                    "with model=... (keel resume --model ...)"
                ) from None
        return Chain(models, names, clock=self._clock)

    async def aclose(self) -> None:
        """Close every model resolved by name."""
        models, self._resolved = list(self._resolved.values()), {}
        for model in models:
            await model.aclose()
