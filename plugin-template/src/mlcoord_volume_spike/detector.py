"""The vectorised breakout detector and the words that explain it.

Kept apart from the plugin module so the numbers can be tested (and reused) without the hook.
Everything here is causal: every rolling window is shifted one bar, so bar ``i`` is compared
with bars ``i - n .. i - 1`` and never with itself or anything later.
"""

from __future__ import annotations

import attrs
import numpy as np
import pandas as pd

from mlcoord.api import Action, features


@attrs.frozen(eq=False)
class Breakouts:
    """Per-bar arrays a ``VolumeSpike.prepare`` call computed (NaN in warm-up)."""

    action: np.ndarray          # int8 of Action
    confidence: np.ndarray      # 0 on HOLD bars
    volume_ratio: np.ndarray    # volume / median volume of the previous ``window`` bars
    body_atr: np.ndarray        # |close - open| / ATR
    prior_high: np.ndarray      # highest high of the previous ``breakout_bars`` bars
    prior_low: np.ndarray       # lowest low of the previous ``breakout_bars`` bars
    close: np.ndarray


def _previous_window(x: np.ndarray, n: int) -> pd.core.window.Rolling:
    """Rolling window over the ``n`` bars *before* each bar (the bar itself excluded)."""
    return pd.Series(x, copy=False).shift(1).rolling(n, min_periods=n)


def detect(open_, high, low, close, volume, atr, options) -> Breakouts:
    """Volume-confirmed breakouts for every bar at once (see :class:`VolumeSpikeOptions`)."""
    open_, high, low, close, volume, atr = (np.asarray(a, dtype=np.float64)
                                            for a in (open_, high, low, close, volume, atr))
    # mlcoord's cached rolling median: a live bar extends the last bar's window, not recomputed
    before = np.full(len(volume), np.nan)
    before[1:] = volume[:-1]
    median = features.rolling_median(before, options.window)
    prior_high = _previous_window(high, options.breakout_bars).max().to_numpy(dtype=np.float64, copy=True)
    prior_low = _previous_window(low, options.breakout_bars).min().to_numpy(dtype=np.float64, copy=True)

    with np.errstate(divide="ignore", invalid="ignore"):
        # A zero median (a dead or freshly listed market) makes any ratio meaningless: no signal.
        ratio = np.where(median > 0, volume / median, np.nan)
        body = close - open_
        body_atr = np.where(atr > 0, np.abs(body) / atr, np.nan)

    # NaN compares False, so warm-up bars (no median, no ATR, no prior range) stay HOLD.
    confirmed = (ratio >= options.spike_ratio) & (body_atr >= options.min_body_atr)
    buy = confirmed & (body > 0) & (close > prior_high)
    sell = confirmed & (body < 0) & (close < prior_low)   # a doji (body 0) has no direction
    action = np.zeros(len(close), dtype=np.int8)
    action[buy] = Action.BUY
    action[sell] = Action.SELL

    signalled = action != 0
    confidence = np.zeros(len(close))
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = (options.base_confidence
               + options.ratio_weight * np.log2(ratio / options.spike_ratio)
               + options.body_weight * np.minimum(body_atr, options.body_cap))
    confidence[signalled] = np.clip(raw[signalled], 0.0, options.max_confidence)
    return Breakouts(action, confidence, ratio, body_atr, prior_high, prior_low, close)


def _prices(a: float, b: float) -> tuple[str, str]:
    """Two prices with just enough significant digits to tell them apart (BTC and SHIB alike)."""
    for digits in range(6, 13):
        x, y = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if x != y:
            return x, y
    return x, y


def explain(b: Breakouts, i: int, options) -> list[str]:
    """Reasons for bar ``i`` in words; only called for bars that signalled (never per bar)."""
    action = int(b.action[i])
    if action == 0:
        return []
    if action > 0:
        close, level = _prices(b.close[i], b.prior_high[i])
        broke = f"close {close} broke the {options.breakout_bars}-bar high {level}"
    else:
        close, level = _prices(b.close[i], b.prior_low[i])
        broke = f"close {close} broke the {options.breakout_bars}-bar low {level}"
    return [
        f"volume {b.volume_ratio[i]:.1f}x the {options.window}-bar median",
        broke,
        f"body {b.body_atr[i]:.1f} ATR ({'bullish' if action > 0 else 'bearish'} candle)",
    ]
