"""The retail customer-service agent: the published policy as its instructions, the 16 tools."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from examples.tau_retail.corpus import read_policy
from examples.tau_retail.reads import READ_TOOLS
from examples.tau_retail.writes import WRITE_TOOLS
from keel import Agent, Limits, Tool
from keel.ports import Model

__all__ = ["RETAIL_TOOLS", "build_agent"]

RETAIL_TOOLS: tuple[Tool, ...] = tuple(sorted((*READ_TOOLS, *WRITE_TOOLS), key=lambda t: t.name))
"""Every retail tool, by name: the published 16."""

# A task's expected actions are at most 14 calls, and a conversation repeats a look-up now and
# then; these bounds leave room for a real model's detours.
LIMITS = Limits(max_steps=60, max_tool_calls=120, max_repeated_calls=6)


def build_agent(
    corpus: Path | str | None = None,
    *,
    model: str | Model | None = None,
    name: str = "tau-retail",
    tools: Sequence[Tool] = RETAIL_TOOLS,
    **options: Any,
) -> Agent[str]:
    """The retail agent, its instructions read now from the corpus's ``policy_wiki.md``.

    ``corpus`` is the corpora folder (default: ``$KEEL_CORPORA``, else ``../shared/corpora``
    beside the repository). ``model`` defaults to the runtime's; a run may pass its own, as
    the scripted replays do. Hand each run its database as ``deps=`` (``RetailDB.fresh()``).
    ``tools`` replaces the retail tools (e.g. wrapped ones); ``options`` go to
    :class:`keel.Agent` as they are.
    """
    return Agent(
        name=name,
        instructions=read_policy(corpus),
        model=model,
        tools=list(tools),
        limits=LIMITS,
        **options,
    )
