"""Production runs as eval cases, and replaying them: a case exported from a run keeps the
run's recorded model answers (``metadata["responses"]``), so it re-runs against the current
code with a scripted model that plays them back (no model is called), and the scorers of
:func:`replay_scorers` fail where the tool calls or the output changed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from keel._core.codec import decode_message, encode_message
from keel._core.events import Event, ModelResponded, RunStarted, RunStatus
from keel._core.messages import AssistantMessage, Message, ModelResponse
from keel._runtime.runtime import Runtime
from keel._runtime.runtime_feedback import eval_case
from keel._runtime.runtime_history import Moment
from keel.errors import UsageError
from keel.evals._case import Case, Dataset
from keel.evals._sample import Sample, Score, Scorer
from keel.evals._scorers import Exact, ToolCalls
from keel.ports import Feedback, Feedbacks
from keel.testing._calls import ToolCallRecord, calls_from_events
from keel.testing._models import ScriptedModel

__all__ = [
    "ReplayedCalls",
    "ReplayedOutput",
    "export_cases",
    "recorded_responses",
    "replay_model",
    "replay_scorers",
]

_PAGE = 1000


def recorded_responses(events: Sequence[Event]) -> list[dict[str, Any]]:
    """A journal's model answers, in order, as JSON data (the assistant messages)."""
    return [json.loads(encode_message(e.message)) for e in events if isinstance(e, ModelResponded)]


async def _run_ids(  # noqa: PLR0917 - the export's filters, in order
    runtime: Runtime,
    label: str | None,
    min_score: float | None,
    max_score: float | None,
    filters: dict[str, Any],
    limit: int,
) -> list[str]:
    by_feedback = label is not None or min_score is not None or max_score is not None
    by_query = any(v is not None for v in filters.values())
    found: list[str] = []
    if by_feedback:
        items = await runtime.list_feedback(
            label=label,
            min_score=min_score,
            max_score=max_score,
            agent=filters.get("agent"),
            limit=None,
        )
        found = list(dict.fromkeys(item.run_id for item in items))
    if by_query:
        wanted: list[str] = []
        page = await runtime.query_runs(
            **filters, limit=min(limit, _PAGE) if not by_feedback else _PAGE
        )
        while True:
            wanted += [r.run_id for r in page.runs]
            if page.next is None or (not by_feedback and len(wanted) >= limit):
                break
            page = await runtime.query_runs(**filters, limit=_PAGE, before=page.next)
        found = [i for i in found if i in set(wanted)] if by_feedback else wanted
    return found[:limit]


async def _case_of(runtime: Runtime, run_id: str) -> Case:
    record = await runtime.store.get_run(run_id)
    events = await runtime.store.load(run_id)
    history: list[Message] = []
    first = events[0] if events else None
    if isinstance(first, RunStarted) and first.history_seq:
        thread = await runtime.store.thread_history(record.thread_id, upto_seq=first.history_seq)
        history = thread.messages[first.history_from :]
    feedback: list[Feedback] = []
    if isinstance(runtime.store, Feedbacks):
        feedback = await runtime.feedback(run_id)
    data = eval_case(record, events, history, feedback)
    data["metadata"]["responses"] = recorded_responses(events)
    data["metadata"]["tool_results"] = [
        {"name": c.name, "arguments": c.arguments, "result": c.result, "error": c.error}
        for c in calls_from_events(events)
    ]
    return Case.from_dict(data, f"run {run_id}")


async def export_cases(
    runtime: Runtime,
    *,
    run_ids: Iterable[str] = (),
    label: str | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
    agent: str | None = None,
    status: RunStatus | tuple[RunStatus, ...] | None = None,
    tool: str | None = None,
    error: str | None = None,
    tenant: str | None = None,
    user: str | None = None,
    since: Moment | None = None,
    until: Moment | None = None,
    limit: int = 100,
    output: str | os.PathLike[str] | None = None,
) -> list[Case]:
    """Runs of ``runtime``'s store as eval cases: those named in ``run_ids``, plus those
    matching every filter given (feedback: ``label``, ``min_score``, ``max_score``; the
    decision history: ``agent``, ``status``, ``tool``, ``error``, ``tenant``, ``user``,
    ``since``, ``until``), newest first, at most ``limit`` of the filtered ones. Each case
    holds the run's input, thread history, output (as reference), tool calls (as expected
    calls), feedback labels (as tags), and in its metadata the run id and the recorded model
    answers for :func:`replay_model`. Written as JSON lines to ``output`` if given."""
    filters = {
        "agent": agent,
        "status": status,
        "tool": tool,
        "error": error,
        "tenant": tenant,
        "user": user,
        "since": since,
        "until": until,
    }
    chosen = list(dict.fromkeys(run_ids))
    if any(v is not None for v in (label, min_score, max_score, *filters.values())):
        for run_id in await _run_ids(runtime, label, min_score, max_score, filters, limit):
            if run_id not in chosen:
                chosen.append(run_id)
    elif not chosen:
        raise UsageError(
            "say which runs to export: run ids, a feedback label or score, or a filter "
            "(agent, status, tool, error, tenant, user, since, until)"
        )
    cases = [await _case_of(runtime, run_id) for run_id in chosen]
    if output is not None:
        Dataset(cases, name=os.fspath(output)).save(output)
    return cases


def replay_model(case: Case, events: Sequence[Event] | None = None) -> ScriptedModel:
    """A scripted model that plays back the model answers recorded for ``case`` (its
    ``metadata["responses"]``, or those of ``events``, the source run's journal). Raises
    :class:`keel.errors.UsageError` when there are none to play."""
    if events is not None:
        answers: list[Any] = recorded_responses(events)
    else:
        answers = list(case.metadata.get("responses") or [])
    if not answers:
        raise UsageError(
            f"case {case.id!r} has no recorded model answers to replay; export it with "
            "keel eval export (or export_cases), or replay with the source run's journal"
        )
    script: list[ModelResponse] = []
    for index, answer in enumerate(answers):
        message = decode_message(json.dumps(answer))
        if not isinstance(message, AssistantMessage):
            raise UsageError(f"case {case.id!r}: recorded answer #{index + 1} is not a reply")
        script.append(ModelResponse(message=message))
    return ScriptedModel(script, name="scripted")


class ReplayedCalls:
    """The run made the recorded tool calls, in order, with the same arguments, and each
    ended as recorded: the same result, or the same error (a tool that now refuses the
    call, or answers differently, fails the case). Without recorded results (a case from
    ``keel feedback export``), the calls are compared with the case's expected calls."""

    name = "replay_tool_calls"

    def __call__(self, sample: Sample) -> Score:
        recorded = sample.case.metadata.get("tool_results")
        if not isinstance(recorded, list):
            return ToolCalls("exact", name=self.name)(sample)
        made = list(sample.tool_calls)
        for index, (was, now) in enumerate(zip(recorded, made, strict=False)):
            then = ToolCallRecord(
                str(was.get("name")), was.get("arguments"), error=was.get("error")
            )
            where = f"call #{index + 1} {then.name}"
            if (now.name, now.arguments) != (then.name, then.arguments):
                return self._changed(index, recorded, f"call #{index + 1}: was {then}, now {now}")
            if now.error != then.error:
                was_ended = then.error or "done"
                return self._changed(
                    index, recorded, f"{where}: was {was_ended}, now {now.error or 'done'}"
                )
            if "result" in was and was["result"] is not None and now.result != was["result"]:
                return self._changed(
                    index, recorded, f"{where}: result was {was['result']!r}, now {now.result!r}"
                )
        if len(made) != len(recorded):
            return self._changed(
                min(len(made), len(recorded)),
                recorded,
                f"{len(recorded)} call(s) recorded, {len(made)} made",
            )
        return Score(self.name, 1.0, True)

    def _changed(self, same: int, recorded: list[Any], detail: str) -> Score:
        return Score(self.name, same / len(recorded) if recorded else 0.0, False, detail)


class ReplayedOutput:
    """The run ended with the recorded output (the case's reference): the same text or data,
    or, for a recorded run that did not complete, again no output."""

    name = "replay_output"

    def __call__(self, sample: Sample) -> Score:
        recorded = sample.case.reference
        if recorded is None:
            ok = sample.output is None
            detail = "" if ok else f"the recorded run had no output, now {sample.output!r}"
            return Score(self.name, float(ok), ok, detail)
        return Exact(recorded, name=self.name)(sample)


def replay_scorers() -> list[Scorer]:
    """The scorers of a replay: the same tool calls with the same arguments, ending the same
    way (``replay_tool_calls``), and the same output (``replay_output``)."""
    return [ReplayedCalls(), ReplayedOutput()]
