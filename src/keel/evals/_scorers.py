"""The built-in scorers: exact, contains, regex, JSON match, tool calls, and the final state
of the tools' data. Each is a class whose instances are called with a :class:`Sample`."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from keel.evals._sample import Sample, Score, as_score, output_data, output_text
from keel.testing._calls import CallMode, as_expected, compare_calls
from keel.testing._matchers import mismatch

__all__ = ["Contains", "Exact", "JSONMatch", "Regex", "State", "ToolCalls"]

_UNSET: Any = object()


def _not_completed(sample: Sample, name: str) -> Score | None:
    result = sample.result
    if result.status == "completed":
        return None
    why = f": {result.reason.message} [{result.reason.code}]" if result.reason else ""
    return Score(name, 0.0, False, f"the run did not complete ({result.status}{why})")


def _reference(sample: Sample, given: Any, name: str) -> Any:
    value = sample.case.reference if given is _UNSET else given
    if value is None and given is _UNSET:
        raise ValueError(f"case {sample.case.id!r} has no reference for {name} to compare with")
    return value


class Exact:
    """The output equals the reference (default: the case's): text compared after trimming
    whitespace (and case, with ``ignore_case``), other outputs as JSON data."""

    def __init__(
        self, reference: Any = _UNSET, *, ignore_case: bool = False, name: str = "exact"
    ) -> None:
        self.reference = reference
        self.ignore_case = ignore_case
        self.name = name

    def __call__(self, sample: Sample) -> Score:
        stopped = _not_completed(sample, self.name)
        if stopped:
            return stopped
        want = _reference(sample, self.reference, self.name)
        got = sample.output
        if isinstance(want, str):
            text = output_text(got).strip()
            ok = (
                text.casefold() == want.strip().casefold()
                if self.ignore_case
                else text == want.strip()
            )
            detail = "" if ok else f"expected {want!r}, got {text!r}"
        else:
            why = mismatch(want, output_data(got), "output")
            ok, detail = why is None, why or ""
        return Score(self.name, float(ok), ok, detail)


class Contains:
    """The output (as text) holds ``text`` (default: the case's reference); a list of texts
    scores the share found and passes when all are. Case-insensitive unless
    ``case_sensitive``."""

    def __init__(
        self,
        text: str | Sequence[str] | None = None,
        *,
        case_sensitive: bool = False,
        name: str = "contains",
    ) -> None:
        self.text = text
        self.case_sensitive = case_sensitive
        self.name = name

    def __call__(self, sample: Sample) -> Score:
        stopped = _not_completed(sample, self.name)
        if stopped:
            return stopped
        wanted = self.text if self.text is not None else _reference(sample, _UNSET, self.name)
        texts = [wanted] if isinstance(wanted, str) else [str(t) for t in wanted]
        haystack = output_text(sample.output)
        if not self.case_sensitive:
            haystack = haystack.casefold()
        missing = [t for t in texts if (t if self.case_sensitive else t.casefold()) not in haystack]
        value = (len(texts) - len(missing)) / len(texts) if texts else 1.0
        detail = f"missing {', '.join(repr(m) for m in missing)}" if missing else ""
        return Score(self.name, value, not missing, detail)


class Regex:
    """The output (as text) matches ``pattern`` somewhere (``re.search``)."""

    def __init__(self, pattern: str | re.Pattern[str], *, flags: int = 0, name: str = "regex"):
        self.pattern = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)
        self.name = name

    def __call__(self, sample: Sample) -> Score:
        stopped = _not_completed(sample, self.name)
        if stopped:
            return stopped
        text = output_text(sample.output)
        ok = self.pattern.search(text) is not None
        detail = "" if ok else f"/{self.pattern.pattern}/ not found in {text[:200]!r}"
        return Score(self.name, float(ok), ok, detail)


def _leaves(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_leaves(v) for v in value.values()) or 1
    return 1


class JSONMatch:
    """The output, as JSON data (a pydantic output dumped, a string parsed), matches
    ``expected`` (default: the case's reference), with matchers allowed in it. With
    ``partial``, keys the expected data does not name are ignored. The value is the share of
    top-level expected keys that match (1 or 0 for other data)."""

    def __init__(self, expected: Any = _UNSET, *, partial: bool = False, name: str = "json"):
        self.expected = expected
        self.partial = partial
        self.name = name

    def __call__(self, sample: Sample) -> Score:
        stopped = _not_completed(sample, self.name)
        if stopped:
            return stopped
        want = _reference(sample, self.expected, self.name)
        got = output_data(sample.output)
        if isinstance(want, dict) and isinstance(got, dict):
            keys = list(want)
            bad = [
                (k, mismatch(want[k], got[k], k) if k in got else f"missing key {k!r}")
                for k in keys
            ]
            wrong = [(k, why) for k, why in bad if why is not None]
            extra = [] if self.partial else [k for k in got if k not in want]
            if extra:
                wrong.append((extra[0], f"unexpected key {extra[0]!r}"))
            value = (len(keys) - sum(1 for k, _ in wrong if k in want)) / len(keys) if keys else 1.0
            ok = not wrong
            return Score(self.name, value if not ok else 1.0, ok, wrong[0][1] if wrong else "")
        why = mismatch(want, got, "output")
        return Score(self.name, float(why is None), why is None, why or "")


class ToolCalls:
    """The tool calls the run's model asked for, against ``expected`` (default: the case's
    ``expected_tools``), ``exact`` (the same calls in order, no more), ``in_order`` (these in
    order, others between allowed) or ``subset`` (these in any order); arguments may hold
    matchers. The value is the share of expected calls found."""

    def __init__(
        self,
        mode: CallMode = "exact",
        *,
        expected: Sequence[Any] | None = None,
        name: str | None = None,
    ) -> None:
        if mode not in ("exact", "in_order", "subset"):
            raise ValueError(f"mode must be exact, in_order or subset, got {mode!r}")
        self.mode: CallMode = mode
        self.expected = None if expected is None else [as_expected(e) for e in expected]
        self.name = name or ("tool_calls" if mode == "exact" else f"tool_calls_{mode}")

    def __call__(self, sample: Sample) -> Score:
        expected = self.expected if self.expected is not None else sample.case.expected_tools
        value, why = compare_calls(list(expected), list(sample.tool_calls), self.mode)
        return Score(self.name, value, why is None, why or "")


StateCheck = Callable[[Sample], Any | Awaitable[Any]]


class State:
    """The final state of the tools' data, checked by ``check(sample)`` (sync or async),
    which reads it from ``sample.deps`` (a database, a fake service) and returns a bool, a
    number from 0 to 1 (passing at ``threshold``) or a :class:`Score`."""

    def __init__(self, check: StateCheck, *, name: str = "state", threshold: float = 1.0):
        self.check = check
        self.name = name
        self.threshold = threshold

    async def __call__(self, sample: Sample) -> Score:
        value = self.check(sample)
        if inspect.isawaitable(value):
            value = await value
        return as_score(value, self.name, self.threshold)
