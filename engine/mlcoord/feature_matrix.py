"""The causal feature matrix the learned models (LSTM, attention) read.

One row per bar, one column per named feature, every value computed from bars up to that row.
Features are scale-free (returns, ratios, oscillators) so one model can serve several symbols;
the models normalise them with statistics stored in their artifact.
"""

from __future__ import annotations

import numpy as np

from mlcoord import features as ft

FEATURES = (
    "ret_1", "ret_4", "ret_24", "realised_vol_24", "atr_pct", "rsi", "macd_hist_atr",
    "bollinger_pct_b", "ema20_50", "ema50_200", "adx", "volume_ratio",
)


#: the latest (inputs, matrix): the LSTM and the attention model read the same bars' matrix, which
#: is computed once (arrays compared by identity; read-only arrays, so identity means same values)
_LAST: list = []


def feature_matrix(open_, high, low, close, volume) -> np.ndarray:
    """``(n_bars, len(FEATURES))`` float32 (read-only); warm-up NaNs are replaced by 0 (the
    neutral value)."""
    inputs = (open_, high, low, close, volume)
    if _LAST and all(a is b for a, b in zip(_LAST[0], inputs)) and \
            all(isinstance(a, np.ndarray) and not a.flags.writeable for a in inputs):
        return _LAST[1]
    out = _feature_matrix(open_, high, low, close, volume)
    out.flags.writeable = False
    _LAST[:] = [inputs, out]
    return out


def _feature_matrix(open_, high, low, close, volume) -> np.ndarray:
    c = np.asarray(close, dtype=float)
    h, l, v = (np.asarray(a, dtype=float) for a in (high, low, volume))
    logc = np.log(c)
    atr = ft.atr(h, l, c, 14)
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = [
            _diff(logc, 1), _diff(logc, 4), _diff(logc, 24),
            ft.realised_volatility(c, 24),
            atr / c,
            ft.rsi(c, 14) / 100.0 - 0.5,
            ft.macd(c)[2] / atr,
            _pct_b(c),
            ft.ema(c, 20) / ft.ema(c, 50) - 1.0,
            ft.ema(c, 50) / ft.ema(c, 200) - 1.0,
            ft.adx(h, l, c, 14)[0] / 100.0,
            np.log(ft.volume_ratio(v, 20)),
        ]
    out = np.column_stack(cols) if len(c) else np.zeros((0, len(FEATURES)))
    out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32)


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
