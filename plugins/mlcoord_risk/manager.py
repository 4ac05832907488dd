"""The ``risk`` sizer: worst-case loss per unit, risk budget, caps, optional Kelly."""

from __future__ import annotations

import collections
import math
from typing import Optional, Sequence

import attrs

from mlcoord.api import AccountSettings, Decision, EntryLeg, Side, Sizing, SizingRequest, Trade, integer, number

from mlcoord_risk.kelly import KellyEstimate, kelly_estimate


@attrs.frozen
class RiskOptions:
    """Options of the ``risk`` sizer, from ``[plugins.risk]``.

    * ``risk_per_trade`` (0.01): fraction of equity lost if every leg fills and the stop is hit,
      fees and slippage included. At most 0.25 (a typo such as ``1`` for 1% is refused).
    * ``max_position_fraction`` (0.25): position notional at full fill <= this x equity x leverage.
    * ``max_total_exposure`` (1.0): committed exposure (positions net of their hedge legs, plus
      working entry orders) + new notional <= this x equity x leverage.
    * ``max_leverage`` (3.0): a request with more leverage is vetoed; a config whose ``[backtest]
      leverage`` is above it is refused at start.
    * ``min_notional`` (10.0, quote): a sized position smaller than this is vetoed (exchange dust).
    * ``use_kelly`` (false): scale risk down by fractional Kelly from this sizer's own trade history.
    * ``kelly_fraction`` (0.25): the fraction of the Kelly bet used.
    * ``kelly_min_trades`` (30): closed trades needed before Kelly applies (before: plain risk).
    * ``kelly_lookback`` (200): Kelly uses the last this-many trades (0: all of them).
    * ``kelly_floor`` (0.0025): risk fraction used when Kelly says the edge is thin or negative.
      Kelly only ever *reduces* risk: ``min(risk_per_trade, max(kelly_fraction * f*, kelly_floor))``.
      With a negative f* the default keeps trading at the floor, because vetoing every entry
      would freeze the very history that could show the edge has come back; set ``kelly_floor = 0``
      to veto entries while f* <= 0 instead.
    """

    risk_per_trade: float = attrs.field(default=0.01, validator=number(
        0.0, 0.25, lo_open=True, why=" (a fraction: 0.01 is 1% of equity)"))
    max_position_fraction: float = attrs.field(default=0.25, validator=number(0.0, 1.0, lo_open=True))
    max_total_exposure: float = attrs.field(default=1.0, validator=number(0.0, 1.0, lo_open=True))
    max_leverage: float = attrs.field(default=3.0, validator=number(1.0, 125.0))
    min_notional: float = attrs.field(default=10.0, validator=number(0.0))
    use_kelly: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    kelly_fraction: float = attrs.field(default=0.25, validator=number(0.0, 1.0, lo_open=True))
    kelly_min_trades: int = attrs.field(default=30, validator=integer(2))
    kelly_lookback: int = attrs.field(default=200, validator=integer(0))
    kelly_floor: float = attrs.field(default=0.0025, validator=number(0.0, 0.25))

    def check_account(self, account: AccountSettings) -> None:
        """A leverage above ``max_leverage`` would veto every entry (a year of ``vetoed:risk``, no
        trade, exit 0): refused when the config is read instead."""
        if account.leverage > self.max_leverage:
            raise ValueError(f"max_leverage must be >= the account's leverage {account.leverage:g} ([backtest] "
                             f"leverage), got {self.max_leverage:g}: every entry would be vetoed; raise "
                             "max_leverage or lower the leverage")

    @kelly_lookback.validator
    def _lookback_covers_min(self, attribute, value):
        if value and value < self.kelly_min_trades:
            raise ValueError(f"kelly_lookback ({value}) must be 0 (all trades) or >= kelly_min_trades "
                             f"({self.kelly_min_trades}), or Kelly could never apply")


def full_fill_loss_per_unit(side: Side, legs: Sequence[EntryLeg], stop: float, fee_rate: float,
                            slippage: float) -> tuple[float, float]:
    """(loss, cost) per unit of base if every leg fills and the stop is hit.

    ``cost`` is the average fill price: market legs pay slippage (``p(1+s)`` long, ``p(1-s)``
    short), limit legs fill at their price. The stop exits at ``stop(1-s)`` long / ``stop(1+s)``
    short. Fees are ``fee_rate`` on every entry fill's notional and on the exit notional.
    """
    d = int(side)
    cost = sum(leg.fraction * (leg.price * (1.0 + d * slippage) if leg.market else leg.price) for leg in legs)
    exit_price = stop * (1.0 - d * slippage)
    return d * (cost - exit_price) + fee_rate * (cost + exit_price), cost


class RiskManager:
    """Sizer component (see the package docstring). Keeps its own trade history for Kelly."""

    def __init__(self, options: Optional[RiskOptions] = None):
        self.options = options or RiskOptions()
        lookback = self.options.kelly_lookback or None
        self._returns: collections.deque[float] = collections.deque(maxlen=lookback)
        self._kelly: Optional[KellyEstimate] = None

    # -- learning -------------------------------------------------------------------------------
    def on_trade_closed(self, trade: Trade, decision: Optional[Decision] = None) -> None:
        """Record a closed trade's return for Kelly. Hedges are not strategy bets: ignored."""
        if trade.hedge:
            return
        self._returns.append(trade.return_pct)
        self._kelly = None  # recomputed lazily at the next sizing

    @property
    def kelly(self) -> Optional[KellyEstimate]:
        """The current Kelly estimate, or None before ``kelly_min_trades`` trades."""
        if len(self._returns) < self.options.kelly_min_trades:
            return None
        if self._kelly is None:
            self._kelly = kelly_estimate(self._returns)
        return self._kelly

    # -- sizing ---------------------------------------------------------------------------------
    def risk_fraction(self) -> tuple[float, Optional[str]]:
        """(fraction of equity to risk, Kelly reason or None). 0 means Kelly vetoes."""
        o = self.options
        kelly = self.kelly if o.use_kelly else None
        if kelly is None:
            return o.risk_per_trade, None
        wanted = o.kelly_fraction * kelly.f_star
        frac = min(o.risk_per_trade, max(wanted, o.kelly_floor))
        if frac == o.risk_per_trade:
            note = "capped at risk_per_trade: Kelly never raises risk"
        elif wanted < o.kelly_floor:
            note = f"floored at {o.kelly_floor:.2%}" if frac > 0 else "no edge"
        else:
            note = f"{o.kelly_fraction:g} x f* = {wanted:.2%}"
        return frac, f"kelly {kelly.describe()}: risk {frac:.2%} ({note})"

    def size(self, request: SizingRequest) -> Sizing:
        o = self.options
        r = request
        veto = _check_request(r, o)
        if veto:
            return Sizing(veto=veto)
        loss_unit, cost = full_fill_loss_per_unit(r.side, r.plan.legs, r.stop, r.fee_rate, r.slippage)
        if not (loss_unit > 0 and math.isfinite(loss_unit)):  # unreachable with a valid stop; belt and braces
            return Sizing(veto=f"invalid stop {r.stop:g}: loss per unit {loss_unit:g} is not positive")

        reasons: list[str] = []
        frac, kelly_reason = self.risk_fraction()
        if kelly_reason:
            reasons.append(kelly_reason)
        if frac <= 0:
            return Sizing(reasons=reasons, veto=f"kelly: no edge ({self.kelly.describe()}), kelly_floor 0")
        budget = frac * r.equity
        qty = budget / loss_unit
        reasons.append(f"risk {frac:.2%} of {r.equity:.2f} = {budget:.2f}; "
                       f"loss/unit {loss_unit:.6g} -> qty {qty:.6g}")

        buying_power = r.equity * r.leverage
        position_cap = o.max_position_fraction * buying_power
        if qty * cost > position_cap:
            qty = position_cap / cost
            reasons.append(f"capped by max_position_fraction {o.max_position_fraction:g}: "
                           f"notional <= {position_cap:.2f} -> qty {qty:.6g}")
        room = o.max_total_exposure * buying_power - r.exposure
        if room <= 0:
            return Sizing(reasons=reasons, veto=(
                f"max_total_exposure {o.max_total_exposure:g} reached: exposure {r.exposure:.2f} "
                f">= {o.max_total_exposure * buying_power:.2f}"))
        if qty * cost > room:
            qty = room / cost
            reasons.append(f"capped by max_total_exposure {o.max_total_exposure:g}: exposure {r.exposure:.2f}, "
                           f"room {room:.2f} -> qty {qty:.6g}")
        notional = qty * cost
        if notional < o.min_notional:
            return Sizing(reasons=reasons, veto=f"below minimum notional: {notional:.2f} < {o.min_notional:.2f}")
        risk = qty * loss_unit
        reasons.append(f"notional {notional:.2f}, full-fill stop loss {risk:.2f} ({risk / r.equity:.2%} of equity)")
        return Sizing(quantity=qty, risk=risk, reasons=reasons)


def _check_request(r: SizingRequest, o: RiskOptions) -> Optional[str]:
    """The veto reason for a request that cannot be sized safely, else None."""
    if not (math.isfinite(r.equity) and r.equity > 0):
        return f"equity {r.equity:.2f} <= 0: no new positions"
    if not (math.isfinite(r.leverage) and r.leverage > 0):
        return f"invalid leverage {r.leverage!r}"
    if r.leverage > o.max_leverage:
        return f"leverage {r.leverage:g} above max_leverage {o.max_leverage:g}"
    if not (0 <= r.fee_rate < 1 and 0 <= r.slippage < 1):
        return f"invalid fee_rate {r.fee_rate!r} or slippage {r.slippage!r}"
    if not (math.isfinite(r.exposure) and r.exposure >= 0):
        return f"invalid exposure {r.exposure!r}"
    if r.plan.side != r.side:
        return f"plan side {r.plan.side.name} differs from request side {r.side.name}"
    worst = r.plan.worst_price
    if not (math.isfinite(r.stop) and r.stop > 0):
        return f"invalid stop {r.stop!r}"
    if r.stop == worst:
        return f"invalid stop {r.stop:g}: zero distance to the worst leg {worst:g}"
    if (r.side is Side.LONG and r.stop > worst) or (r.side is Side.SHORT and r.stop < worst):
        where = "below" if r.side is Side.LONG else "above"
        return f"invalid stop {r.stop:g}: must be {where} the worst leg {worst:g} for a {r.side.name.lower()}"
    return None
