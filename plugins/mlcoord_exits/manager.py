"""Initial stop / take profit from ATR and confirmed pivots, then a trailing stop and dynamic target.

Everything per bar is plain float math on Python lists built once in ``prepare``: no numpy
scalar access, no allocation unless a level actually moves.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Optional

import numpy as np

from mlcoord.api import EntryPlan, ExitLevels, Side, features
from mlcoord.api import MarketData, PositionView

from mlcoord_exits.options import ExitOptions


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _pivot_events(latest: np.ndarray) -> tuple[list[int], list[float]]:
    """Bars at which a new pivot got confirmed, and its level, from a ``confirmed_pivots`` array.

    The array holds the latest confirmed level at every bar, so a change marks a confirmation
    (two successive pivots at exactly the same level merge into one: same level, same use).
    """
    x = np.asarray(latest, dtype=np.float64)
    finite = np.isfinite(x)
    changed = finite.copy()
    changed[1:] &= ~(x[1:] == x[:-1])
    idx = np.flatnonzero(changed)
    return idx.tolist(), x[idx].tolist()


def _fallback_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Mean true range of all bars so far: a causal stand-in while the ATR warms up."""
    tr = features.true_range(high, low, close)
    ok = np.isfinite(tr)
    count = np.cumsum(ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.cumsum(np.where(ok, tr, 0.0)) / count


def _volatility_factor(realised_vol: np.ndarray, window: int, lo: float, hi: float) -> np.ndarray:
    """sqrt(realised vol / its rolling median), clamped; 1.0 while either is unknown."""
    rv = np.asarray(realised_vol, dtype=np.float64)
    median = features.rolling_median(rv, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.sqrt(rv / median)
    factor = np.where(np.isfinite(factor), factor, 1.0)
    return np.clip(factor, lo, hi)


class ExitManager:
    """The ``exits`` component: ``prepare(data)`` returns a :class:`PreparedExits` for one symbol."""

    def __init__(self, options: ExitOptions = ExitOptions()):
        self.options = options

    def prepare(self, data: MarketData) -> "PreparedExits":
        return PreparedExits(data, self.options)


class PreparedExits:
    """Causal per-bar arrays of one symbol and the stop / target rules (a ``PositionManager``).

    Nothing here reads signals or ML output: after entry, exits depend on prices only.
    """

    def __init__(self, data: MarketData, options: ExitOptions):
        o = self.options = options
        c, ctx = data.candles, data.context
        support, resistance = features.confirmed_pivots(c.high, c.low, o.pivot_left, o.pivot_right)
        self._supports = _pivot_events(support)
        self._resistances = _pivot_events(resistance)
        atr = np.asarray(ctx.atr, dtype=np.float64)
        self._atr = atr.tolist()
        self._fallback_atr = _fallback_atr(c.high, c.low, c.close).tolist()
        self._close = np.asarray(ctx.close, dtype=np.float64).tolist()
        self._momentum = np.asarray(ctx.momentum, dtype=np.float64).tolist()
        self._trend = np.asarray(ctx.trend_strength, dtype=np.float64).tolist()
        self._vol_factor = _volatility_factor(
            ctx.realised_vol, o.vol_median_window, o.trail_factor_min, o.trail_factor_max).tolist()

    def __len__(self) -> int:
        return len(self._close)

    # -- initial levels ------------------------------------------------------------------------

    def _nearest(self, events, i: int, ref: float, direction: int, limit: float) -> Optional[float]:
        """Nearest level confirmed in ``(i - lookback, i]`` lying ``direction``-wards of ``ref``,
        at most ``limit`` away (direction -1: below ``ref``, +1: above)."""
        bars, levels = events
        # the window's levels, newest first (the first of equal gaps wins), as one slice
        first, last = bisect_right(bars, i - self.options.pivot_lookback_bars), bisect_right(bars, i)
        best, best_gap = None, math.inf
        for level in reversed(levels[first:last]):
            gap = direction * (level - ref)
            if 0.0 < gap <= limit and gap < best_gap:
                best, best_gap = level, gap
        return best

    def atr_at(self, i: int) -> tuple[float, bool]:
        """ATR at bar ``i`` and whether it is the warm-up stand-in (mean true range so far)."""
        a = self._atr[i]
        if a > 0.0:
            return a, False
        return self._fallback_atr[i], True

    def initial(self, i: int, side: Side, plan: EntryPlan) -> ExitLevels:
        """Stop beyond the worst leg (support- or ATR-based), target at resistance or min R/R.

        Long (shorts mirror it): with ``W`` the worst leg and ``A`` the ATR at bar ``i``, the stop
        is ``S - support_buffer_atr * A`` for the highest support ``S`` confirmed by bar ``i``
        (within ``pivot_lookback_bars``) with ``W - max_stop_atr * A <= S < W``, else
        ``W - atr_stop_multiplier * A``; its distance from ``W`` is then clamped to
        ``[min_stop_atr, max_stop_atr] * A``. With ``P`` the average entry and ``risk = P - stop``,
        the target is the lowest resistance ``R`` confirmed by bar ``i`` (within the lookback) above
        every leg of the plan (hence above ``P``, and not one the market already trades above) if
        ``(R - P) / risk >= min_reward_risk``, else ``P + min_reward_risk * risk``.
        """
        o = self.options
        side = side if type(side) is Side else Side(side)
        if plan.side is not side:
            raise ValueError(f"plan side {plan.side.name} differs from position side {side.name}")
        s = int(side)
        long = side is Side.LONG
        worst, average = plan.worst_price, plan.average_price
        atr, warming = self.atr_at(i)
        if not atr > 0.0:
            raise ValueError(f"no price range known at bar {i}: cannot place a stop")
        reasons = [f"ATR warming up: mean true range {_fmt(atr)} used"] if warming else []

        name, sign = ("support", "-") if long else ("resistance", "+")
        level = self._nearest(self._supports if long else self._resistances, i, worst, -s,
                              o.max_stop_atr * atr)
        if level is not None:
            raw = level - s * o.support_buffer_atr * atr
            why = f"{name} {_fmt(level)} {sign} {o.support_buffer_atr:g} ATR"
        else:
            raw = worst - s * o.atr_stop_multiplier * atr
            why = f"worst entry {_fmt(worst)} {sign} {o.atr_stop_multiplier:g} ATR"
        distance = s * (worst - raw)
        clamped = min(max(distance, o.min_stop_atr * atr), o.max_stop_atr * atr)
        stop = worst - s * clamped
        if clamped != distance:
            reasons.append(f"stop {_fmt(stop)} = worst entry {_fmt(worst)} {sign} {clamped / atr:g} ATR "
                           f"({why} is {distance / atr:.2f} ATR, outside [{o.min_stop_atr:g}, {o.max_stop_atr:g}])")
        else:
            reasons.append(f"stop {_fmt(stop)} = {why}")
        if not stop > 0.0:
            raise ValueError(f"stop {stop!r} is not a price: ATR {atr!r} is too large for entry {worst!r}")

        risk = s * (average - stop)
        target_name = "resistance" if long else "support"
        # beyond every leg, not just the average: a level the market is already past is no target
        beyond = max(leg.price for leg in plan.legs) if long else min(leg.price for leg in plan.legs)
        target = self._nearest(self._resistances if long else self._supports, i, beyond, s, math.inf)
        reward_risk = s * (target - average) / risk if target is not None else 0.0
        if target is not None and reward_risk >= o.min_reward_risk:
            take_profit = target
            reasons.append(f"take profit {_fmt(take_profit)} at {target_name}, R/R {reward_risk:.2f}")
        else:
            take_profit = average + s * o.min_reward_risk * risk
            seen = (f"{target_name} {_fmt(target)} gives only R/R {reward_risk:.2f}" if target is not None
                    else f"no confirmed {target_name} beyond")
            reasons.append(f"take profit {_fmt(take_profit)} = average {_fmt(average)} "
                           f"{'+' if long else '-'} {o.min_reward_risk:g} R ({seen})")

        partial, fraction = None, 0.0
        if o.partial_take_profit:
            level = average + s * o.partial_at_r * risk
            if s * (take_profit - level) > 0:
                partial, fraction = level, o.partial_fraction
                reasons.append(f"partial take profit {fraction:.0%} at {_fmt(level)} ({o.partial_at_r:g} R)")
        if take_profit <= 0.0:  # a short's target can only fall so far
            take_profit = None
            reasons.append("no take profit: target would be below zero")
        distance, activation = self._trail_at(i, s, average, atr)
        return ExitLevels(stop=stop, take_profit=take_profit, partial_take_profit=partial,
                          partial_fraction=fraction, reasons=tuple(reasons), trail_distance=distance,
                          trail_activation=activation)

    def _trail_at(self, i: int, s: int, average: float, atr: float) -> tuple[Optional[float], Optional[float]]:
        """The trail as :meth:`update` would start it, for an exchange that trails by itself:
        ``trail_atr_multiplier`` ATR times this bar's volatility factor behind the best price, once
        the best price is ``trail_activation_atr`` ATR beyond the average entry (None: at once).
        The exchange keeps this distance; the adverse-momentum narrowing stays the bot's own."""
        o = self.options
        if not o.trailing_stop:
            return None, None
        factor = min(max(self._vol_factor[i], o.trail_factor_min), o.trail_factor_max)
        distance = o.trail_atr_multiplier * factor * atr
        activation = average + s * o.trail_activation_atr * atr if o.trail_activation_atr > 0 else None
        if activation is not None and not activation > 0.0:
            activation = None
        return (distance if distance > 0.0 else None), activation

    # -- per-bar update ------------------------------------------------------------------------

    def update(self, i: int, position: PositionView, levels: ExitLevels) -> ExitLevels:
        """Trail the stop (only ever tighter) and push the target out in a strong trend.

        Long (shorts mirror it), once ``best - entry >= trail_activation_atr * A``: candidate
        stop ``best - trail_atr_multiplier * A * f`` with ``f`` the volatility / momentum factor
        (see :class:`ExitOptions`), kept at least ``min_stop_atr * A`` below the close, and
        ``stop = max(stop, candidate)``. The target moves ``tp_extension_atr * A`` further when
        the close is within ``tp_proximity_atr * A`` of it, trend strength exceeds
        ``tp_trend_min`` and momentum is positive; it never moves back. Unchanged levels are
        returned as the same object; during ATR warm-up nothing moves.
        """
        atr = self._atr[i]
        if not atr > 0.0:
            return levels
        o = self.options
        s = 1 if position.side == Side.LONG else -1
        close, momentum = self._close[i], self._momentum[i]
        stop, take_profit = levels.stop, levels.take_profit
        reasons = None

        best = position.best_price
        if o.trailing_stop and s * (best - position.entry_price) >= o.trail_activation_atr * atr:
            factor = self._vol_factor[i]
            if s * momentum < 0.0:
                factor *= o.adverse_momentum_factor
            factor = min(max(factor, o.trail_factor_min), o.trail_factor_max)
            candidate = best - s * o.trail_atr_multiplier * factor * atr
            ceiling = close - s * o.min_stop_atr * atr
            if s * (candidate - ceiling) > 0.0:
                candidate = ceiling
            if s * (candidate - stop) > 0.0:
                stop = candidate
                reasons = [f"trailing stop {_fmt(stop)}: best {_fmt(best)} {'-' if s > 0 else '+'} "
                           f"{o.trail_atr_multiplier:g} ATR x {factor:.2f}"]

        if (o.dynamic_take_profit and take_profit is not None
                and s * (take_profit - close) <= o.tp_proximity_atr * atr
                and self._trend[i] > o.tp_trend_min and s * momentum > 0.0):
            extended = take_profit + s * o.tp_extension_atr * atr
            if extended > 0.0:
                take_profit = extended
                why = (f"take profit extended to {_fmt(take_profit)} (+{o.tp_extension_atr:g} ATR): "
                       f"trend {self._trend[i]:.2f}, momentum {momentum:+.2%}")
                reasons = [*(reasons or ()), why]

        if reasons is None:
            return levels
        # ``attrs.evolve`` spelled out (a third of its cost, a few thousand times a run); a test
        # checks that every field of ExitLevels is carried over
        return ExitLevels(stop, take_profit, levels.partial_take_profit, levels.partial_fraction, tuple(reasons),
                          levels.trail_distance, levels.trail_activation)
