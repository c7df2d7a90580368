"""The values of the budget ledger: budgets, answers, statuses, and the pure rules that every
ledger shares (windows, which budget applies, USD to whole nano-dollars).

Amounts are kept as whole nano-dollars (``int``, 1 USD = 10**9) by every ledger, so sums
never drift the way float additions do: a limit of $1 admits exactly ten reservations of
$0.10. Requests are rounded up to the next nano-dollar (never under-reserved).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from keel.errors import ConfigurationError

__all__ = [
    "GLOBAL_KEY",
    "SCOPES",
    "WINDOWS",
    "Budget",
    "BudgetStatus",
    "Effective",
    "Exhausted",
    "Reservation",
    "Reserved",
    "Scope",
    "Settlement",
    "Window",
    "candidates",
    "check_amount",
    "check_keys",
    "check_limit",
    "check_scope",
    "check_window",
    "effective",
    "from_nanos",
    "to_nanos",
    "window_start",
]

Scope = Literal["agent", "user", "tenant", "global"]
Window = Literal["hour", "day", "month", "total"]

#: The scopes, most specific first: the order in which budgets are checked and locked.
SCOPES: tuple[Scope, ...] = get_args(Scope)
WINDOWS: tuple[Window, ...] = get_args(Window)
#: The one key of the ``global`` scope.
GLOBAL_KEY = "global"

_NANOS = 1_000_000_000
# The largest limit accepted: a billion dollars, 10**18 nano-dollars, still fits a signed
# 64-bit integer with room for the spend above it that a late settlement may add.
_MAX_USD = 1e9


def to_nanos(usd: float) -> int:
    """``usd`` in whole nano-dollars, rounded up (``0.1`` is exactly 100,000,000)."""
    # The binary noise of the multiplication (0.1 * 1e9 is 100000000.00000001; large amounts
    # are off by a few units in the last place) is not a fraction of a nano-dollar: only
    # real fractions round up.
    nanos = usd * _NANOS
    nearest = round(nanos)
    if abs(nanos - nearest) <= max(1e-3, 4 * math.ulp(nanos)):
        return int(nearest)
    return math.ceil(nanos)


def from_nanos(nanos: int) -> float:
    """Whole nano-dollars as USD."""
    return nanos / _NANOS


def check_scope(scope: object) -> Scope:
    """``scope`` if it is one of :data:`SCOPES`, else :class:`ConfigurationError`."""
    if scope not in SCOPES:
        raise ConfigurationError(
            f"a budget's scope must be one of {', '.join(SCOPES)}, got {scope!r}"
        )
    return scope


def check_window(window: object) -> Window:
    """``window`` if it is one of :data:`WINDOWS`, else :class:`ConfigurationError`."""
    if window not in WINDOWS:
        raise ConfigurationError(
            f"a budget's window must be one of {', '.join(WINDOWS)} (UTC calendar windows; "
            f"'total' never resets), got {window!r}"
        )
    return window


def check_limit(limit_usd: object) -> float:
    """``limit_usd`` if it is a finite number of dollars from 0 to a billion."""
    if (
        isinstance(limit_usd, bool)
        or not isinstance(limit_usd, int | float)
        or not 0 <= limit_usd <= _MAX_USD
    ):
        raise ConfigurationError(
            f"a budget's limit must be a number of US dollars from 0 to {_MAX_USD:,.0f}, got "
            f"{limit_usd!r}"
        )
    return float(limit_usd)


def check_amount(amount_usd: object, what: str) -> int:
    """``amount_usd`` (at least 0, finite) in nano-dollars."""
    if (
        isinstance(amount_usd, bool)
        or not isinstance(amount_usd, int | float)
        or not 0 <= amount_usd <= _MAX_USD
    ):
        raise ConfigurationError(
            f"{what} must be a number of US dollars from 0 to {_MAX_USD:,.0f}, got {amount_usd!r}"
        )
    return to_nanos(amount_usd)


def check_key(scope: Scope, key: object) -> str:
    """The stored key for ``scope``: any non-empty text; ``global`` has the one key
    :data:`GLOBAL_KEY` (``None`` stands for it)."""
    if scope == "global":
        if key not in (None, GLOBAL_KEY):
            raise ConfigurationError(
                f"the global scope has one key, '{GLOBAL_KEY}'; got {key!r} (leave it out)"
            )
        return GLOBAL_KEY
    if not isinstance(key, str) or not key:
        raise ConfigurationError(
            f"a {scope} budget needs the {scope}'s name as its key (non-empty text), got {key!r}"
        )
    return key


def check_keys(keys: Mapping[str, str]) -> dict[Scope, str]:
    """The keys a reservation names, with ``global`` added: one per scope."""
    checked: dict[Scope, str] = {}
    for scope, key in keys.items():
        checked[check_scope(scope)] = check_key(check_scope(scope), key)
    checked["global"] = GLOBAL_KEY
    return checked


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit, defined in code.

    Args:
        scope: Whose spend it limits: ``agent`` (by agent name), ``user``, ``tenant`` or
            ``global`` (everything that goes through the ledger).
        limit_usd: The most that may be spent (and reserved) in one window, in US dollars.
        window: ``hour``, ``day`` or ``month``: the UTC calendar hour, day or month that
            contains the moment of the call (spend starts again at 0 in the next one);
            ``total``: never resets.
        key: ``None``: every key of the scope has this limit on its own (every tenant gets
            $100 a day). A name: only that one (tenant ``acme``), which beats the scope-wide
            budget for it. A limit stored in the ledger (:meth:`BudgetLedger.set_limit`) beats
            both.
    """

    scope: Scope
    limit_usd: float
    _: KW_ONLY
    window: Window = "day"
    key: str | None = None

    def __post_init__(self) -> None:
        scope = check_scope(self.scope)
        object.__setattr__(self, "limit_usd", check_limit(self.limit_usd))
        check_window(self.window)
        if self.key is not None or scope == "global":
            object.__setattr__(self, "key", check_key(scope, self.key))


@dataclass(frozen=True, slots=True)
class Settlement:
    """What an earlier reservation's call really cost, settled by the next ``reserve``."""

    reservation_id: str
    actual_usd: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Reserved:
    """``reserve`` granted the amount against every budget that applies.

    ``existing``: the id was reserved before (a resumed run asking again): nothing new was
    counted, and ``amount_usd`` is the first request's. ``settled``: that reservation has
    been settled since. ``budgets``: the budgets charged, as ``scope:key``.
    """

    reservation_id: str
    run_id: str
    amount_usd: float
    budgets: tuple[str, ...]
    existing: bool = False
    settled: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Exhausted:
    """``reserve`` refused: granting the amount would take this budget past its limit.
    Nothing was reserved against any budget."""

    reservation_id: str
    scope: Scope
    key: str
    window: Window
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    requested_usd: float
    source: Literal["stored", "code"]

    @property
    def message(self) -> str:
        """What happened and how to go on."""
        period = "in total" if self.window == "total" else f"per {self.window}"
        return (
            f"the {self.scope} budget '{self.key}' ({self.source}, ${self.limit_usd:,.6g} "
            f"{period}) cannot cover a model call of up to ${self.requested_usd:,.6g}: "
            f"${self.spent_usd:,.6g} spent and ${self.reserved_usd:,.6g} reserved by calls "
            f"under way; raise it with `keel budgets set {self.scope} {self.key} LIMIT_USD "
            f"--window {self.window}` (or BudgetLedger.set_limit), then resume the run"
            + ("" if self.window == "total" else f", or wait for the next {self.window}")
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetStatus:
    """One budget in its current window: its limit, what was spent and what is reserved."""

    scope: Scope
    key: str
    window: Window
    window_start: float
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    remaining_usd: float
    source: Literal["stored", "code"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """An unsettled reservation: it counts against ``budgets`` until settled or released."""

    reservation_id: str
    run_id: str
    amount_usd: float
    created_at: float
    budgets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Effective:
    """The budget that applies to one (scope, key) after precedence, in nano-dollars."""

    scope: Scope
    key: str
    window: Window
    limit: int
    source: Literal["stored", "code"]


def window_start(window: Window, now: float) -> float:
    """The start (a UNIX time) of the UTC calendar ``window`` that contains ``now``;
    ``0.0`` for ``total``."""
    if window == "total":
        return 0.0
    moment = datetime.fromtimestamp(now, UTC)
    if window == "hour":
        moment = moment.replace(minute=0, second=0, microsecond=0)
    elif window == "day":
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        moment = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return moment.timestamp()


def candidates(budgets: Sequence[Budget]) -> dict[tuple[Scope, str | None], Budget]:
    """Code budgets by (scope, key); two for the same pair are refused."""
    found: dict[tuple[Scope, str | None], Budget] = {}
    for budget in budgets:
        if not isinstance(budget, Budget):
            raise ConfigurationError(f"budgets must be Budget objects, got {budget!r}")
        pair = (budget.scope, budget.key)
        if pair in found:
            who = "every key" if budget.key is None else f"'{budget.key}'"
            raise ConfigurationError(
                f"two budgets for the {budget.scope} scope ({who}): {found[pair]!r} and "
                f"{budget!r}; keep one per scope and key"
            )
        found[pair] = budget
    return found


def effective(
    scope: Scope,
    key: str,
    stored: tuple[int, Window] | None,
    code: Mapping[tuple[Scope, str | None], Budget],
) -> Effective | None:
    """The budget for (``scope``, ``key``): the ``stored`` limit (nano-dollars, window), else the
    code budget naming ``key``, else the scope-wide code budget, else none."""
    if stored is not None:
        return Effective(scope, key, stored[1], stored[0], "stored")
    budget = code.get((scope, key)) or code.get((scope, None))
    if budget is None:
        return None
    return Effective(scope, key, budget.window, to_nanos(budget.limit_usd), "code")
