"""Hard limits on a run. Every limit has a finite default; reaching one pauses the run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from keel.errors import ConfigurationError

__all__ = ["LimitBreach", "Limits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Upper bounds for one run.

    A run that reaches ``max_steps``, ``max_tool_calls``, ``max_total_tokens`` or
    ``max_wall_time_s`` is paused with the reason; resume it with higher limits to continue.
    ``max_tool_calls_per_turn`` caps how many calls of one model turn run: the excess calls get
    an error result the model can read. ``max_output_retries`` bounds how often an answer that
    fails ``output_type`` validation is sent back to the model before the run fails.

    Two limits catch runs that go round in circles, and pause them too:
    ``max_repeated_calls`` is how many times one tool may be called with the same arguments in
    a run, and ``max_turns_without_progress`` how many model turns in a row may end with every
    tool call failing.

    ``max_tool_result_chars`` caps what one tool result may put in front of the model (and in
    the journal): a longer result is cut, and the model is told so. A tool may set its own cap.

    ``max_cost_usd`` caps what the run may spend on models (``None``: no cap). Before each model
    call the call's worst case (its prompt, counted conservatively, plus ``max_tokens`` of
    output) is added to what the run has spent; a call that could pass the cap is not made and
    the run pauses. Under a cap, a model with no known price is refused (configure one with
    ``Runtime(prices=...)``).
    """

    max_steps: int = 25
    max_tool_calls: int = 100
    max_tool_calls_per_turn: int = 16
    max_total_tokens: int = 1_000_000
    max_wall_time_s: float = 600.0
    max_output_retries: int = 2
    tool_timeout_s: float = 60.0
    max_repeated_calls: int = 4
    max_turns_without_progress: int = 5
    max_tool_result_chars: int = 20_000
    max_cost_usd: float | None = None

    def __post_init__(self) -> None:
        cost = self.max_cost_usd
        if cost is not None and (
            isinstance(cost, bool)
            or not isinstance(cost, int | float)
            or not math.isfinite(cost)
            or cost < 0
        ):
            raise ConfigurationError(
                f"Limits.max_cost_usd must be a number of dollars of at least 0, or None, "
                f"got {cost!r}"
            )
        for name in (
            "max_steps",
            "max_tool_calls",
            "max_tool_calls_per_turn",
            "max_total_tokens",
            "max_repeated_calls",
            "max_turns_without_progress",
            "max_output_retries",
            "max_tool_result_chars",
        ):
            value = getattr(self, name)
            low = 0 if name == "max_output_retries" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(
                    f"Limits.{name} must be an int of at least {low}, got {value!r}"
                )
        for name in ("max_wall_time_s", "tool_timeout_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigurationError(
                    f"Limits.{name} must be a positive number of seconds, got {value!r}"
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitBreach:
    """Which limit a run reached, the value observed, and how to continue."""

    limit: str
    allowed: float
    observed: float
    detail: str = ""

    @property
    def code(self) -> str:
        """A stable reason code such as ``limit.max_steps``."""
        return f"limit.{self.limit}"

    @property
    def message(self) -> str:
        """A sentence naming the limit, the observed value and the fix."""
        shown = f"{self.observed:g}" if isinstance(self.observed, float) else str(self.observed)
        detail = f": {self.detail}" if self.detail else ""
        return (
            f"the run reached its {self.limit} limit ({shown} of {self.allowed:g}){detail}; "
            f"raise Limits({self.limit}=...) and resume the run to continue"
        )
