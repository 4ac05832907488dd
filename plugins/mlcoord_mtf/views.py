"""Per-timeframe trend views and their alignment onto the base bars (causal, vectorised).

A view is a signed score in [-1, 1]: the mean of four squashed, ATR-normalised readings of the
same timeframe's candles. Each reading is divided by a scale of about two thirds of the 90th
percentile of its magnitude (alike in 1h, 4h and 1d, since everything is in ATR units) before
``tanh``, so a strong reading is about +-0.9 and no single one dominates. The scales were
re-derived on the development part only (BTC/USDT 1h 2020-09-20 -> 2024-03-21 09:00 and its
4h / 1d resamples, before ``evaluate``'s default holdout; ``benchmarks/derive_constants.py``):
two thirds of p90, median over the three timeframes, is 1.48, 0.445, 0.232 and 14.7, which
round to the values below (the slope's 0.445 sits at the edge of 0.4; ETH / SOL / XRP give
1.27-1.46, 0.38-0.44, 0.21-0.23 and 12.5-14.3):

* close vs its EMA, in ATRs (scale 1.5);
* the EMA's slope over ``slope_bars`` bars, in ATRs (scale 0.4);
* the MACD(12, 26, 9) histogram, in ATRs (scale 0.2);
* RSI minus 50 (scale 15).

Higher timeframes are read through ``data.timeframe_index`` only, i.e. the last higher bar that
was complete at the close of each base bar: a 4h bar still forming is never seen.
"""

from __future__ import annotations

import numpy as np

from mlcoord.api import features as ft

_SCALES = (1.5, 0.4, 0.2, 15.0)


def readings(high, low, close, ema_period: int, slope_bars: int, atr_period: int,
             rsi_period: int) -> tuple[np.ndarray, ...]:
    """The four raw readings of every bar, in the order of ``_SCALES`` (NaN in warm-up)."""
    close = np.asarray(close, dtype=float)
    n = len(close)
    e = ft.ema(close, ema_period)
    a = ft.atr(high, low, close, atr_period)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(a > 0, a, np.nan)
        past = np.full(n, np.nan)
        past[slope_bars:] = e[:-slope_bars]
        return (
            (close - e) / a,
            (e - past) / a,
            ft.macd(close)[2] / a,
            ft.rsi(close, rsi_period) - 50.0,
        )


def trend_score(high, low, close, ema_period: int, slope_bars: int, atr_period: int,
                rsi_period: int) -> np.ndarray:
    """Signed trend/momentum score in [-1, 1] of every bar of one timeframe; NaN in warm-up."""
    if len(close) == 0:
        return np.zeros(0)
    r = readings(high, low, close, ema_period, slope_bars, atr_period, rsi_period)
    with np.errstate(invalid="ignore"):
        return np.mean([np.tanh(x / s) for x, s in zip(r, _SCALES)], axis=0)


def aligned_scores(data, timeframes, options) -> tuple[list[str], np.ndarray]:
    """Scores of the base timeframe and of each available higher one, one row per base bar.

    Returns the timeframe labels and an ``(n, T)`` array (NaN where a view is not known yet).
    Requested timeframes missing from ``data`` (for example "4h" when the base is 4h) are skipped.
    """
    c = data.candles
    args = (options.ema_period, options.slope_bars, options.atr_period, options.rsi_period)
    labels = [c.timeframe]
    columns = [trend_score(c.high, c.low, c.close, *args)]
    for tf in timeframes:
        higher = data.timeframes.get(tf)
        index = data.timeframe_index.get(tf)
        if higher is None or index is None or tf == c.timeframe:
            continue
        index = np.asarray(index)
        score = trend_score(higher.high, higher.low, higher.close, *args)
        if len(score) == 0:
            column = np.full(len(c), np.nan)
        else:
            column = np.where(index >= 0, score[np.clip(index, 0, len(score) - 1)], np.nan)
        labels.append(tf)
        columns.append(column)
    return labels, np.column_stack(columns) if columns else np.zeros((len(c), 0))
