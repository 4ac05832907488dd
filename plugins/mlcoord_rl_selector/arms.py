"""The strategies (arms) the selector chooses between: three classic, distinct causal votes.

Each gives +1 (long), -1 (short) or 0 (no view) per bar from bars ``<= i`` only:

* ``trend_following``: close > EMA fast > EMA slow with ADX >= ``adx_min`` and +DI > -DI is
  long, the mirror is short: ride an established trend.
* ``mean_reversion``: Bollinger %b <= ``bb_low`` or RSI <= ``rsi_low`` is long, %b >= ``bb_high``
  or RSI >= ``rsi_high`` is short: fade a stretched move (against the move, so it often
  contradicts the trend arm).
* ``breakout``: close above the highest high of the previous ``breakout_bars`` bars on volume
  >= ``breakout_volume`` x its average is long, below the lowest low is short; the view is held
  ``breakout_hold`` bars unless price falls back inside the range or the other side breaks.
"""

from __future__ import annotations

import numpy as np

from mlcoord.api import features as ft

ARMS = ("trend_following", "mean_reversion", "breakout")


def _previous_extreme(x: np.ndarray, n: int, fn) -> np.ndarray:
    """``fn`` (np.max or np.min) over bars ``i-n .. i-1`` (the current bar excluded); NaN until
    ``n`` bars exist. The rolling extremes are mlcoord's cached ones (a live bar adds one)."""
    out = np.full(len(x), np.nan)
    if len(x) > n:
        out[n:] = (ft.rolling_max if fn is np.max else ft.rolling_min)(x, n)[n - 1 : -1]
    return out


def trend_following(c, o) -> np.ndarray:
    fast, slow = ft.ema(c.close, o.ema_fast), ft.ema(c.close, o.ema_slow)
    adx, plus_di, minus_di = ft.adx(c.high, c.low, c.close, o.adx_period)
    strong = adx >= o.adx_min
    up = (c.close > fast) & (fast > slow) & strong & (plus_di > minus_di)
    down = (c.close < fast) & (fast < slow) & strong & (minus_di > plus_di)
    return up.astype(np.int8) - down.astype(np.int8)


def mean_reversion(c, o) -> np.ndarray:
    mid, upper, lower = ft.bollinger(c.close, o.bb_period, o.bb_std)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_b = (c.close - lower) / (upper - lower)
    r = ft.rsi(c.close, o.rsi_period)
    long_ = (pct_b <= o.bb_low) | (r <= o.rsi_low)
    short = (pct_b >= o.bb_high) | (r >= o.rsi_high)
    return np.where(long_ & ~short, 1, np.where(short & ~long_, -1, 0)).astype(np.int8)


def breakout(c, o) -> np.ndarray:
    high = _previous_extreme(np.asarray(c.high, float), o.breakout_bars, np.max)
    low = _previous_extreme(np.asarray(c.low, float), o.breakout_bars, np.min)
    volume = ft.volume_ratio(c.volume, o.breakout_bars) >= o.breakout_volume
    close = np.asarray(c.close, float)
    fresh = np.where((close > high) & volume, 1, np.where((close < low) & volume, -1, 0)).astype(np.int8)
    return held_views(fresh, close, high, low, o.breakout_hold)


def held_views(fresh: np.ndarray, close: np.ndarray, high: np.ndarray, low: np.ndarray, hold: int) -> np.ndarray:
    """A breakout's view (+1/-1 at its bar ``j``) held for bars ``j .. j + hold - 1``, until the
    next breakout, or until the close falls back inside the range it broke (``high[j]`` for a
    long, ``low[j]``: a short), whichever is first: a causal state machine, vectorised."""
    n = len(fresh)
    index = np.arange(n)
    last = np.maximum.accumulate(np.where(fresh != 0, index, -1))     # the breakout in force
    known = last >= 0
    j = np.where(known, last, 0)
    state = np.where(known, fresh[j], 0)
    level = np.where(state > 0, high[j], low[j])
    with np.errstate(invalid="ignore"):
        inside = ((state > 0) & (close < level)) | ((state < 0) & (close > level))
    inside &= index > j                                # the breakout bar itself never is
    fallen = np.cumsum(inside)
    ended = (index > j) & ((index - j >= hold) | (fallen - fallen[j] > 0))
    return np.where(known & ~ended, state, 0).astype(np.int8)


def arm_directions(candles, options) -> np.ndarray:
    """``(n, 3)`` int8 directions of the arms, in the order of :data:`ARMS`."""
    return np.column_stack([trend_following(candles, options), mean_reversion(candles, options),
                            breakout(candles, options)]).astype(np.int8)
