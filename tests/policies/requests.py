"""Check requests built by hand, as the runtime builds them at ``"tool_call"``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from keel import CheckRequest
from keel._core.toolspec import SideEffects
from keel.messages import ToolCall

__all__ = ["calls", "tool_call"]


def calls(*names: str) -> tuple[ToolCall, ...]:
    """Earlier calls of a run, by tool name."""
    return tuple(ToolCall(id=f"call_{i}", name=n, arguments="{}") for i, n in enumerate(names))


def tool_call(
    name: str,
    *,
    side_effects: SideEffects | None = "write",
    agent: str = "desk",
    tenant: str | None = None,
    user: str | None = None,
    roles: Iterable[str] = (),
    previous: Iterable[str] = (),
    **arguments: Any,
) -> CheckRequest:
    """The request a check gets about a call to ``name`` with ``arguments``."""
    return CheckRequest(
        point="tool_call",
        run_id="run_1",
        thread_id="thread_1",
        agent=agent,
        step=1,
        call=ToolCall(id="call_9", name=name, arguments=json.dumps(arguments)),
        arguments=arguments,
        tenant=tenant,
        user=user,
        roles=frozenset(roles),
        side_effects=side_effects,
        previous_calls=calls(*previous),
    )
