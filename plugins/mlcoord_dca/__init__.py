"""DCA entry planner: the calibrated confidence of a signal decides how cautiously it is entered.

A sure signal is entered almost at once (2 legs), a doubtful one is spread over a ladder of up to
4 legs stepped away from the price in the adverse direction, so a wrong-footed entry averages in
at better prices instead of taking the whole size at the first print. The product rule is:
confidence >= 0.75 -> 2 entries, 0.65 <= confidence < 0.75 -> 3, below 0.65 -> 4.

The first leg is always a market order at ``price``; the others are limit orders below the price
for a long (BUY) and above it for a short (SELL). Unfilled legs expire after
``expire_after_bars`` bars. The planner is pure: same signal, price and context, same plan.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from mlcoord.api import Action, EntryLeg, EntryPlan, MarketContext, Signal, hookimpl

MLCOORD_HOOKS_VERSION = 1

_SUM_TOLERANCE = 1e-9


def _floats(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


@attrs.frozen
class Ladder:
    """One ladder shape: size fraction and step of each leg, first leg first.

    ``offsets`` are fractions of the price (0.005 = 0.5 %) used by default; ``atr_offsets`` are
    multiples of the ATR used instead when ``DCAOptions.atr_scaled_steps`` is true. Both start at 0
    (the market leg) and never decrease, so every leg is at least as far from the price as the
    previous one; ``fractions`` sum to 1.
    """

    fractions: tuple[float, ...] = attrs.field(converter=_floats)
    offsets: tuple[float, ...] = attrs.field(converter=_floats)
    atr_offsets: tuple[float, ...] = attrs.field(
        converter=_floats, default=attrs.Factory(lambda self: _default_atr_offsets(len(self.fractions)), takes_self=True))

    @fractions.validator
    def _check_fractions(self, attribute, value):
        if not value:
            raise ValueError("fractions must not be empty")
        if any(not (math.isfinite(f) and 0.0 < f <= 1.0) for f in value):
            raise ValueError(f"fractions must each be in (0, 1], got {value}")
        total = math.fsum(value)
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise ValueError(f"fractions must sum to 1 (within {_SUM_TOLERANCE}), got {total!r} from {value}")

    @offsets.validator
    def _check_offsets(self, attribute, value):
        _check_steps(self, attribute.name, value, upper=1.0)

    @atr_offsets.validator
    def _check_atr_offsets(self, attribute, value):
        _check_steps(self, attribute.name, value, upper=math.inf)


def _check_steps(ladder: Ladder, name: str, value: tuple[float, ...], upper: float) -> None:
    if len(value) != len(ladder.fractions):
        raise ValueError(f"{name} must have one entry per fraction ({len(ladder.fractions)}), got {len(value)}: {value}")
    if any(not (math.isfinite(v) and 0.0 <= v < upper) for v in value):
        raise ValueError(f"{name} must each be >= 0{' and < 1' if upper == 1.0 else ''} and finite, got {value}")
    if value[0] != 0.0:
        raise ValueError(f"{name} must start at 0 (the first leg is the market order), got {value}")
    if any(b < a for a, b in zip(value, value[1:])):
        raise ValueError(f"{name} must be non-decreasing, got {value}")


def _ladder(value: Any) -> Ladder:
    """Accept a Ladder, a mapping of its fields or a ``(fractions, offsets[, atr_offsets])`` tuple."""
    if isinstance(value, Ladder):
        return value
    if isinstance(value, dict):
        return Ladder(**value)
    return Ladder(*value)


def _default_atr_offsets(n: int) -> tuple[float, ...]:
    return tuple(0.5 * k for k in range(n))


def _legs(n: int):
    def check(instance, attribute, value: Ladder):
        if len(value.fractions) != n:
            raise ValueError(f"{attribute.name} must have exactly {n} legs, got {len(value.fractions)}: {value.fractions}")
    return check


def _unit(instance, attribute, value):
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{attribute.name} must be in [0, 1], got {value!r}")


@attrs.frozen
class DCAOptions:
    """Options of ``[plugins.dca]``.

    * ``high_confidence = 0.75``: at or above it, 2 entries (``two``);
    * ``medium_confidence = 0.65``: at or above it (and below ``high_confidence``), 3 entries
      (``three``); below it, 4 entries (``four``);
    * ``two = (0.6, 0.4)`` at offsets ``(0, 0.005)``;
    * ``three = (0.40, 0.35, 0.25)`` at ``(0, 0.005, 0.010)`` (the product's 40 / 35 / 25 % at
      0.5 % steps: 40000 -> 39800 -> 39600 for a long);
    * ``four = (0.30, 0.25, 0.25, 0.20)`` at ``(0, 0.005, 0.010, 0.015)``;
    * every ladder's ``atr_offsets`` default to 0, 0.5, 1.0, 1.5 ATR;
    * ``expire_after_bars = 24``: unfilled limit legs are cancelled after this many bars;
    * ``atr_scaled_steps = False``: when true, leg ``k`` sits ``atr_offsets[k] * atr_pct`` away
      from the price (steps follow volatility), instead of the fixed ``offsets[k]``. If the
      context has no ATR yet (warm-up), the fixed offsets are used and the plan says so.

    In TOML a ladder is a table: ``three = { fractions = [0.5, 0.3, 0.2], offsets = [0, 0.004, 0.008] }``.
    """

    high_confidence: float = attrs.field(default=0.75, validator=_unit)
    medium_confidence: float = attrs.field(default=0.65, validator=_unit)
    two: Ladder = attrs.field(
        default=Ladder((0.6, 0.4), (0.0, 0.005), (0.0, 0.5)), converter=_ladder, validator=_legs(2))
    three: Ladder = attrs.field(
        default=Ladder((0.40, 0.35, 0.25), (0.0, 0.005, 0.010), (0.0, 0.5, 1.0)), converter=_ladder, validator=_legs(3))
    four: Ladder = attrs.field(
        default=Ladder((0.30, 0.25, 0.25, 0.20), (0.0, 0.005, 0.010, 0.015), (0.0, 0.5, 1.0, 1.5)),
        converter=_ladder, validator=_legs(4))
    expire_after_bars: int = attrs.field(
        default=24, validator=[attrs.validators.instance_of(int), attrs.validators.ge(1)])
    atr_scaled_steps: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    def __attrs_post_init__(self):
        if not self.medium_confidence < self.high_confidence:
            raise ValueError(f"medium_confidence ({self.medium_confidence}) must be below "
                             f"high_confidence ({self.high_confidence})")


class DCAPlanner:
    """Turns an approved BUY/SELL signal into a 2-, 3- or 4-leg entry ladder by confidence."""

    def __init__(self, options: DCAOptions = DCAOptions()):
        self.options = options

    def entries_for(self, confidence: float) -> int:
        """Number of legs for a calibrated confidence (monotone non-increasing in it)."""
        o = self.options
        if confidence >= o.high_confidence:
            return 2
        if confidence >= o.medium_confidence:
            return 3
        return 4

    def plan(self, signal: Signal, price: float, context: MarketContext) -> EntryPlan:
        if signal.action is Action.HOLD:
            raise ValueError("cannot plan an entry for a HOLD signal")
        if not (isinstance(price, (int, float)) and math.isfinite(price) and price > 0):
            raise ValueError(f"price must be a finite number > 0, got {price!r}")
        o = self.options
        side = signal.action.side
        c = signal.confidence
        n = self.entries_for(c)
        ladder = {2: o.two, 3: o.three, 4: o.four}[n]

        reasons = [_count_reason(c, n, o)]
        atr_pct = context.atr_pct
        if o.atr_scaled_steps and math.isfinite(atr_pct) and atr_pct > 0:
            steps = tuple(m * atr_pct for m in ladder.atr_offsets)
            reasons.append(f"steps of {', '.join(f'{m:g}' for m in ladder.atr_offsets[1:])} ATR "
                           f"(ATR {atr_pct:.2%} of price)")
        else:
            steps = ladder.offsets
            if o.atr_scaled_steps:
                reasons.append("no ATR yet: fixed steps used")

        direction = -int(side)            # long: legs below the price; short: above
        legs = tuple(
            EntryLeg(price=price * (1.0 + direction * step), fraction=f, market=(k == 0))
            for k, (f, step) in enumerate(zip(ladder.fractions, steps))
        )
        reasons.append("ladder " + " / ".join(f"{leg.price:.2f}" for leg in legs))
        reasons.append("sizes " + " / ".join(f"{leg.fraction:.0%}" for leg in legs))
        return EntryPlan(side=side, legs=legs, expires_after_bars=o.expire_after_bars,
                         planner="dca", reasons=tuple(reasons))


def _count_reason(c: float, n: int, o: DCAOptions) -> str:
    if n == 2:
        return f"confidence {c:.4g} >= {o.high_confidence:.2f}: 2 entries"
    if n == 3:
        return f"confidence {c:.4g} in [{o.medium_confidence:.2f}, {o.high_confidence:.2f}): 3 entries"
    return f"confidence {c:.4g} < {o.medium_confidence:.2f}: 4 entries"


@hookimpl
def register_entry_planners(register):
    register("dca", DCAPlanner, options=DCAOptions,
             description="confidence-adaptive DCA ladder: 2 / 3 / 4 entries at >= 0.75 / >= 0.65 / below",
             examples=({"atr_scaled_steps": True}, {"high_confidence": 0.8, "medium_confidence": 0.6}))


__all__ = ["DCAOptions", "DCAPlanner", "Ladder", "register_entry_planners"]
