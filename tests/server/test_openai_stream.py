"""Which text of a followed run reaches the client, whatever order the deltas and the
journaled answers come in."""

from __future__ import annotations

from keel import RunDelta, RunEvent, Usage
from keel.events import ModelResponded, RunFinished
from keel.messages import AssistantMessage
from keel.server._openai_stream import AnswerText, Text


def delta(step: int, text: str) -> RunDelta:
    return RunDelta(run_id="r", step=step, text=text)


def answered(step: int, text: str | None, seq: int = 1) -> RunEvent:
    event = ModelResponded(
        step=step, model="m", message=AssistantMessage(content=text), usage=Usage()
    )
    return RunEvent(run_id="r", seq=seq, event=event)


FINISHED = RunEvent(run_id="r", seq=9, event=RunFinished(status="completed", output="x"))


def sent(answer: AnswerText, *items: RunDelta | RunEvent) -> list[str]:
    pieces: list[Text] = []
    for item in items:
        pieces += answer.pieces(item)
    return [p.text for p in pieces + answer.rest()]


def test_deltas_are_sent_as_they_come() -> None:
    answer = AnswerText(streams=True)
    items = (delta(1, "Hel"), delta(1, "lo"), answered(1, "Hello"), FINISHED)
    assert sent(answer, *items) == ["Hel", "lo"]


def test_deltas_that_come_after_their_answer_are_sent_once() -> None:
    # A follower reading the journal gets the answer before the deltas published meanwhile.
    answer = AnswerText(streams=True)
    items = (delta(1, "Hel"), answered(1, "Hello"), FINISHED, delta(1, "lo"))
    assert sent(answer, *items) == ["Hel", "lo"]


def test_what_no_delta_brought_is_sent_from_the_journal() -> None:
    # A driver in another process streams to nobody here; the last read's deltas never come.
    assert sent(AnswerText(streams=True), answered(1, "Hello"), FINISHED) == ["Hello"]
    assert sent(AnswerText(streams=True), delta(1, "He"), answered(1, "Hello")) == ["He", "llo"]


def test_a_step_is_complete_once_a_later_step_speaks() -> None:
    answer = AnswerText(streams=True)
    items = (answered(1, "Let me look."), delta(2, "It "), delta(1, "Let"), delta(2, "shipped."))
    assert sent(answer, *items) == ["Let me look.", "\n\nIt ", "shipped."]


def test_a_delta_that_is_not_the_answer_is_dropped() -> None:
    answer = AnswerText(streams=True)
    items = (answered(1, "Hello"), delta(1, "Bye"), delta(1, "Hello"))
    assert sent(answer, *items) == ["Hello"]


def test_steps_without_text_add_nothing_and_steps_with_text_are_apart() -> None:
    silent_first = (answered(1, None), delta(2, "Done."), answered(2, "Done."))
    assert sent(AnswerText(streams=True), *silent_first) == ["Done."]
    both_speak = (delta(1, "Looking."), answered(1, "Looking."), delta(2, "Done."))
    assert sent(AnswerText(streams=True), *both_speak) == ["Looking.", "\n\nDone."]


def test_a_structured_answer_sends_no_text_as_it_comes() -> None:
    answer = AnswerText(streams=False)
    assert sent(answer, delta(1, '{"a"'), answered(1, '{"a": 1}'), FINISHED) == []
