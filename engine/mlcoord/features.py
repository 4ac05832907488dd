"""Causal, vectorised technical indicators shared by the engine and its plugins.

Every function takes 1-D arrays (anything ``np.asarray`` accepts) and returns new float64
arrays of the same length. Warm-up values are NaN. The value at bar ``i`` depends only on
inputs at bars ``<= i``, so ``f(x[:k]) == f(x)[:k]``: an indicator computed once over a whole
backtest equals what a live bot computes bar by bar, which keeps backtests honest.

Conventions:

* EMA-type smoothers (``ema``, Wilder's RSI/ATR/ADX) are seeded with the simple mean of their
  first ``n`` values, as TA-Lib and most charting tools do, so their first value is not
  dominated by a single bar.
* Inputs are expected to be NaN only at the start (the warm-up of an upstream indicator);
  a NaN inside a rolling window makes that window's value NaN.
* Everything is numpy/pandas vectorised: a few ms per indicator for 50,000 bars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from mlcoord.prefix_cache import PrefixCache

__all__ = [
    "adx",
    "atr",
    "bollinger",
    "confirmed_pivots",
    "ema",
    "log_returns",
    "macd",
    "rate_of_change",
    "realised_volatility",
    "rolling_max",
    "rolling_median",
    "rolling_min",
    "rolling_percentile_rank",
    "rolling_zscore",
    "rsi",
    "sma",
    "true_range",
    "volume_ratio",
]


# --------------------------------------------------------------------------- helpers


def _series(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {a.shape}")
    return a


def _window(n, name: str = "n", minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _same_length(*arrays: np.ndarray) -> None:
    if len({len(a) for a in arrays}) > 1:
        raise ValueError(f"inputs must have the same length, got {[len(a) for a in arrays]}")


def _rolling(x: np.ndarray, n: int):
    return pd.Series(x, copy=False).rolling(n, min_periods=n)


def _array(s: pd.Series) -> np.ndarray:
    # pandas 3 hands out read-only views; callers get their own writable array.
    return s.to_numpy(dtype=np.float64, copy=True)


def _ratio(num: np.ndarray, den: np.ndarray, when_zero: float) -> np.ndarray:
    """``num / den``, ``when_zero`` where ``den == 0``, NaN where either is NaN."""
    out = np.full(len(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    out[(den == 0) & ~np.isnan(num)] = when_zero
    return out


#: recent smoothings and rolling ranks by their exact inputs: the signal source, the timeframe
#: views, the learned models' features and the exits smooth many of the same series (27 distinct
#: of 58 per live bar), and a live bar's inputs extend the last bar's by one bar
CACHE = PrefixCache(max_bytes=192 << 20)


def _cached(kind: tuple, x: np.ndarray, compute, extend=None) -> np.ndarray:
    """``compute(x)`` unless a kept result of the same ``kind`` has the same inputs, or inputs
    that ``x`` extends and ``extend(result, x, known)`` can carry on from (None: it cannot).
    Kept results are read-only; callers get a copy they may write to."""
    found = CACHE.find(kind, (x,), extensions=extend is not None)
    if found is not None:
        if found.n == len(x):
            return found.result.copy()
        assert extend is not None
        longer = extend(found.result, x, found.n)
        if longer is not None:
            longer.flags.writeable = False
            CACHE.keep(kind, (x,), longer, longer.nbytes, replaces=found)
            return longer.copy()
    out = compute(x)
    out.flags.writeable = False
    CACHE.keep(kind, (x,), out, out.nbytes)
    return out.copy()


def _seeded_ewm(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Exponential smoothing seeded with the mean of the first ``n`` values after leading NaNs."""
    return _cached(("ewm", n, alpha), x, lambda a: _seeded_ewm_of(a, n, alpha),
                   lambda out, a, known: _extend_ewm(out, a, known, alpha))


def _extend_ewm(out: np.ndarray, x: np.ndarray, known: int, alpha: float):
    """``out`` (the smoothing of ``x[:known]``) carried on over ``x[known:]`` with pandas' own
    recursion (``adjust=False``), so the values are the ones a whole recomputation gives; None
    before the seed or over a NaN input (recomputed then)."""
    w = float(out[known - 1])
    new = x[known:]
    if w != w or np.isnan(new).any():
        return None
    keep, values = 1.0 - alpha, []
    for v in new.tolist():
        if w != v:
            w = keep * w + alpha * v
            w /= keep + alpha
        values.append(w)
    return np.concatenate((out, values))


def _seeded_ewm_of(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    out = np.full(len(x), np.nan)
    valid = np.flatnonzero(~np.isnan(x))
    if valid.size == 0 or valid[0] + n > len(x):
        return out
    seed = valid[0] + n - 1
    tail = x[seed:].copy()
    tail[0] = x[valid[0] : seed + 1].mean()
    out[seed:] = pd.Series(tail).ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def _rolling_exact(x: np.ndarray, n: int, how: str) -> np.ndarray:
    """A rolling statistic over ``n`` bars (``mean``, ``std0``/``std1``: population/sample std,
    ``rank``: max rank as a fraction, ``median``, ``max``, ``min``), NaN while any of the ``n``
    values is. Each window's value is computed from that window alone (no running sums, whose
    rounding would depend on where the array starts), so a kept prefix carries on window by
    window and a live window gives exactly what the whole history gives."""
    def compute(a):
        if how in ("rank", "median"):             # pandas' skiplists are exact per window
            roll = _rolling(a, n)
            return _array(roll.rank(method="max", pct=True) if how == "rank" else roll.median())
        out = np.full(len(a), np.nan)
        if len(a) >= n:
            out[n - 1 :] = _per_window(a, n, how)
        return out

    def extend(out, a, known):
        return np.concatenate((out, _per_window(a[known - n + 1 :], n, how))) if known >= n else None

    return _cached(("rolling", how, n), x, compute, extend)


def _per_window(x: np.ndarray, n: int, how: str, chunk: int = 8192) -> np.ndarray:
    """``how`` of every full window of ``x`` (``len(x) - n + 1`` values). Means and spreads add
    each window's values in window order (``n`` whole-array additions: no running sum), so a
    window's value does not depend on where ``x`` starts."""
    m = len(x) - n + 1
    if m <= 0:
        return np.zeros(0)
    if how in ("median", "rank"):
        windows = sliding_window_view(x, n)
        parts = []
        for k in range(0, m, chunk):                      # small temporaries
            w = windows[k : k + chunk]
            if how == "median":
                parts.append(np.median(w, axis=1))
            else:
                value = (w <= w[:, -1:]).sum(axis=1) / n
                value[np.isnan(w).any(axis=1)] = np.nan
                parts.append(value)
        return np.concatenate(parts)
    if how in ("max", "min"):                             # NaN anywhere in the window: NaN
        pick = np.maximum if how == "max" else np.minimum
        extreme = x[:m].copy()
        for k in range(1, n):
            pick(extreme, x[k : k + m], out=extreme)
        return extreme
    total = x[:m].copy()
    for k in range(1, n):
        total += x[k : k + m]
    mean = total / n
    # a constant window: exactly its value and no spread (counted exactly, in integers)
    same = np.concatenate(([0], np.cumsum(x[1:] == x[:-1])))
    flat = same[n - 1 : n - 1 + m] - same[:m] == n - 1
    if how == "mean":
        return np.where(flat, x[:m], mean)
    squares = np.square(x[:m] - mean)
    for k in range(1, n):
        squares += np.square(x[k : k + m] - mean)
    spread = np.sqrt(squares / (n - (1 if how == "std1" else 0)))
    return np.where(flat, 0.0, spread)


def _wilder(x: np.ndarray, n: int) -> np.ndarray:
    return _seeded_ewm(x, n, 1.0 / n)


def _previous(x: np.ndarray) -> np.ndarray:
    """``x`` shifted one bar later (NaN at bar 0)."""
    return np.concatenate(([np.nan], x[:-1])) if len(x) else x.copy()


# --------------------------------------------------------------------------- averages


def sma(x, n: int) -> np.ndarray:
    """Simple moving average over ``n`` bars."""
    return _rolling_exact(_series(x), _window(n), "mean")


def ema(x, n: int) -> np.ndarray:
    """Exponential moving average, ``alpha = 2 / (n + 1)``, seeded with the SMA of the first ``n``."""
    n = _window(n)
    return _seeded_ewm(_series(x), n, 2.0 / (n + 1))


# --------------------------------------------------------------------------- oscillators


def rsi(close, n: int = 14) -> np.ndarray:
    """Wilder's RSI in [0, 100]; 50 when the window had no movement at all (neither side wins)."""
    n = _window(n)
    delta = np.diff(_series(close), prepend=np.nan)
    avg_gain = _wilder(np.clip(delta, 0.0, None), n)
    avg_loss = _wilder(np.clip(-delta, 0.0, None), n)
    # gain / (gain + loss) is the same as 1 - 1/(1 + RS) but has no division by a zero loss.
    return 100.0 * _ratio(avg_gain, avg_gain + avg_loss, when_zero=0.5)


def macd(close, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MACD line (EMA fast - EMA slow), its signal EMA and the histogram (line - signal)."""
    c = _series(close)
    line = ema(c, fast) - ema(c, slow)
    sig = ema(line, signal)
    return line, sig, line - sig


def bollinger(close, n: int = 20, k: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bollinger bands: SMA mid and mid +/- ``k`` population standard deviations (ddof=0)."""
    c, n = _series(close), _window(n)
    mid = _rolling_exact(c, n, "mean")
    width = k * _rolling_exact(c, n, "std0")
    return mid, mid + width, mid - width


# --------------------------------------------------------------------------- range and trend


def true_range(high, low, close) -> np.ndarray:
    """Wilder's true range; bar 0 has no previous close, so it is simply ``high - low``."""
    h, l, c = _series(high), _series(low), _series(close)
    _same_length(h, l, c)
    prev = _previous(c)
    tr = np.maximum(h - l, np.maximum(np.abs(h - prev), np.abs(l - prev)))
    if len(tr):
        tr[0] = h[0] - l[0]
    return tr


def atr(high, low, close, n: int = 14) -> np.ndarray:
    """Average true range with Wilder smoothing (``alpha = 1/n``), in price units."""
    return _wilder(true_range(high, low, close), _window(n))


def adx(high, low, close, n: int = 14) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wilder's ADX with +DI and -DI, all in [0, 100]; ADX needs ``2n - 1`` bars of warm-up.

    Flat stretches (zero true range) give DI = 0 and DX = 0 instead of 0/0.
    """
    n = _window(n)
    h, l = _series(high), _series(low)
    up = np.diff(h, prepend=np.nan)            # high - previous high
    down = -np.diff(l, prepend=np.nan)         # previous low - low
    missing = np.isnan(up) | np.isnan(down)
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    plus_dm[missing] = minus_dm[missing] = np.nan
    tr = true_range(high, low, close)
    tr[:1] = np.nan                            # directional movement starts at bar 1: align TR
    smoothed_tr = _wilder(tr, n)
    plus_di = 100.0 * _ratio(_wilder(plus_dm, n), smoothed_tr, when_zero=0.0)
    minus_di = 100.0 * _ratio(_wilder(minus_dm, n), smoothed_tr, when_zero=0.0)
    dx = 100.0 * _ratio(np.abs(plus_di - minus_di), plus_di + minus_di, when_zero=0.0)
    return np.clip(_wilder(dx, n), 0.0, 100.0), plus_di, minus_di


# --------------------------------------------------------------------------- returns and volatility


def log_returns(close) -> np.ndarray:
    """``log(close[i] / close[i-1])``; bar 0 is NaN."""
    c = _series(close)
    out = np.full(len(c), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[1:] = np.log(c[1:] / c[:-1])
    return out


def realised_volatility(close, n: int = 24) -> np.ndarray:
    """Rolling sample standard deviation (ddof=1) of log returns over ``n`` bars (per bar, not annualised)."""
    return _rolling_exact(log_returns(close), _window(n, minimum=2), "std1")


def rate_of_change(close, n: int = 10) -> np.ndarray:
    """``close[i] / close[i-n] - 1`` as a fraction."""
    c, n = _series(close), _window(n)
    out = np.full(len(c), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[n:] = c[n:] / c[:-n] - 1.0
    return out


# --------------------------------------------------------------------------- normalisation


def rolling_zscore(x, n: int) -> np.ndarray:
    """``(x - mean) / std`` over the last ``n`` values (population std); 0 for a constant window."""
    a, n = _series(x), _window(n, minimum=2)
    return _ratio(a - _rolling_exact(a, n, "mean"), _rolling_exact(a, n, "std0"), when_zero=0.0)


def rolling_percentile_rank(x, n: int) -> np.ndarray:
    """Fraction of the last ``n`` values (current included) that are ``<=`` the current one, in (0, 1]."""
    return _rolling_exact(_series(x), _window(n), "rank")


def rolling_max(x, n: int) -> np.ndarray:
    """Highest of the last ``n`` values (current included); NaN until ``n`` values exist."""
    return _rolling_exact(_series(x), _window(n), "max")


def rolling_min(x, n: int) -> np.ndarray:
    """Lowest of the last ``n`` values (current included); NaN until ``n`` values exist."""
    return _rolling_exact(_series(x), _window(n), "min")


def rolling_median(x, n: int) -> np.ndarray:
    """Median of the last ``n`` values (current included); NaN until ``n`` values exist."""
    return _rolling_exact(_series(x), _window(n), "median")


def volume_ratio(volume, n: int = 20) -> np.ndarray:
    """Volume relative to its ``n``-bar average; NaN while that average is zero."""
    v = _series(volume)
    return _ratio(v, sma(v, n), when_zero=np.nan)


# --------------------------------------------------------------------------- pivots


def confirmed_pivots(high, low, left: int = 5, right: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Support and resistance from pivots, each known only once it is confirmed.

    A pivot low at bar ``j`` has ``low[j]`` strictly below every other low in
    ``[j - left, j + right]``; that is known at bar ``j + right``, not at ``j``.
    ``support[i]`` is the low of the latest pivot low confirmed at or before ``i`` (NaN if
    none); ``resistance`` is the same with pivot highs. Exit managers place stops on these,
    so using the bar of the pivot itself would leak ``right`` bars of future.
    """
    h, l = _series(high), _series(low)
    _same_length(h, l)
    left, right = _window(left, "left"), _window(right, "right")
    return _latest_confirmed(l, left, right), -_latest_confirmed(-h, left, right)


def _latest_confirmed(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """Value of the latest strict local minimum of ``x`` confirmed at or before each bar."""
    return _cached(("pivots", left, right), x, lambda a: _confirmed_from(a, left, right, 0, np.nan),
                   lambda out, a, known: np.concatenate((out, _confirmed_from(
                       a, left, right, known, out[known - 1])[known:])) if known >= left + right + 1 else None)


def _confirmed_from(x: np.ndarray, left: int, right: int, start: int, before: float) -> np.ndarray:
    """:func:`_latest_confirmed` from bar ``start`` on (earlier bars are left NaN), ``before``
    being its value at bar ``start - 1`` (what holds until a later pivot is confirmed)."""
    span = left + right + 1
    if len(x) < span:
        return np.full(len(x), np.nan)
    first = max(start - span + 1, 0)                       # windows that end at start or later
    m = len(x) - first - span + 1                          # window s covers bars first+s .. +span-1
    # the lowest of each window's other bars, one whole-array minimum per offset: a reduction
    # along the short rows of a sliding window view costs ~40x more (numpy's per-row overhead);
    # a minimum is exact in any order, and NaN propagates either way. Offset 0 starts it: it is
    # never the pivot's own bar, since ``left`` >= 1 (``confirmed_pivots`` checks it)
    others = x[first:first + m].copy()
    for k in range(1, span):
        if k != left:
            np.minimum(others, x[first + k:first + k + m], out=others)
    pivots = np.flatnonzero(x[first + left:first + left + m] < others) + first + left
    latest = np.full(len(x), -1)
    latest[pivots + right] = pivots                        # known at the confirmation bar
    latest = np.maximum.accumulate(latest)
    out = np.where(latest >= 0, x[latest], before)
    out[:start] = np.nan
    return out
