"""The ``grid`` entry planner: N equal legs spaced a multiple of ATR apart, against the signal.

The built-in ``dca`` planner lets the signal's confidence decide how many legs and how big.
``grid`` is the opposite choice, for users who do not trust confidence to size entries: every
approved signal gets the same ladder of ``legs`` equal fractions, ``spacing_atr`` x ATR apart,
below the price for a long and above it for a short, so the steps follow volatility (a fixed
0.5 % step is noise on a wild day and a wide gap on a quiet one).

Where the brief was silent:

* the legs never sit on the favourable side of the price ("around" the price): a limit buy
  above the market fills at once, i.e. it is a worse-priced market order; the first leg is a
  market order when ``first_offset_atr`` is 0, otherwise every leg is a limit order and the plan
  may not fill at all before it expires;
* while the ATR is unknown (warm-up) the steps are ``fallback_spacing`` of the price, and the
  plan says so;
* the whole grid never reaches further than ``max_depth`` (50 %) of the price: on an extreme ATR
  the steps shrink proportionally (and the plan says so) instead of placing a long leg at or below
  zero.

The planner is pure (same signal, price and context give the same plan) and cheap (a few float
operations), so it can run on every decision.
"""

from __future__ import annotations

import math

import attrs
from attrs import validators as v

from mlcoord.api import Action, EntryLeg, EntryPlan, MarketContext, Signal

_number = v.instance_of((int, float))


@attrs.frozen
class GridOptions:
    """Options of the ``grid`` entry planner, read from ``[plugins.grid]``.

    legs=4: number of equal legs (1..20); each gets 1/legs of the size.
    spacing_atr=0.5: distance between consecutive legs, in ATRs (> 0, <= 5).
    first_offset_atr=0.0: distance of the first leg from the price, in ATRs (0..10); 0 makes the
        first leg a market order at the next open, more makes every leg a limit order.
    fallback_spacing=0.005: step as a fraction of the price while the ATR is unknown (0 < x <= 0.05).
    max_depth=0.5: the furthest leg is at most this fraction of the price away (0 < x < 1).
    expire_after_bars=24: unfilled legs are cancelled after this many bars (>= 1).
    """

    legs: int = attrs.field(default=4, validator=[v.instance_of(int), v.ge(1), v.le(20)])
    spacing_atr: float = attrs.field(default=0.5, validator=[_number, v.gt(0.0), v.le(5.0)])
    first_offset_atr: float = attrs.field(default=0.0, validator=[_number, v.ge(0.0), v.le(10.0)])
    fallback_spacing: float = attrs.field(default=0.005, validator=[_number, v.gt(0.0), v.le(0.05)])
    max_depth: float = attrs.field(default=0.5, validator=[_number, v.gt(0.0), v.lt(1.0)])
    expire_after_bars: int = attrs.field(default=24, validator=[v.instance_of(int), v.ge(1)])


class GridPlanner:
    """Turns an approved BUY/SELL signal into ``legs`` equal legs ``spacing_atr`` ATRs apart."""

    def __init__(self, options: GridOptions = GridOptions()):
        self.options = options

    def offsets(self, price: float, context: MarketContext) -> tuple[tuple[float, ...], list[str]]:
        """Distance of each leg from ``price`` as a fraction of it, and the words for why."""
        o = self.options
        atr_pct = context.atr_pct
        if math.isfinite(atr_pct) and atr_pct > 0:
            first, step = o.first_offset_atr * atr_pct, o.spacing_atr * atr_pct
            why = [f"{o.legs} equal legs every {o.spacing_atr:g} ATR (ATR {atr_pct:.2%} of price)"]
        else:
            first = o.first_offset_atr * o.fallback_spacing / o.spacing_atr
            step = o.fallback_spacing
            why = [f"{o.legs} equal legs every {o.fallback_spacing:.2%} of price (no ATR yet)"]
        depth = first + step * (o.legs - 1)
        if depth > o.max_depth:
            scale = o.max_depth / depth
            first, step = first * scale, step * scale
            why.append(f"grid depth {depth:.1%} capped at {o.max_depth:.0%} of price")
        return tuple(first + k * step for k in range(o.legs)), why

    def plan(self, signal: Signal, price: float, context: MarketContext) -> EntryPlan:
        if signal.action is Action.HOLD:
            raise ValueError("cannot plan an entry for a HOLD signal")
        if not (isinstance(price, (int, float)) and math.isfinite(price) and price > 0):
            raise ValueError(f"price must be a finite number > 0, got {price!r}")
        o = self.options
        side = signal.action.side
        offsets, reasons = self.offsets(price, context)
        direction = -int(side)            # long: legs below the price; short: above
        fraction = 1.0 / o.legs
        legs = tuple(EntryLeg(price=price * (1.0 + direction * off), fraction=fraction, market=(off == 0.0))
                     for off in offsets)
        reasons.append("ladder " + " / ".join(f"{leg.price:.6g}" for leg in legs))
        return EntryPlan(side=side, legs=legs, expires_after_bars=o.expire_after_bars,
                         planner="grid", reasons=tuple(reasons))


__all__ = ["GridOptions", "GridPlanner"]
