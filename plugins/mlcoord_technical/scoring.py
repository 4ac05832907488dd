"""The scoring model: indicator arrays -> signed, strength-graded scores -> action and confidence.

Pure numpy over whole series, so ``prepare`` costs a few milliseconds for 50,000 bars and every
value at bar ``i`` depends on bars ``<= i`` only (all inputs come from :mod:`mlcoord.features`,
which is causal, and the only look-back here is one bar for MACD crosses and slopes).

Each directional indicator scores the bar on its own scale (positive = bullish):

=========  ============================================================  ===========
indicator  reading                                                       score
=========  ============================================================  ===========
RSI        beyond oversold/overbought, graded by depth (10 points = max)  +-1 .. 2
MACD       line crossed its signal this bar                              +-1
           plus the histogram's slope, graded (0.05 ATR per bar = max)   +-0 .. 0.5
EMA trend  close vs fast EMA, fast vs slow, slow vs trend EMA            +-0.5 each
Bollinger  close outside a band, graded by how far (%b -0.1 = max)       +-1 .. 1.5
           close inside the band's outer 10% (%b < 0.1 or > 0.9)         +-0.5
=========  ============================================================  ===========

The sum is multiplied by the volume factor ``clip(1 + (ratio - 1) / 2, 0.75, 1.5)`` (a move on
twice the average volume counts 1.5x, on half of it 0.75x): volume confirms, it never points.
An indicator *agrees* when it scores at least 0.5 in the net direction (a real reading: a
leaning trend, a close near a band, a full-strength histogram slope; not a faint slope). A bar
becomes BUY/SELL when ``|net| >= entry_score`` and at least ``min_agreeing`` indicators agree.
Mean-reversion readings (RSI, Bollinger) and trend readings (EMA, MACD) often conflict; the
net score settles it and the conflict costs confidence.

Confidence starts at 0.5 and grows with the net score beyond the threshold, saturating towards
0.95; every point of score against the net direction costs ``OPPOSITION_PENALTY`` and every
agreeing indicator beyond the minimum adds ``AGREEMENT_BONUS``; an ATR spike or a
HIGH_VOLATILITY regime halves the part above 0.5. The constants make each of the three DCA bands
(< 0.65, 0.65-0.75, >= 0.75) hold a sizeable share of the signals. First set on BTC/USDT 1h
2020-2025, they were re-derived on the development part only (BTC/USDT 1h, 2020-09-20 ->
2024-03-21 09:00, the bars before ``evaluate``'s default holdout) by
``benchmarks/derive_constants.py``, one at a time, maximising the smallest band's share: each
rounds to its current value. ``CONFIDENCE_SCALE`` 0.85 gives the largest smallest band (bands
56.7 / 19.9 / 23.4 % of 1,373 signals; 0.70-0.90 within one standard error); the bands hardly
depend on ``AGREEMENT_BONUS`` (any 0-0.10 within one SE: 93 of those signals have a third
agreeing indicator) or ``OPPOSITION_PENALTY`` (0-0.07), so those two are design choices more
than fits. Check, development parts of ETH / SOL / XRP: 57-58 / 18-19 / 24-25 %, though ETH
and XRP would prefer a penalty of 0-0.02.
"""

from __future__ import annotations

import attrs
import numpy as np

from mlcoord.api import features
from mlcoord_technical import confidence as fitted_confidence

#: what a signal's confidence is: the seed's strength score, or the fitted P(trade wins)
CONFIDENCES = ("strength", "trade_label")

AGREE_LEVEL = 0.5           # an indicator agrees with a score of at least this size
OPPOSITION_PENALTY = 0.05   # confidence lost per point of score against the net direction
AGREEMENT_BONUS = 0.03      # confidence gained per agreeing indicator beyond the minimum
CONFIDENCE_SCALE = 0.85     # net score beyond the threshold that goes ~63% of the way to the cap
CONFIDENCE_CAP = 0.95       # a technical signal alone is never certain (also the final clip)
SLOPE_ATR = 0.05            # MACD histogram change per bar (in ATRs) that scores the full 0.5
VOLATILE_DAMPING = 0.5      # fraction of (confidence - 0.5) kept in a volatility spike


@attrs.frozen(eq=False)
class Scores:
    """Every array ``explain`` needs, plus the result (``action``, ``confidence``)."""

    close: np.ndarray
    rsi: np.ndarray
    macd: np.ndarray
    macd_signal: np.ndarray
    macd_hist: np.ndarray
    macd_cross: np.ndarray      # +1 crossed above, -1 crossed below, 0 none (this bar)
    ema_fast: np.ndarray
    ema_slow: np.ndarray
    ema_trend: np.ndarray
    percent_b: np.ndarray
    atr_pct: np.ndarray
    atr_ratio: np.ndarray       # ATR / its own average over ``atr_baseline`` bars
    volume_ratio: np.ndarray
    volume_factor: np.ndarray
    s_rsi: np.ndarray
    s_macd: np.ndarray
    s_trend: np.ndarray
    s_bb: np.ndarray
    net: np.ndarray
    agreeing: np.ndarray
    opposing: np.ndarray        # sum of the scores against the net direction (>= 0)
    volatile: np.ndarray        # ATR spike or HIGH_VOLATILITY regime: confidence damped
    action: np.ndarray
    confidence: np.ndarray


def _sign(x: np.ndarray) -> np.ndarray:
    return np.sign(np.nan_to_num(x))


def _previous(x: np.ndarray) -> np.ndarray:
    return np.concatenate(([np.nan], x[:-1])) if len(x) else x.copy()


def _rsi_score(rsi: np.ndarray, oversold: float, overbought: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        bull = np.where(rsi < oversold, 1.0 + np.minimum(1.0, (oversold - rsi) / 10.0), 0.0)
        bear = np.where(rsi > overbought, 1.0 + np.minimum(1.0, (rsi - overbought) / 10.0), 0.0)
    return bull - bear


def _bollinger_score(pb: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        bull = np.where(pb < 0.0, 1.0 + np.minimum(0.5, -pb * 5.0), np.where(pb < 0.1, 0.5, 0.0))
        bear = np.where(pb > 1.0, 1.0 + np.minimum(0.5, (pb - 1.0) * 5.0), np.where(pb > 0.9, 0.5, 0.0))
    return bull - bear


def shape_confidence(beyond, extra_agreeing, opposing, volatile, scale: float = CONFIDENCE_SCALE,
                     bonus: float = AGREEMENT_BONUS, penalty: float = OPPOSITION_PENALTY) -> np.ndarray:
    """Confidence of a signal from its net score beyond the threshold, extra agreement and opposition.

    The shaping constants are arguments so ``benchmarks/derive_constants.py`` can re-derive them
    with the very formula the plugin uses.
    """
    conf = 0.5 + (CONFIDENCE_CAP - 0.5) * (1.0 - np.exp(-np.asarray(beyond) / scale))
    conf = conf + bonus * np.asarray(extra_agreeing) - penalty * np.asarray(opposing)
    # Damping only ever lowers confidence: the part above 0.5 shrinks, a weak signal stays weak.
    conf = np.where(volatile, conf - (1.0 - VOLATILE_DAMPING) * np.maximum(conf - 0.5, 0.0), conf)
    return np.clip(conf, 0.0, CONFIDENCE_CAP)


def score(close, high, low, volume, options, high_volatility=None) -> Scores:
    """Run the whole model over one series. ``high_volatility``: optional bool mask of bars to damp."""
    o = options
    close = np.asarray(close, dtype=np.float64)
    n = len(close)
    rsi = features.rsi(close, o.rsi_period)
    line, sig, hist = features.macd(close, o.macd_fast, o.macd_slow, o.macd_signal)
    ema_f = features.ema(close, o.ema_fast)
    ema_s = features.ema(close, o.ema_slow)
    ema_t = features.ema(close, o.ema_trend)
    _, upper, lower = features.bollinger(close, o.bb_period, o.bb_std)
    width = upper - lower
    with np.errstate(invalid="ignore", divide="ignore"):
        pb = np.where(width > 0, (close - lower) / np.where(width > 0, width, 1.0), 0.5)
        pb[np.isnan(width)] = np.nan
        atr = features.atr(high, low, close, o.atr_period)
        atr_pct = atr / close
        atr_ratio = atr / features.sma(atr, o.atr_baseline)
    vr = features.volume_ratio(volume, o.volume_period)

    above = line > sig
    prev_above = _previous(above.astype(np.float64))
    valid_prev = ~np.isnan(_previous(hist))
    cross = np.where(valid_prev & above & (prev_above == 0.0), 1, 0) - np.where(
        valid_prev & ~above & (prev_above == 1.0) & ~np.isnan(hist), 1, 0)
    # Histogram slope graded in ATR units: a change of SLOPE_ATR x ATR in one bar is a full
    # half point, so a flat histogram adds almost nothing and the score is not a step function.
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.clip(np.nan_to_num((hist - _previous(hist)) / (SLOPE_ATR * atr)), -1.0, 1.0)

    s_rsi = _rsi_score(rsi, o.rsi_oversold, o.rsi_overbought)
    s_macd = cross + 0.5 * slope
    s_trend = 0.5 * (_sign(close - ema_f) + _sign(ema_f - ema_s) + _sign(ema_s - ema_t))
    s_bb = _bollinger_score(pb)
    # Zero volume over a whole window tells nothing either way: neutral factor.
    vfactor = np.clip(1.0 + (np.nan_to_num(vr, nan=1.0) - 1.0) / 2.0, 0.75, 1.5)
    net = (s_rsi + s_macd + s_trend + s_bb) * vfactor

    direction = np.sign(net)
    stack = np.stack([s_rsi, s_macd, s_trend, s_bb])
    aligned = stack * direction
    agreeing = (aligned >= AGREE_LEVEL).sum(axis=0)
    opposing = np.maximum(-aligned, 0.0).sum(axis=0)   # score mass against the net direction

    warm = ~(np.isnan(rsi) | np.isnan(hist) | np.isnan(ema_t) | np.isnan(pb) | np.isnan(atr_ratio))
    # ATR filter: a dead market's moves do not pay for fees and slippage, so no entries there.
    quiet = np.nan_to_num(atr_ratio, nan=1.0) < o.atr_min_ratio
    enter = warm & ~quiet & (np.abs(net) >= o.entry_score) & (agreeing >= o.min_agreeing)
    action = np.where(enter, direction, 0).astype(np.int8)

    volatile = np.nan_to_num(atr_ratio) > o.atr_max_ratio
    if high_volatility is not None:
        volatile = volatile | np.asarray(high_volatility, dtype=bool)
    out = Scores(close, rsi, line, sig, hist, cross.astype(np.int8), ema_f, ema_s, ema_t, pb,
                 atr_pct, atr_ratio, vr, vfactor, s_rsi, s_macd, s_trend, s_bb, net,
                 agreeing.astype(np.int8), opposing, volatile, action, np.zeros(n))
    if getattr(o, "confidence", "strength") == "strength":
        conf = shape_confidence(np.maximum(np.abs(net) - o.entry_score, 0.0),
                                np.maximum(agreeing - o.min_agreeing, 0), opposing, volatile)
    else:
        conf = fitted_confidence.fitted(out)
    return attrs.evolve(out, confidence=np.where(enter, conf, 0.0).astype(np.float64))
