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
from keel._context import InstructionsFunction, ToolFilter, ToolSource
from keel._core.history import History
from keel._core.limits import Limits
from keel._core.loop import LoopSpec
from keel._core.messages import ModelSettings, ToolDefinition
from keel._core.output import OutputSpec
from keel._tools import Tool, as_tool
from keel.errors import ConfigurationError, ToolDefinitionError
from keel.ports import Model

__all__ = ["Agent", "ModelSpec", "describe_model", "handoff_tool_name"]

OutputT = TypeVar("OutputT", default=str)

ModelSpec = str | Model | Sequence[str | Model]
"""A model name, a model object, or a fallback chain of them (tried in order)."""

_AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_HANDOFF_PREFIX = "transfer_to_"
#: The longest tool name model APIs accept.
_MAX_TOOL_NAME = 64


class Agent(Generic[OutputT]):
    """What an agent is: who it is, which model thinks for it, what it may do, and its bounds.

    Args:
        name: A short identifier (letters, digits, ``_.-``), shown in run listings.
        instructions: The system prompt: a str, or a function (sync or async) of a
            :class:`keel.AgentContext` that returns it, asked once when a run starts (or is
            handed to this agent); its text is journaled, and resumes and replays read it
            from there.
        model: A model name such as ``"openai:gpt-4o-mini"``, ``"anthropic:claude-sonnet-4-5"``,
            ``"ollama:llama3.2"`` or ``"rules"``, a :class:`keel.ports.Model` object, or a list
            of them: a fallback chain, tried in order when a model fails or its circuit
            breaker is open.
            ``None`` uses the runtime's default: ``KEEL_MODEL``, else OpenAI when
            ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set; with neither, running the agent
            is refused with a clear error (the offline ``"rules"`` model runs only where it
            is named).
        tools: Functions decorated with :func:`keel.tool`, plain functions, and
            :class:`keel.ToolSource` objects (asked for their tools when each run starts).
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
        tool_filter: ``(ctx, tool) -> bool`` (sync or async): which tools a run may use,
            asked once per tool when the run starts; the tools it allows are journaled, the
            model sees only those, and a call of another is refused like an unknown tool.
        sequential_tool_calls: Run the tool calls of one model turn one at a time, in the
            model's order, each journaled as started just before it runs (default: they run
            concurrently). Unlike ``ModelSettings.parallel_tool_calls``, which asks the model
            to make fewer calls, this changes how the runtime runs the calls it made.
        handoffs: Agents this one may hand the conversation to: the model sees a tool
            ``transfer_to_<name>`` for each; taking it continues the run, and the thread,
            with that agent (its instructions, tools and model). They must have this agent's
            output type.
    """

    @overload
    def __init__(
        self: Agent[str],
        *,
        name: str,
        instructions: str | InstructionsFunction = "",
        model: ModelSpec | None = None,
        tools: Sequence[Tool | ToolSource | Callable[..., Any]] = (),
        output_type: None = None,
        limits: Limits | None = None,
        model_settings: ModelSettings | None = None,
        deps: Any = None,
        checks: Sequence[Check | CheckFunction] = (),
        history: History | None = None,
        tool_filter: ToolFilter | None = None,
        sequential_tool_calls: bool = False,
        handoffs: Sequence[Agent[Any]] = (),
    ) -> None: ...

    @overload
    def __init__(
        self,
        *,
        name: str,
        instructions: str | InstructionsFunction = "",
        model: ModelSpec | None = None,
        tools: Sequence[Tool | ToolSource | Callable[..., Any]] = (),
        output_type: type[OutputT],
        limits: Limits | None = None,
        model_settings: ModelSettings | None = None,
        deps: Any = None,
        checks: Sequence[Check | CheckFunction] = (),
        history: History | None = None,
        tool_filter: ToolFilter | None = None,
        sequential_tool_calls: bool = False,
        handoffs: Sequence[Agent[Any]] = (),
    ) -> None: ...

    def __init__(
        self,
        *,
        name: str,
        instructions: str | InstructionsFunction = "",
        model: ModelSpec | None = None,
        tools: Sequence[Tool | ToolSource | Callable[..., Any]] = (),
        output_type: type[Any] | None = None,
        limits: Limits | None = None,
        model_settings: ModelSettings | None = None,
        deps: Any = None,
        checks: Sequence[Check | CheckFunction] = (),
        history: History | None = None,
        tool_filter: ToolFilter | None = None,
        sequential_tool_calls: bool = False,
        handoffs: Sequence[Agent[Any]] = (),
    ) -> None:
        if not isinstance(name, str) or not _AGENT_NAME.match(name):
            raise ConfigurationError(
                f"agent name {name!r} is not allowed: use 1 to 100 letters, digits, '_', '.' "
                "or '-', starting with a letter or digit"
            )
        _check_model(name, model)
        if isinstance(tools, str | bytes) or not isinstance(tools, Sequence):
            raise ConfigurationError(f"agent '{name}': tools must be a list of functions")
        if not isinstance(instructions, str) and not callable(instructions):
            raise ConfigurationError(
                f"agent '{name}': instructions must be a str or a function of the run's "
                f"keel.AgentContext that returns one, got {type(instructions).__name__}"
            )
        if tool_filter is not None and not callable(tool_filter):
            raise ConfigurationError(
                f"agent '{name}': tool_filter must be a function (ctx, tool) -> bool, got "
                f"{type(tool_filter).__name__}"
            )
        sources: list[ToolSource] = []
        functions: list[Tool | Callable[..., Any]] = []
        for item in tools:
            if isinstance(item, ToolSource) and not isinstance(item, Tool):
                sources.append(item)
            else:
                functions.append(item)
        built = tuple(as_tool(t) for t in functions)
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
        self.instructions: str | InstructionsFunction = instructions
        self.tool_sources: tuple[ToolSource, ...] = tuple(sources)
        self.tool_filter = tool_filter
        self.sequential_tool_calls = bool(sequential_tool_calls)
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
        #: The agents this one may hand the conversation to, by the name of their tool.
        self.handoffs: dict[str, Agent[Any]] = _handoffs(self, handoffs, set(seen))
        self.handoff_definitions: tuple[ToolDefinition, ...] = tuple(
            ToolDefinition(
                name=tool_name,
                description=f"Hand the conversation over to the agent '{target.name}': it "
                "answers the user from here on.",
                parameters={"type": "object", "properties": {}, "additionalProperties": False},
            )
            for tool_name, target in self.handoffs.items()
        )
        output = None if self.output_type is str else OutputSpec(self.output_type)
        self.loop_spec = LoopSpec(
            tools={t.name: t.spec for t in built},
            output=output,
            handoffs={tool_name: target.name for tool_name, target in self.handoffs.items()},
            sequential=self.sequential_tool_calls,
        )
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

    @property
    def dynamic(self) -> bool:
        """Whether a run start must ask something (an instructions function, a tool filter,
        tool sources) rather than read the definition."""
        return (
            not isinstance(self.instructions, str)
            or self.tool_filter is not None
            or bool(self.tool_sources)
        )

    def reachable(self) -> dict[str, Agent[Any]]:
        """This agent and every agent its handoffs lead to (directly or not), by name."""
        found: dict[str, Agent[Any]] = {self.name: self}
        waiting: list[Agent[Any]] = [self]
        while waiting:
            for target in waiting.pop().handoffs.values():
                if target.name not in found:
                    found[target.name] = target
                    waiting.append(target)
        return found

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


def handoff_tool_name(agent: str) -> str:
    """The name of the tool that hands a conversation to ``agent``: ``transfer_to_<name>``
    (characters tool names cannot hold become ``_``)."""
    return _HANDOFF_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", agent)


def _handoffs(
    agent: Agent[Any], targets: Sequence[Agent[Any]], tools: set[str]
) -> dict[str, Agent[Any]]:
    name = agent.name
    if isinstance(targets, str | bytes) or not isinstance(targets, Sequence):
        raise ConfigurationError(f"agent '{name}': handoffs must be a list of agents")
    found: dict[str, Agent[Any]] = {}
    for target in targets:
        if not isinstance(target, Agent):
            raise ConfigurationError(
                f"agent '{name}': handoffs must be keel.Agent objects, got {type(target).__name__}"
            )
        tool_name = handoff_tool_name(target.name)
        if len(tool_name) > _MAX_TOOL_NAME:
            raise ConfigurationError(
                f"agent '{name}': the handoff tool '{tool_name}' is longer than "
                f"{_MAX_TOOL_NAME} characters; give agent '{target.name}' a shorter name"
            )
        if tool_name in tools or tool_name in found:
            raise ToolDefinitionError(
                f"agent '{name}' has two tools named '{tool_name}' (a handoff to "
                f"'{target.name}'); rename the other tool or agent"
            )
        if target.output_type != agent.output_type:
            raise ConfigurationError(
                f"agent '{name}' hands off to '{target.name}', whose output type "
                f"{_type_name(target.output_type)} is not {_type_name(agent.output_type)}; "
                "agents that hand a run to each other must give the same output type"
            )
        found[tool_name] = target
    graph: dict[str, Agent[Any]] = {name: agent}
    for target in found.values():
        for other in target.reachable().values():
            known = graph.setdefault(other.name, other)
            if known is not other:
                raise ConfigurationError(
                    f"agent '{name}' can hand off to two different agents named "
                    f"'{other.name}'; agent names identify runs, so give each its own"
                )
    return found


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", repr(kind))


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
