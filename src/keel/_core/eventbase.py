"""What every journal event shares, and the one registry of event kinds.

An event kind is a frozen dataclass deriving from :class:`Event`, with a ``type`` tag and a
schema version ``v``, registered with :func:`event_kind`. The class itself says what the event
means to everything that reads a journal:

- ``fold(state)``: how the run's state changes (:func:`keel._core.fold.apply` calls it);
- ``step``: the model turn it belongs to, if any (``None``: the run as a whole);
- ``fork(copy)``: whether, and how, it is copied into a fork of the run;
- ``external``: whether replay takes it from the journal (a person's decision, a resume)
  instead of expecting the loop to produce it again.

So a new kind is one class and one registration: the codec, the fold, steps, forks, replay and
the timeline find it through the registry, never through a list of ``isinstance`` checks.

The registry is filled when the modules defining event kinds are imported, like a table of
types; it holds classes, not state, and registering the same class twice is harmless. A type
tag that is not registered is refused when a journal is decoded: the data selects among the
kinds the code defines, never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar, Union

from pydantic import Field, TypeAdapter

if TYPE_CHECKING:
    from keel._core.state import RunState
    from keel._core.steps import StepBuilder

__all__ = [
    "FINISHED",
    "OPEN",
    "ErrorInfo",
    "Event",
    "EventRegistry",
    "ForkCopy",
    "RunStatus",
    "event_kind",
    "registry",
]

RunStatus = Literal[
    "queued", "running", "completed", "failed", "paused", "awaiting_approval", "cancelled"
]
"""Where a run stands. ``queued``: durable, waiting for a driver (a worker, or its caller);
``running``: a driver advances it; ``paused``: a limit or an outage stopped it, resume it;
``awaiting_approval``: a person must decide on a tool call; the last three are final."""

FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
"""Statuses a run never leaves."""

OPEN: frozenset[str] = frozenset({"queued", "running", "paused", "awaiting_approval"})
"""Statuses of a run that has not ended: it holds its place in its thread."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """Why something failed: a stable code and a readable message."""

    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForkCopy:
    """What a fork copies: steps ``1..at_step``, the calls those steps made, and the tool
    results to replace (``{call id: text}``; entries are removed as they are used)."""

    at_step: int
    calls: set[str]
    edits: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every journal event: ``at`` is when it happened (seconds since the epoch).

    Subclasses add their fields, a ``type: Literal[...]`` tag and ``v: Literal[n]``, and
    implement :meth:`fold`. See the module docstring.
    """

    at: float = 0.0
    if TYPE_CHECKING:  # every kind declares both as Literal fields; pydantic reads those
        type: str
        v: int

    #: Replay applies the journaled event where it happened, instead of producing it again.
    external: ClassVar[bool] = False

    @property
    def step_number(self) -> int | None:
        """The model turn this event belongs to, if any."""
        step = getattr(self, "step", None)
        return step if isinstance(step, int) else None

    def fold(self, state: RunState) -> None:
        """Advance ``state`` by this event, in place."""
        raise NotImplementedError(f"{type(self).__name__} does not say how it changes a run")

    def fork(self, copy: ForkCopy) -> Event | None:
        """This event as a fork copying ``copy.at_step`` steps has it, or ``None`` (the
        default: pauses, resumes and the end are the original's own history)."""
        return None

    def place(self, steps: StepBuilder) -> None:
        """Put this event where it belongs among a journal's steps (default: with the
        other events of its step, or of the run)."""
        steps.place(self)


E = TypeVar("E", bound=type[Event])


class EventRegistry:
    """The event kinds this code knows, by ``type`` tag, and their JSON codecs."""

    def __init__(self) -> None:
        self._kinds: dict[str, type[Event]] = {}
        self._adapters: dict[type[Event], TypeAdapter[Any]] = {}
        self._union: TypeAdapter[Any] | None = None

    def register(self, kind: E) -> E:
        """Make ``kind`` known; a different class under a known tag is refused."""
        # Kinds register when their module is imported (under Python's import lock); the
        # union codec is rebuilt on next use, which is idempotent.
        tag = _tag_of(kind)
        known = self._kinds.get(tag)
        if known is not None and known is not kind:
            raise ValueError(
                f"event type {tag!r} is already registered by {known.__module__}."
                f"{known.__qualname__}; give {kind.__qualname__} another type tag"
            )
        if known is None:
            self._adapters[kind] = TypeAdapter(kind)
            self._kinds[tag] = kind
            self._union = None
        return kind

    def __contains__(self, tag: object) -> bool:
        return tag in self._kinds

    def __iter__(self) -> Iterator[type[Event]]:
        return iter(list(self._kinds.values()))

    def kind(self, tag: str) -> type[Event] | None:
        """The class registered under ``tag``."""
        return self._kinds.get(tag)

    def adapter(self, kind: type[Event]) -> TypeAdapter[Any]:
        """The codec of one registered kind."""
        adapter = self._adapters.get(kind)
        if adapter is None:
            raise ValueError(
                f"{kind.__qualname__} is not a registered event kind; decorate it with @event_kind"
            )
        return adapter

    def union(self) -> TypeAdapter[Any]:
        """A codec for any registered kind, chosen by the ``type`` tag."""
        union = self._union
        if union is None:
            kinds = tuple(self._kinds.values())
            union = TypeAdapter(
                Annotated[Union[kinds], Field(discriminator="type")]  # type: ignore[arg-type]  # noqa: UP007
            )
            self._union = union
        return union


def _tag_of(kind: type[Event]) -> str:
    fields = getattr(kind, "__dataclass_fields__", {})
    field = fields.get("type")
    tag = getattr(field, "default", None)
    if not isinstance(tag, str) or not tag or "v" not in fields:
        raise ValueError(
            f"{kind.__qualname__} needs a `type: Literal['...'] = '...'` tag and a "
            "`v: Literal[n] = n` version to be an event kind"
        )
    return tag


registry = EventRegistry()
"""The registry every journal is read and written with."""


def event_kind(kind: E) -> E:
    """Class decorator: register an :class:`Event` subclass as a journal event kind."""
    return registry.register(kind)
