"""An agent definition: instructions, a model, typed tools, an output type and limits.

An ``Agent`` is an immutable value: defining one does no I/O and starts nothing. The
:class:`keel.Runtime` runs it, any number of times, concurrently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, overload

from typing_extensions import TypeVar

from keel._checks import Check, CheckFunction, as_check
from keel._core.history import History
from keel._core.limits import Limits
from keel._core.loop import LoopSpec
from keel._core.messages import ModelSettings, ToolDefinition
from keel._core.output import OutputSpec
from keel._tools import Tool, as_tool
from keel.errors import ConfigurationError, ToolDefinitionError
from keel.ports import Model

__all__ = ["Agent", "ModelSpec", "describe_model"]

OutputT = TypeVar("OutputT", default=str)

ModelSpec = str | Model | Sequence[str | Model]
"""A model name, a model object, or a fallback chain of them (tried in order)."""

_AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class Agent(Generic[OutputT]):
    """What an agent is: who it is, which model thinks for it, what it may do, and its bounds.

    Args:
        name: A short identifier (letters, digits, ``_.-``), shown in run listings.
        instructions: The system prompt.
        model: A model name such as ``"openai:gpt-4o-mini"``, ``"anthropic:claude-sonnet-4-5"``,
            ``"ollama:llama3.2"`` or ``"rules"``, a :class:`keel.ports.Model` object, or a list
            of them: a fallback chain, tried in order when a model fails or its circuit
            breaker is open.
            ``None`` uses the runtime's default: ``KEEL_MODEL``, else OpenAI when
            ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set; with neither, running the agent
            is refused with a clear error (the offline ``"rules"`` model runs only where it
            is named).
        tools: Functions decorated with :func:`keel.tool`, or plain functions.
        output_type: The type of the final answer (``str`` by default); any type pydantic
            validates. An answer that fails validation goes back to the model.
        limits: Hard limits on each run; reaching one pauses the run.
        model_settings: Temperature, max tokens and other sampling settings.
        deps: Default dependencies handed to tools as ``ctx.deps`` when a run passes none.
        checks: Policies and guardrails consulted on the input, before model calls, before
            tool calls and on tool results (:func:`keel.check`); the runtime's own checks run
            first.
        history: How much of the thread's conversation a run sends to the model (default:
            the latest 100 messages).
    """

    @overload
    def __init__(
        self: Agent[str],
        *,
        name: str,
        instructions: str = "",
        model: ModelSpec | None = None,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        output_type: None = None,
        limits: Limits | None = None,
        model_settings: ModelSettings | None = None,
        deps: Any = None,
        checks: Sequence[Check | CheckFunction] = (),
        history: History | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        *,
        name: str,
        instructions: str = "",
        model: ModelSpec | None = None,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        output_type: type[OutputT],
        limits: Limits | None = None,
        model_settings: ModelSettings | None = None,
        deps: Any = None,
        checks: Sequence[Check | CheckFunction] = (),
        history: History | None = None,
    ) -> None: ...

    def __init__(
        self,
        *,
        name: str,
        instructions: str = "",
        model: ModelSpec | None = None,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        output_type: type[Any] | None = None,
        limits: Limits | None = None,
        model_settings: ModelSettings | None = None,
        deps: Any = None,
        checks: Sequence[Check | CheckFunction] = (),
        history: History | None = None,
    ) -> None:
        if not isinstance(name, str) or not _AGENT_NAME.match(name):
            raise ConfigurationError(
                f"agent name {name!r} is not allowed: use 1 to 100 letters, digits, '_', '.' "
                "or '-', starting with a letter or digit"
            )
        _check_model(name, model)
        if isinstance(tools, str | bytes) or not isinstance(tools, Sequence):
            raise ConfigurationError(f"agent '{name}': tools must be a list of functions")
        built = tuple(as_tool(t) for t in tools)
        seen: dict[str, Tool] = {}
        for item in built:
            if item.name in seen:
                first = seen[item.name]
                raise ToolDefinitionError(
                    f"agent '{name}' has two tools named '{item.name}'"
                    + _origins(first, item)
                    + "; give one another name with @tool(name=...) or Tool.from_schema(name, ...)"
                )
            seen[item.name] = item
        self.name = name
        self.instructions = instructions
        self.model = model
        self.tools: tuple[Tool, ...] = built
        self.output_type: Any = str if output_type is None else output_type
        self.limits = limits or Limits()
        self.model_settings = model_settings or ModelSettings()
        self.deps = deps
        if isinstance(checks, str | bytes) or not isinstance(checks, Sequence):
            raise ConfigurationError(f"agent '{name}': checks must be a list of checks")
        self.checks: tuple[Check, ...] = tuple(as_check(c) for c in checks)
        if history is not None and not isinstance(history, History):
            raise ConfigurationError(
                f"agent '{name}': history must be a keel.History, got {type(history).__name__}"
            )
        self.history = history or History()
        output = None if self.output_type is str else OutputSpec(self.output_type)
        self.loop_spec = LoopSpec(tools={t.name: t.spec for t in built}, output=output)
        self.tools_by_name: dict[str, Tool] = {t.name: t for t in built}
        self.tool_definitions: tuple[ToolDefinition, ...] = tuple(t.spec.definition for t in built)

    def as_tool(
        self,
        name: str | None = None,
        description: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Tool:
        """This agent as a tool another agent can be given: the model calls it with an
        ``input`` (the task, in words) and gets this agent's answer.

        Each call starts a **child run** of this agent, with its own journal, on the parent
        run's runtime and store, for the parent's tenant and user; the two are linked both
        ways, and the child's cost and tokens are added to the parent's. The child's id comes
        from the parent's run id and call id, so a parent that crashes and resumes joins the
        child it started (nothing is done twice). A child that waits for a person (an
        approval) or was paused by a limit pauses the parent, whose reason names the child:
        decide on the child, then resume the parent. See the multi-agent guide.

        Args:
            name: The tool's name (default: the agent's name, with other characters than
                letters, digits, ``_`` and ``-`` replaced by ``_``).
            description: What the model is told the tool does (default: from the agent's
                name and the first line of its instructions).
            timeout_s: How long a call may take (default: the agent's
                ``limits.max_wall_time_s`` and ``limits.tool_timeout_s``, plus a minute: the
                child pauses itself at its wall-time limit before that).
        """
        from keel._runtime.delegation import delegation_tool  # the runtime builds on agents

        return delegation_tool(self, name=name, description=description, timeout_s=timeout_s)

    def __repr__(self) -> str:
        return (
            f"Agent(name={self.name!r}, model={describe_model(self.model)!r}, "
            f"tools={list(self.tools_by_name)})"
        )


def _origins(first: Tool, second: Tool) -> str:
    """Which names two tools were defined with, when the model sees them mapped."""
    if first.original_name == first.name and second.original_name == second.name:
        return ""
    return (
        f" (defined as '{first.original_name}' and '{second.original_name}', which map to "
        "the same name model APIs accept)"
    )


def describe_model(spec: ModelSpec | None) -> str | None:
    """A model spec as text: its name, or the names of a fallback chain joined by commas."""
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, Model):
        return spec.name
    return ",".join(str(describe_model(item)) for item in spec)


def _check_model(agent: str, model: object) -> None:
    if model is None or isinstance(model, str | Model):
        return
    if isinstance(model, Sequence) and model and all(isinstance(m, str | Model) for m in model):
        return
    raise ConfigurationError(
        f"agent '{agent}': model must be a model name like 'openai:gpt-4o-mini', a keel Model "
        "object, or a non-empty list of them (a fallback chain, tried in order), got "
        f"{model!r}"
    )
