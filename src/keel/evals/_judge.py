"""LLM-as-judge: a Keel model grades an output against a rubric. Each judgment is a Keel run
of a small judge agent (journaled like any run, on the eval's runtime), and a judgment is
cached: the same rubric, input and output are never judged twice by one judge."""

from __future__ import annotations

import asyncio
import hashlib
import json

from pydantic import BaseModel, Field

from keel._agent import Agent, ModelSpec
from keel._core.limits import Limits
from keel._runtime.runtime import Runtime
from keel.evals._sample import Sample, Score, output_text
from keel.stores._memory import MemoryStore

__all__ = ["Judge", "Verdict"]

_INSTRUCTIONS = """You grade an AI assistant's answer against a rubric.
Read the rubric, the user's message, the reference answer if one is given, and the answer.
Answer with JSON only: {"score": <a number from 0 to 1>, "reason": "<one or two sentences>"}.

Rubric:
"""


_FAILED = "the judge could not answer"


class Verdict(BaseModel):
    """What a judge answers: a score from 0 to 1 and why."""

    score: float = Field(ge=0.0, le=1.0)
    reason: str = ""


class Judge:
    """Grades each sample's output with ``model`` (a :class:`keel.Model` or a model name)
    against ``rubric``; passes at ``threshold``. The judge's answer is a Keel run of an agent
    named ``agent_name`` on the eval's runtime (its run id is in the score's detail), and
    judgments are cached by (rubric, input, reference, output): ``runs`` counts the judge
    runs actually made."""

    def __init__(
        self,
        model: ModelSpec,
        rubric: str,
        *,
        threshold: float = 0.5,
        name: str = "judge",
        agent_name: str = "judge",
    ) -> None:
        if not rubric.strip():
            raise ValueError("a Judge needs a rubric: what a good answer does")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be from 0 to 1, got {threshold}")
        self.rubric = rubric
        self.threshold = threshold
        self.name = name
        self.agent: Agent[Verdict] = Agent(
            name=agent_name,
            instructions=_INSTRUCTIONS + rubric,
            model=model,
            output_type=Verdict,
            limits=Limits(max_steps=3),
        )
        self.runs = 0
        self._cache: dict[str, asyncio.Future[Score]] = {}
        self._own_runtime: Runtime | None = None

    def _key(self, sample: Sample, output: str) -> str:
        data = [self.rubric, sample.case.input, sample.case.reference, output]
        return hashlib.sha256(json.dumps(data, default=str).encode()).hexdigest()

    def _runtime(self, sample: Sample) -> Runtime:
        if sample.runtime is not None:
            return sample.runtime
        if self._own_runtime is None:
            self._own_runtime = Runtime(store=MemoryStore(), recover_on_start=False)
        return self._own_runtime

    async def __call__(self, sample: Sample) -> Score:
        if sample.result.status != "completed":
            return Score(
                self.name, 0.0, False, f"the run did not complete ({sample.result.status})"
            )
        output = output_text(sample.output)
        key = self._key(sample, output)
        cached = self._cache.get(key)
        if cached is not None:
            score = await asyncio.shield(cached)
            return Score(score.name, score.value, score.passed, f"(cached) {score.detail}")
        future: asyncio.Future[Score] = asyncio.get_running_loop().create_future()
        self._cache[key] = future
        try:
            score = await self._judge(sample, output)
        except BaseException as exc:
            del self._cache[key]  # not judged: the next sample asks again
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nothing is logged
            raise
        future.set_result(score)
        if score.detail.startswith(_FAILED):
            del self._cache[key]  # a judge that could not answer is asked again next time
        return score

    async def _judge(self, sample: Sample, output: str) -> Score:
        parts = [f"User's message:\n{sample.case.input}"]
        if sample.case.reference is not None:
            parts.append(f"Reference answer:\n{output_text(sample.case.reference)}")
        parts.append(f"Answer to grade:\n{output}")
        self.runs += 1
        result = await self._runtime(sample).run(self.agent, "\n\n".join(parts))
        if result.status != "completed":
            why = result.reason.message if result.reason else result.status
            return Score(self.name, 0.0, False, f"{_FAILED} (run {result.run_id}): {why}")
        verdict: Verdict = result.output
        passed = verdict.score >= self.threshold
        return Score(
            self.name, verdict.score, passed, f"judge run {result.run_id}: {verdict.reason}"
        )

    async def aclose(self) -> None:
        """Close the runtime the judge made for itself, if it made one."""
        if self._own_runtime is not None:
            await self._own_runtime.close()
            self._own_runtime = None

    def __repr__(self) -> str:
        return f"Judge(model={self.agent.model!r}, threshold={self.threshold})"
