"""The retail tasks, and replaying their expected actions.

A task's ``actions`` are the ground-truth tool calls: applied in order to a fresh database
they give the state a correct agent leaves behind. :func:`expected_state` applies them by
calling the tools directly; :func:`replay` has a scripted model make the same calls through a
:class:`keel.Runtime`, so the result can be compared with it (:meth:`RetailDB.same_state`).

A script can make one call per model turn (:func:`one_call_per_turn`, the policy's rule) or
put consecutive calls of one kind in one turn (:func:`grouped_turns`): look-ups together,
changes together, as a model that batches its calls would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from examples.tau_retail.agent import RETAIL_TOOLS
from examples.tau_retail.corpus import read_json
from examples.tau_retail.db import RetailDB
from keel import Agent, RunContext, RunResult, Runtime, Tool, ToolError, Usage
from keel.testing import Scripted, ScriptedModel, call

__all__ = [
    "Action",
    "Replay",
    "RetailTask",
    "Turn",
    "apply_actions",
    "expected_state",
    "final_answer",
    "grouped_turns",
    "load_tasks",
    "one_call_per_turn",
    "replay",
    "scripted_model",
]

Split = Literal["test", "train", "dev"]
TOOLS: Mapping[str, Tool] = {t.name: t for t in RETAIL_TOOLS}


@dataclass(frozen=True, slots=True)
class Action:
    """One expected tool call: the tool's name and its keyword arguments."""

    name: str
    kwargs: Mapping[str, Any]

    @property
    def writes(self) -> bool:
        """Whether the tool changes something (``side_effects="write"``)."""
        return TOOLS[self.name].spec.side_effects == "write"


Turn = tuple[Action, ...]
"""The calls of one model turn."""


@dataclass(frozen=True, slots=True)
class RetailTask:
    """One task: who the user is, what they want, and what a correct agent does and says.

    ``instruction`` is the published script of the simulated user; replays send it as the
    user's message. ``outputs`` are facts the agent must tell the user.
    """

    split: str
    number: int
    user_id: str
    instruction: str
    actions: tuple[Action, ...]
    outputs: tuple[str, ...]

    @property
    def id(self) -> str:
        """A stable name, e.g. ``retail-test-007``."""
        return f"retail-{self.split}-{self.number:03d}"


def load_tasks(corpus: Path | str | None = None, split: Split = "test") -> list[RetailTask]:
    """The tasks of one split (``test`` has 115), each checked to call only known tools."""
    raw = read_json(corpus, f"tasks_{split}.json")
    tasks = []
    for number, item in enumerate(raw):
        actions = tuple(Action(a["name"], dict(a["kwargs"])) for a in item["actions"])
        unknown = sorted({a.name for a in actions} - TOOLS.keys())
        if unknown:
            raise ValueError(f"task {number} of tasks_{split}.json calls unknown tools {unknown}")
        tasks.append(
            RetailTask(
                split=split,
                number=number,
                user_id=item["user_id"],
                instruction=item["instruction"],
                actions=actions,
                outputs=tuple(str(o) for o in item.get("outputs", ())),
            )
        )
    return tasks


def one_call_per_turn(task: RetailTask) -> list[Turn]:
    """Each expected action in a turn of its own."""
    return [(action,) for action in task.actions]


def grouped_turns(task: RetailTask) -> list[Turn]:
    """Runs of consecutive actions of one kind (look-ups, or changes) in one turn each."""
    turns: list[list[Action]] = []
    for action in task.actions:
        if turns and turns[-1][-1].writes == action.writes:
            turns[-1].append(action)
        else:
            turns.append([action])
    return [tuple(turn) for turn in turns]


def final_answer(task: RetailTask) -> str:
    """The scripted agent's last message, saying what the task requires it to say."""
    if not task.outputs:
        return "Is there anything else I can help you with?"
    return f"Here is what you asked for: {', '.join(task.outputs)}."


def scripted_model(task: RetailTask, turns: Sequence[Turn] | None = None) -> ScriptedModel:
    """A model that makes the task's expected calls, ``turns`` at a time (default: one call
    per turn), then gives :func:`final_answer`."""
    script: list[Scripted] = []
    for turn in one_call_per_turn(task) if turns is None else turns:
        calls = [call(a.name, dict(a.kwargs)) for a in turn]
        script.append(calls[0] if len(calls) == 1 else calls)
    script.append(final_answer(task))
    return ScriptedModel(script, name=f"scripted-{task.id}")


def apply_actions(db: RetailDB, actions: Sequence[Action]) -> list[str | None]:
    """Call the tools directly, in order, on ``db``; each call's error message or ``None``.

    The arguments are validated by the tool's schema, as the runtime validates a model's.
    """
    errors: list[str | None] = []
    for step, action in enumerate(actions):
        tool = TOOLS[action.name]
        arguments = tool.spec.validate(json.dumps(action.kwargs))
        context: RunContext[RetailDB] = RunContext(
            deps=db,
            run_id="direct",
            thread_id="direct",
            agent="direct",
            step=step,
            tool_name=action.name,
            tool_call_id=f"direct_{step}",
            idempotency_key=f"direct:{step}",
            usage=Usage(),
        )
        try:
            tool.bind(context, arguments)()
        except ToolError as exc:
            errors.append(exc.message)
        else:
            errors.append(None)
    return errors


def expected_state(pristine: RetailDB, task: RetailTask) -> RetailDB:
    """The database a correct agent leaves: the task's actions applied to a fresh copy."""
    db = pristine.fresh()
    apply_actions(db, task.actions)
    return db


@dataclass(frozen=True, slots=True)
class Replay:
    """A replayed task: the run, the database it left, and the one expected."""

    task: RetailTask
    result: RunResult[str]
    db: RetailDB
    expected: RetailDB

    @property
    def passed(self) -> bool:
        """The run completed and left the expected database."""
        return self.result.status == "completed" and self.db.same_state(self.expected)


async def replay(
    runtime: Runtime,
    agent: Agent[str],
    task: RetailTask,
    pristine: RetailDB,
    *,
    turns: Callable[[RetailTask], Sequence[Turn]] = one_call_per_turn,
) -> Replay:
    """Run ``agent`` on the task with a scripted model making the expected calls, on a fresh
    database, and return it with the expected state."""
    db = pristine.fresh()
    model = scripted_model(task, turns(task))
    result = await runtime.run(agent, task.instruction, deps=db, model=model)
    model.assert_complete()
    return Replay(task=task, result=result, db=db, expected=expected_state(pristine, task))
