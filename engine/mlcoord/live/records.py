"""Typed records the persistence store reads and writes.

They wrap the engine's own values (:class:`~mlcoord.model.Order`, :class:`~mlcoord.model.Fill`,
:class:`~mlcoord.model.EntryPlan`, :class:`~mlcoord.model.ExitLevels`) with what only live trading
needs: the exchange's view of an order, the idempotency key of a fill, and the plan that keeps a
DCA ladder, its stop, take profit, trailing stop and hedge leg together.
"""

from __future__ import annotations

import enum
import math
from typing import Optional

import attrs

from mlcoord.model import EntryPlan, ExitLevels, Fill, Order, Side


class OrderState(enum.Enum):
    """Where an order is in its life, as far as the bot knows.

    ``PENDING`` is written *before* the order is sent: after a crash, a pending order is one whose
    fate must be asked of the exchange (by its client id), never one to place again blindly.
    """

    PENDING = "pending"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def rank(self) -> int:
        """Progress order: a stored state never moves to a lower rank (a stale report is ignored)."""
        return 3 if self in _TERMINAL else _LIVE_RANK[self]


_TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.EXPIRED, OrderState.REJECTED})
_LIVE_RANK = {OrderState.PENDING: 0, OrderState.OPEN: 1, OrderState.PARTIALLY_FILLED: 2}
LIVE_STATES = tuple(s for s in OrderState if not s.terminal)

#: order tags that protect a position (see :meth:`Store.plans_without_stop`)
STOP_TAGS = ("stop", "trailing_stop")


def _non_negative(instance, attribute, value):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _positive(instance, attribute, value):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


@attrs.frozen
class OrderRecord:
    """An order and its exchange-side state. ``order.id`` is the client order id (the store's key)."""

    order: Order
    plan_id: Optional[str] = None
    state: OrderState = attrs.field(default=OrderState.PENDING, converter=OrderState)
    filled_quantity: float = attrs.field(default=0.0, validator=_non_negative)
    average_price: Optional[float] = None      # of the filled quantity
    exchange_order_id: Optional[str] = None
    updated_at: int = 0                        # ns since epoch of the last change the bot saw
    reason: str = ""                           # why it was rejected / cancelled, as the exchange said

    @property
    def client_order_id(self) -> str:
        return self.order.id

    @property
    def remaining(self) -> float:
        return max(0.0, self.order.quantity - self.filled_quantity)


@attrs.frozen
class FillRecord:
    """One execution of an order, with the key that makes recording it idempotent.

    The key is the exchange's trade id when it gives one, else (client order id, ``sequence``)
    where ``sequence`` numbers the fills of that order (0, 1, ...) as the bot observed them.
    """

    fill: Fill
    trade_id: Optional[str] = None
    sequence: int = 0
    fee_currency: str = ""

    @property
    def key(self) -> str:
        if self.trade_id:
            return f"t:{self.fill.symbol}:{self.trade_id}"
        return f"o:{self.fill.order_id}:{self.sequence}"


@attrs.frozen
class TrailingStop:
    """A trailing stop: it starts trailing once price reaches ``activation_price`` (None: at once)
    and then follows the best price at ``callback_rate`` (a fraction, 0.01 = 1 %)."""

    callback_rate: float = attrs.field(validator=_positive)
    activation_price: Optional[float] = None
    on_exchange: bool = True                    # False: the bot moves the stop itself


@attrs.frozen
class HedgeLeg:
    """The opposite-side position that hedges a plan's entry (futures, hedge mode), as wanted.

    A plan holds one while the hedging guard wants its position hedged; ``None`` once released.
    ``quantity`` is ``fraction`` times what the plan holds now: resized (journaled here first,
    then an order for the difference) when entries fill or a partial take profit sells, as the
    backtest does. ``number`` counts the plan's hedge
    legs (1, 2, ...: a hedge released and turned on again is a new leg); the leg's orders are
    tagged ``hedge:open:<number>`` / ``hedge:close:<number>``, so a restart finds them by client id.
    """

    side: Side = attrs.field(converter=Side)
    quantity: float = attrs.field(validator=_positive)
    leverage: float = attrs.field(default=1.0, validator=_positive)
    margin_mode: str = "isolated"
    number: int = attrs.field(default=1, validator=[attrs.validators.instance_of(int), attrs.validators.ge(1)])
    fraction: Optional[float] = attrs.field(default=None)

    @fraction.validator
    def _check_fraction(self, attribute, value):
        if value is not None and not (isinstance(value, (int, float)) and 0 < value <= 1):
            raise ValueError(f"fraction must be a number in (0, 1], got {value!r}")


class PlanStatus(enum.Enum):
    ACTIVE = "active"          # entries pending or a position open
    CLOSED = "closed"          # position exited
    CANCELLED = "cancelled"    # nothing filled and the plan was abandoned


@attrs.frozen
class PlanRecord:
    """One journaled entry: everything needed to protect its position after a restart.

    ``levels.stop`` is the stop in force now (the bot's trailing updates it through ``save_plan``;
    with ``trailing`` on the exchange it stays at the initial stop and the exchange trails).
    ``hedge`` is the hedge leg the plan wants now (None: none, or released).
    ``stop_on_exchange`` is False on exchanges without stop orders: the bot monitors the stop.
    """

    plan_id: str
    symbol: str
    decision_time: int                          # ns since epoch of the deciding bar
    quantity: float = attrs.field(validator=_positive)   # base units if every leg fills
    entry: EntryPlan
    levels: ExitLevels
    trailing: Optional[TrailingStop] = None
    hedge: Optional[HedgeLeg] = None
    status: PlanStatus = attrs.field(default=PlanStatus.ACTIVE, converter=PlanStatus)
    stop_on_exchange: bool = True
    updated_at: int = 0

    @property
    def side(self) -> Side:
        return self.entry.side


@attrs.frozen
class PositionRecord:
    """An open position as the bot's fills built it (one per symbol, side and hedge flag)."""

    symbol: str
    side: Side = attrs.field(converter=Side)
    quantity: float
    entry_price: float                          # average of the entry fills still open
    opened_at: int
    updated_at: int
    hedge: bool = False
    realised_pnl: float = 0.0                   # of the part already closed, before fees
    fees: float = 0.0
    funding: float = 0.0                        # paid (+) or received (-), quote currency
    liquidation_price: Optional[float] = None
    plan_id: Optional[str] = None               # the plan of the latest entry fill
