"""The base of models that wrap one model (retries, breakers, caching, chaos)."""

from __future__ import annotations

from keel.ports import Model

__all__ = ["WrapperModel"]


class WrapperModel(Model):
    """A model that wraps another: it keeps the wrapped model's ``name``, exposes it as
    ``model``, and closes it on ``aclose``. Subclasses implement ``request`` (and ``stream`` if
    they do more than the default)."""

    def __init__(self, model: Model) -> None:
        self._model = model

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self._model.name

    @property
    def model(self) -> Model:
        """The wrapped model."""
        return self._model

    async def aclose(self) -> None:
        """Close the wrapped model."""
        await self._model.aclose()
