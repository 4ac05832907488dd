"""Direction as an input: one model of P(this trade wins) for both sides (meta-labelling).

A sequence model with ``target = "trade_label"`` sees each window twice, once per side: the
directional features (:data:`~mlcoord.feature_matrix.DIRECTIONAL`) multiplied by the side (+1
long, -1 short) and a constant ``side`` channel appended. So one network learns long and short
trades from twice the samples, a reading "in the trade's direction" means the same for both, and
only the ``side`` channel can learn an asymmetry (a drift). Its single output is the trade label
of :mod:`mlcoord.trade_label` with ATR barriers (:class:`Barriers`): the label the gbm component
learns too. A plugin cannot see the configured exit manager, so the barriers are the ``exits``
plugin's defaults, as options.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from mlcoord.feature_matrix import DIRECTIONAL, FEATURES
from mlcoord.trade_label import atr_trade_labels

SIDE_INPUT = "side"
INPUTS = FEATURES + (SIDE_INPUT,)          # the inputs a sided model reads, in order
_MASK = np.array([f in DIRECTIONAL for f in FEATURES])


@attrs.frozen
class Barriers:
    """The trade label's barriers and costs: a stop ``stop_atr`` ATR(14) from the entry bar's
    close, a take profit ``reward_risk`` times that risk, the time barrier at ``horizon`` bars."""

    stop_atr: float = 2.0
    reward_risk: float = 1.5
    fee: float = 0.0005
    slippage: float = 0.0005


def signs(side: np.ndarray) -> np.ndarray:
    """``(n, features)`` multipliers: the side on directional features, 1 elsewhere."""
    side = np.asarray(side, dtype=np.float64).reshape(-1, 1)
    return np.where(_MASK[None, :], side, 1.0)


def align(x: np.ndarray, side: np.ndarray) -> np.ndarray:
    """``(n, window, features)`` normalised windows -> ``(n, window, features + 1)`` for ``side``."""
    side = np.asarray(side, dtype=np.float64)
    flipped = x * signs(side)[:, None, :]
    channel = np.broadcast_to(side[:, None, None], (len(x), x.shape[1], 1))
    return np.concatenate([flipped, channel], axis=2)


def sided_norm_stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean/std per feature, except that directional features keep mean 0 and are scaled by
    their root mean square: flipping a normalised directional value must equal normalising the
    flipped raw value."""
    rows = np.asarray(rows, dtype=np.float64)
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    rms = np.sqrt((rows ** 2).mean(axis=0))
    mean = np.where(_MASK, 0.0, mean)
    std = np.where(_MASK, rms, std)
    return mean, np.where(std > 1e-12, std, 1.0)


def trade_label_matrix(candles: Any, cut: int, horizon: int, barriers: Barriers) -> np.ndarray:
    """``(cut + 1, 2)`` [long wins, short wins] of bars ``0..cut`` known at the close of bar
    ``cut`` (NaN while unresolved), computed from bars ``0..cut`` only."""
    end = cut + 1
    o, h, l, c = (a[:end] for a in (candles.open, candles.high, candles.low, candles.close))
    bars = np.arange(end)
    out = np.full((end, 2), np.nan)
    for k, side in enumerate((1, -1)):
        out[:, k] = atr_trade_labels(o, h, l, c, bars, side, barriers.stop_atr, barriers.reward_risk, horizon,
                                     barriers.fee, barriers.slippage).win
    return out
