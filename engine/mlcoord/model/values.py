"""Domain values shared by the engine and every plugin.

Small frozen attrs classes: they cross plugin boundaries, so they are immutable, typed and
validated at construction. This module imports nothing of mlcoord's own.
"""

from __future__ import annotations

import enum
import math
import numbers
from typing import Iterable, Optional

import attrs

from mlcoord.model.events import GuardActionKind

_GUARD_KINDS = frozenset(k.value for k in GuardActionKind)   # the one list of kinds


class Action(enum.IntEnum):
    """What a signal asks for. The integer is the direction (+1 long, -1 short, 0 none)."""

    SELL = -1
    HOLD = 0
    BUY = 1

    @property
    def side(self) -> "Side":
        if self is Action.HOLD:
            raise ValueError("HOLD has no side")
        return Side.LONG if self is Action.BUY else Side.SHORT


class Side(enum.IntEnum):
    """Direction of a position: +1 long, -1 short (multiplying a price move by it gives PnL sign)."""

    SHORT = -1
    LONG = 1

    @property
    def opposite(self) -> "Side":
        return Side.SHORT if self is Side.LONG else Side.LONG


# ``Action(x)`` / ``Side(x)`` as attrs converters: the same members and the same errors, without
# the enum's call for a member or one of its integers (value objects a backtest builds tens of
# thousands of times). Named functions: mypy's attrs plugin takes no other converters.
_ACTIONS = {m.value: m for m in Action}
_SIDES = {m.value: m for m in Side}


def action_of(value) -> Action:
    if type(value) is Action:
        return value
    return _ACTIONS[value] if type(value) is int and value in _ACTIONS else Action(value)


def side_of(value) -> Side:
    if type(value) is Side:
        return value
    return _SIDES[value] if type(value) is int and value in _SIDES else Side(value)


class Regime(enum.IntEnum):
    """Market regime of one bar (see ``mlcoord.context``)."""

    RANGING = 0
    TRENDING_UP = 1
    TRENDING_DOWN = 2
    HIGH_VOLATILITY = 3


def _real(value):
    """A numpy or integer real becomes a float (``np.float32(0.7)`` is a fine probability); a bool
    is refused (``True`` is not one); anything else is left for the validator to name."""
    if type(value) is float:
        return value
    if type(value).__name__ in ("bool", "bool_"):       # Python and numpy booleans
        raise ValueError(f"got the bool {value!r}, expected a number")
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _optional_real(value):
    return None if value is None else _real(value)


# Validators run for every value object a decision, a plan or an exit update builds (tens of
# thousands per backtest): one call each, no helper calls.
def _unit_interval(instance, attribute, value):
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):      # False for nan too
        raise ValueError(f"{attribute.name} must be a number in [0, 1], got {value!r}")


def _optional_unit_interval(instance, attribute, value):
    if value is not None:
        _unit_interval(instance, attribute, value)


def _finite_positive(instance, attribute, value):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _optional_positive(instance, attribute, value):
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _reasons(value) -> tuple[str, ...]:
    return tuple(map(str, value))


@attrs.frozen
class MarketContext:
    """Causal description of the market at one closed bar, handed to every component."""

    atr: float                 # average true range, price units
    atr_pct: float             # atr / close
    realised_vol: float        # std of log returns over the context window
    momentum: float            # rate of change over the momentum window (fraction)
    trend_strength: float      # ADX / 100, in [0, 1]
    regime: Regime
    close: float


@attrs.frozen
class Signal:
    """A signal source's (or the coordinator's) answer for one bar."""

    action: Action = attrs.field(converter=action_of)
    confidence: float = attrs.field(converter=_real, validator=_unit_interval)
    reasons: tuple[str, ...] = attrs.field(default=(), converter=_reasons)
    source: str = ""


@attrs.frozen
class Vote:
    """One contributor to a decision: what it said, how sure, with which weight, and why.

    ``weight`` is the share of the ensemble's absolute coefficients (kept for old readers; it
    hides the sign); ``coefficient`` and ``contribution`` are the signed figures."""

    component: str
    action: Action = attrs.field(converter=action_of)
    confidence: float = attrs.field(converter=_real, validator=_unit_interval)
    weight: float = 1.0
    reasons: tuple[str, ...] = attrs.field(default=(), converter=_reasons)
    # probabilities of the learning event (see mlcoord.learning) for each direction, when known
    p_up: Optional[float] = attrs.field(default=None, converter=_optional_real, validator=_optional_unit_interval)
    p_down: Optional[float] = attrs.field(default=None, converter=_optional_real, validator=_optional_unit_interval)
    #: how decision blocks name the component (the engine stamps it with ``component``)
    display_name: str = ""
    #: the ensemble's coefficient on this contributor's log-odds (negative: the ensemble fades it)
    #: and coefficient x this vote's log-odds for the judged direction; None without an ensemble
    coefficient: Optional[float] = None
    contribution: Optional[float] = None

    @property
    def faded(self) -> bool:
        """The ensemble learned to bet against this contributor (a negative coefficient)."""
        return self.coefficient is not None and self.coefficient < 0

    def probability(self, direction: int) -> float:
        """P(event in ``direction``): the component's own if given, else read from its vote."""
        own = self.p_up if direction > 0 else self.p_down
        if own is not None:
            return own
        if self.action == 0:
            return 0.5
        return self.confidence if int(self.action) == direction else 1.0 - self.confidence


@attrs.frozen
class EntryLeg:
    """One rung of an entry ladder: a price and the fraction of the total size placed there."""

    price: float = attrs.field(validator=_finite_positive)
    fraction: float = attrs.field(validator=_unit_interval)
    market: bool = False       # True: fill at the next open (the first rung of a ladder)


def _legs(value: Iterable[EntryLeg]) -> tuple[EntryLeg, ...]:
    return tuple(value)


@attrs.frozen
class EntryPlan:
    """How a position is entered: one or more legs, unfilled legs expiring after some bars."""

    side: Side = attrs.field(converter=side_of)
    legs: tuple[EntryLeg, ...] = attrs.field(converter=_legs)
    expires_after_bars: int = 24
    planner: str = ""
    reasons: tuple[str, ...] = attrs.field(default=(), converter=_reasons)

    @legs.validator
    def _check_legs(self, attribute, legs):
        if not legs:
            raise ValueError("an entry plan needs at least one leg")
        total = sum(leg.fraction for leg in legs)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"entry leg fractions must sum to 1, got {total:.6f}")

    @property
    def average_price(self) -> float:
        """Average entry price if every leg fills."""
        return sum(leg.price * leg.fraction for leg in self.legs)

    @property
    def worst_price(self) -> float:
        """The leg furthest from the market, the one closest to the stop."""
        prices = [leg.price for leg in self.legs]
        return min(prices) if self.side is Side.LONG else max(prices)


@attrs.frozen
class ExitLevels:
    """Protective levels of a position. ``None`` means not set."""

    stop: float = attrs.field(validator=_finite_positive)
    take_profit: Optional[float] = attrs.field(default=None, validator=_optional_positive)
    partial_take_profit: Optional[float] = attrs.field(default=None, validator=_optional_positive)
    partial_fraction: float = attrs.field(default=0.0, validator=_unit_interval)
    reasons: tuple[str, ...] = attrs.field(default=(), converter=_reasons)
    # The exit manager's trailing stop, for an exchange that trails itself (live ``trailing =
    # "exchange"``): the distance (price units) it keeps behind the best price, and the price
    # beyond which it starts trailing (None: at once). None when the manager does not trail.
    trail_distance: Optional[float] = attrs.field(default=None, validator=_optional_positive)
    trail_activation: Optional[float] = attrs.field(default=None, validator=_optional_positive)


@attrs.frozen
class PositionExit:
    """An exit manager's answer that closes ``fraction`` of the position at market (the next open
    in a simulation, a reduce-only market order live), for ``reason`` (a time stop, say). The
    engine namespaces the reason with the manager's name: ``"fixedexits:time_stop"``."""

    reason: str = attrs.field()
    fraction: float = attrs.field(default=1.0)

    @reason.validator
    def _check_reason(self, attribute, value):
        if not isinstance(value, str) or not value.strip() or "\n" in value:
            raise ValueError(f"PositionExit.reason must be a non-empty single-line text, got {value!r}")

    @fraction.validator
    def _check_fraction(self, attribute, value):
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 < value <= 1):
            raise ValueError(f"PositionExit.fraction must be a number in (0, 1], got {value!r}")


@attrs.frozen
class SizingRequest:
    """What the risk manager needs to size (or veto) an entry."""

    symbol: str
    side: Side
    plan: EntryPlan
    stop: float
    confidence: float
    equity: float
    exposure: float            # committed notional: positions net of hedge legs + working entries (quote)
    open_positions: int        # open positions + plans with working entries (hedge legs aside)
    fee_rate: float            # per fill, fraction of notional (taker)
    slippage: float            # fraction of price on market/stop fills
    leverage: float
    context: Optional[MarketContext] = None   # the decision bar's market context


@attrs.frozen
class Sizing:
    """The risk manager's answer: a quantity in base units, or a veto with its reason."""

    quantity: float = 0.0
    risk: float = 0.0          # quote currency lost if every leg fills and the stop is hit
    reasons: tuple[str, ...] = attrs.field(default=(), converter=_reasons)
    veto: Optional[str] = None

    @property
    def approved(self) -> bool:
        return self.veto is None and self.quantity > 0


class OrderKind(enum.Enum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    TRAILING_STOP = "trailing_stop"     # trails the best price by ``Order.callback_rate``


class OrderStatus(enum.Enum):
    OPEN = "open"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@attrs.frozen
class Order:
    """An order the engine placed. ``reduce_only`` orders only shrink a position."""

    id: str
    symbol: str
    side: Side                  # direction of the position this order belongs to
    kind: OrderKind
    quantity: float
    price: Optional[float]      # limit/stop price; a trailing stop's activation price; None for market
    created_at: int             # bar time, ns since epoch (UTC)
    reduce_only: bool = False
    tag: str = ""               # "entry:1/3", "stop", "take_profit", "hedge", ...
    hedge: bool = False
    expires_at: Optional[int] = None
    # a trailing stop's distance behind the best price, as a fraction of it (0.01 = 1 %)
    callback_rate: Optional[float] = attrs.field(default=None, validator=_optional_positive)

    def __attrs_post_init__(self):
        if (self.kind is OrderKind.TRAILING_STOP) != (self.callback_rate is not None):
            raise ValueError(f"order {self.id!r}: callback_rate {self.callback_rate!r} is for trailing stops "
                             f"only, and a trailing stop needs one (kind {self.kind})")


@attrs.frozen
class Fill:
    """A (simulated or real) execution of an order."""

    order_id: str
    symbol: str
    side: Side
    time: int
    price: float
    quantity: float             # always > 0; reduce or add is given by ``reduce_only``
    fee: float
    reduce_only: bool
    tag: str = ""
    hedge: bool = False


@attrs.frozen
class Trade:
    """A closed position: the record learning and statistics feed on."""

    id: str
    symbol: str
    side: Side
    opened_at: int
    closed_at: int
    entry_price: float          # average of entry fills
    exit_price: float           # average of exit fills
    quantity: float             # total entered
    pnl: float                  # net of fees and funding
    fees: float
    funding: float
    exit_reason: str
    entries_planned: int
    entries_filled: int
    confidence: float
    entry_reason: str           # the decisive reason of the entry signal
    hedge: bool = False

    @property
    def return_pct(self) -> float:
        notional = self.entry_price * self.quantity
        return self.pnl / notional if notional else 0.0


@attrs.frozen
class PositionState:
    """Snapshot of an open position (journal, JSON, persistence)."""

    symbol: str
    side: Side
    quantity: float
    entry_price: float
    stop: Optional[float]
    take_profit: Optional[float]
    entries_filled: int
    entries_planned: int
    opened_at: int
    hedge: bool = False
    liquidation_price: Optional[float] = None


@attrs.frozen
class PortfolioState:
    """Snapshot of the whole account at one time."""

    time: int
    equity: float
    cash: float
    peak_equity: float
    drawdown: float
    gross_exposure: float
    positions: tuple[PositionState, ...] = ()


@attrs.frozen
class ExpectedReturn:
    """The cost-aware entry's figure (see :mod:`mlcoord.expected_return`), fractions of the plan's
    average entry price: ``value = probability * reward - (1 - probability) * risk - costs``. An
    entry needs ``value > minimum`` (``[engine] min_expected_return``)."""

    value: float
    probability: float
    reward: float
    risk: float
    costs: float
    minimum: float

    @property
    def passed(self) -> bool:
        return self.value > self.minimum

    def refusal(self) -> str:
        """Why an entry below the minimum is refused (the decision's veto)."""
        return (f"expected net return {self.value * 100:+.3f}% is not above [engine] min_expected_return "
                f"{self.minimum * 100:+.3f}%")

    def describe(self) -> str:
        q = 1.0 - self.probability
        return (f"expected net return {self.value * 100:+.3f}% = {self.probability:.2f} x reward "
                f"{self.reward * 100:.3f}% - {q:.2f} x risk {self.risk * 100:.3f}% - costs {self.costs * 100:.3f}% "
                f"({'above' if self.passed else 'not above'} the minimum {self.minimum * 100:+.3f}%)")


@attrs.frozen
class Decision:
    """Everything that went into one entry decision: the journal's unit."""

    time: int
    symbol: str
    signal: Signal                    # the final signal after the coordinator
    technical: Signal                 # what the signal sources said
    votes: tuple[Vote, ...]
    raw_confidence: float
    confidence: float                 # after calibration
    threshold: float
    outcome: str                      # "entered", "hold", "below_threshold", "vetoed:<who>", ...
    plan: Optional[EntryPlan] = None
    levels: Optional[ExitLevels] = None
    sizing: Optional[Sizing] = None
    veto: Optional[str] = None
    p_signal: Optional[float] = None  # the ensemble's P(event in the technical direction), with ML
    calibrator: str = ""              # the display name of the calibrator that mapped it ("" = none)
    expected_return: Optional[ExpectedReturn] = None   # once a plan has levels (cost-aware entry)


@attrs.frozen
class GuardAction:
    """A portfolio guard's instruction for this bar.

    ``kind`` is ``"open_hedge"`` (hedge ``fraction`` of the net exposure of ``symbol``, or of
    every symbol when it is ``None``), ``"close_hedge"`` or ``"close_all"``.
    """

    kind: str = attrs.field()
    reason: str = attrs.field()
    symbol: Optional[str] = None
    fraction: float = attrs.field(default=0.0, validator=_unit_interval)

    @kind.validator
    def _check_kind(self, attribute, value):
        if value not in _GUARD_KINDS:
            raise ValueError(f"unknown guard action kind {value!r}")


__all__ = [
    "Action", "Side", "Regime", "MarketContext", "Signal", "Vote", "EntryLeg", "EntryPlan", "ExitLevels",
    "PositionExit",
    "SizingRequest", "Sizing", "OrderKind", "OrderStatus", "Order", "Fill", "Trade", "PositionState",
    "PortfolioState", "ExpectedReturn", "Decision", "GuardAction",
]
