"""The technical signal's fitted confidence (``confidence = "trade_label"``): P(the trade wins).

The strength confidence (``confidence = "strength"``, the seed's and still the default) grows with the net score and
agreement; on the trade label it ranks no better than a constant (AUC 0.505 on the five series'
development parts) because the mean-reversion readings (RSI and Bollinger beyond their bands)
add to the score while they *lower* the odds that a trade in the signal's direction wins, and
the trend readings (EMA alignment, MACD) raise them. The fitted confidence is instead
``P(trade label positive | indicator states)`` of a logistic regression over the four indicator
scores aligned with the signal (positive: a reading in the signal's direction) and the
volatility flag, L2-penalised so each coefficient shrinks towards 0 (the fit towards the base
rate). The trade label is :mod:`mlcoord.trade_label`'s with the default ``exits`` barriers and
costs. Fitted on every BUY/SELL bar of the development parts of BTC, ETH, SOL, XRP and ADA 1h
(roshan7869, before 2023-11-12 23:00) by ``benchmarks/derive_technical_confidence.py``, which
also measures it out of fold; the README quotes the figures. It is a probability near the base
rate (0.33 .. 0.45 on those bars, base rate 0.40): a technical read alone rarely makes a trade
likely to win, and under the default ``min_confidence = 0.55`` a technical-only pipeline with it
enters nothing (why it is not the default yet).
"""

from __future__ import annotations

import numpy as np

#: the inputs, in order: the aligned RSI, MACD, trend and Bollinger scores, and the volatility flag
INPUTS = ("rsi", "macd", "trend", "bollinger", "volatile")
INTERCEPT = -0.4398
COEFFICIENTS = np.array([-0.0560, 0.0249, 0.0742, -0.0153, -0.0045])


def inputs(s) -> np.ndarray:
    """(n, 5) inputs of every bar of the scores ``s`` (aligned with the sign of the net score)."""
    direction = np.sign(np.nan_to_num(s.net))
    return np.column_stack([s.s_rsi * direction, s.s_macd * direction, s.s_trend * direction,
                            s.s_bb * direction, np.asarray(s.volatile, dtype=np.float64)])


def fitted(s) -> np.ndarray:
    """P(trade label positive) of every bar (the caller keeps it on signal bars only)."""
    z = INTERCEPT + np.nan_to_num(inputs(s)) @ COEFFICIENTS
    return 1.0 / (1.0 + np.exp(-z))
