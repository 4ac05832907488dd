"""The causal feature matrix the learned models (LSTM, attention) read.

One row per bar, one column per named feature, every value computed from bars up to that row.
Features are scale-free (returns, ratios, oscillators) so one model can serve several symbols;
the models normalise them with statistics stored in their artifact.

:data:`FEATURES` are computed from a symbol's own candles (what the shipped models read,
:func:`feature_matrix`); :data:`ALL_FEATURES` adds :data:`MARKET_FEATURES` (funding, basis,
cross-asset, calendar, volatility regime), which need a whole :class:`MarketData`
(:func:`feature_table`). docs/features.md gives every formula.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from mlcoord import features as ft
from mlcoord.market_features import MARKET_FEATURES, available, market_columns

FEATURES = (
    "ret_1", "ret_4", "ret_24", "realised_vol_24", "atr_pct", "rsi", "macd_hist_atr",
    "bollinger_pct_b", "ema20_50", "ema50_200", "adx", "volume_ratio",
)
ALL_FEATURES: tuple[str, ...] = FEATURES + MARKET_FEATURES
#: the :data:`FEATURES` whose sign flips with the direction of a trade (returns, centred
#: oscillators, EMA spreads); the rest (volatility, ATR, ADX, volume) are the same for both sides
DIRECTIONAL = ("ret_1", "ret_4", "ret_24", "rsi", "macd_hist_atr", "bollinger_pct_b", "ema20_50", "ema50_200")


def feature_matrix(open_, high, low, close, volume) -> np.ndarray:
    """``(n_bars, len(FEATURES))`` float32 (read-only); warm-up NaNs are replaced by 0 (the
    neutral value). The LSTM and the attention model read the same bars' matrix, and a live bar
    extends the last bar's: both are served from :data:`mlcoord.features.CACHE` (a live bar
    computes its own row only)."""
    o, h, l, c, v = inputs = tuple(np.asarray(a, dtype=np.float64) for a in (open_, high, low, close, volume))
    found = ft.CACHE.find("feature_matrix", inputs)
    if found is not None and found.n == len(inputs[0]):
        return found.result
    if found is not None:
        out = np.vstack((found.result, _feature_matrix(o, h, l, c, v, start=found.n)))
    else:
        out = _feature_matrix(o, h, l, c, v)
    out.flags.writeable = False
    ft.CACHE.keep("feature_matrix", inputs, out, out.nbytes, replaces=found)
    return out


def _feature_matrix(open_, high, low, close, volume, start: int = 0) -> np.ndarray:
    """Rows ``start`` on (every value is elementwise in the indicators, so a row does not depend
    on where the rows asked for begin)."""
    out = _base_columns(open_, high, low, close, volume, start)
    out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32)


def _base_columns(open_, high, low, close, volume, start: int = 0) -> np.ndarray:
    """float64 :data:`FEATURES` of rows ``start`` on, NaN or infinite where undefined."""
    c = np.asarray(close, dtype=float)
    h, l, v = (np.asarray(a, dtype=float) for a in (high, low, volume))
    logc = np.log(c)
    atr = ft.atr(h, l, c, 14)
    tail = slice(start, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = [
            _diff(logc, 1)[tail], _diff(logc, 4)[tail], _diff(logc, 24)[tail],
            ft.realised_volatility(c, 24)[tail],
            atr[tail] / c[tail],
            ft.rsi(c, 14)[tail] / 100.0 - 0.5,
            ft.macd(c)[2][tail] / atr[tail],
            _pct_b(c)[tail],
            ft.ema(c, 20)[tail] / ft.ema(c, 50)[tail] - 1.0,
            ft.ema(c, 50)[tail] / ft.ema(c, 200)[tail] - 1.0,
            ft.adx(h, l, c, 14)[0][tail] / 100.0,
            np.log(ft.volume_ratio(v, 20)[tail]),
        ]
    return np.column_stack(cols) if len(c) > start else np.zeros((0, len(FEATURES)))


def feature_table(data, names: Sequence[str] = ALL_FEATURES, *, fill: Optional[float] = None) -> np.ndarray:
    """``(len(data), len(names))`` float32 (read-only) of the named features of ``data`` (a
    :class:`~mlcoord.components.MarketData`), any of :data:`ALL_FEATURES` in any order.

    NaN marks a value that is not known at that bar: warm-up, a gap in another series, or an
    input ``data`` does not have (:func:`available_features` names the columns that have one);
    ``fill`` replaces NaN (``fill=0.0`` gives :func:`feature_matrix`'s columns exactly)."""
    names = tuple(names)
    unknown = [n for n in names if n not in ALL_FEATURES]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown}; known: {', '.join(ALL_FEATURES)}")
    columns: dict[str, np.ndarray] = {}
    if any(n in FEATURES for n in names):
        c = data.candles
        base = _base_columns(c.open, c.high, c.low, c.close, c.volume)
        columns.update({n: base[:, k] for k, n in enumerate(FEATURES)})
    columns.update(market_columns(data, [n for n in names if n not in FEATURES]))
    out = np.column_stack([columns[n] for n in names]) if names else np.zeros((len(data), 0))
    out[~np.isfinite(out)] = np.nan if fill is None else fill
    out = out.astype(np.float32)
    out.flags.writeable = False
    return out


def available_features(data) -> tuple[str, ...]:
    """The names of :data:`ALL_FEATURES` whose inputs ``data`` carries: :data:`FEATURES` and the
    calendar and volatility-regime columns always; funding, basis and cross-asset columns only
    with their inputs (``data.inputs``). A column left out is all NaN in :func:`feature_table`."""
    return FEATURES + available(data)


def _diff(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if len(x) > n:
        out[n:] = x[n:] - x[:-n]
    return out


def _pct_b(c: np.ndarray) -> np.ndarray:
    mid, upper, lower = ft.bollinger(c, 20, 2.0)
    width = upper - lower
    return np.where(width > 0, (c - lower) / np.where(width > 0, width, 1.0) - 0.5, 0.0)


def windows(matrix: np.ndarray, index: np.ndarray, length: int) -> np.ndarray:
    """Windows of ``length`` rows ending at each bar of ``index`` (inclusive), zero-padded at the start.

    Returns ``(len(index), length, n_features)``: window ``k`` holds rows ``index[k]-length+1 ..
    index[k]``, so it never contains a bar after the one it scores.
    """
    n, f = matrix.shape
    padded = np.vstack([np.zeros((length - 1, f), matrix.dtype), matrix])
    idx = np.asarray(index)[:, None] + np.arange(length)[None, :]
    return padded[idx]
